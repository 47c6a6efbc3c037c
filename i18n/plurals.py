"""CLDR plural categories, through Babel's rules."""

import functools
import math
from decimal import Decimal

from i18n.locales import babel_locale

# CLDR's order; ``other`` is the one category every language has.
PLURAL_CATEGORIES = ("zero", "one", "two", "few", "many", "other")
PLURAL_OTHER = "other"


def _is_finite(count: int | float | Decimal) -> bool:
    if isinstance(count, Decimal):
        return count.is_finite()

    return math.isfinite(count)


def plural_category(locale: str, count: int | float | Decimal) -> str:
    """Return the CLDR plural category of ``count`` in ``locale``.

    Uses the rules of ``babel_locale(locale)`` (so an unknown locale follows
    its language, then English). Visible fraction digits count as in CLDR:
    ``Decimal("1.0")`` is ``other`` in English while ``1`` is ``one``. A NaN
    or infinite count, which Babel cannot classify, is ``other``. Nothing is
    raised.
    """
    if not _is_finite(count):
        return PLURAL_OTHER

    return str(babel_locale(locale).plural_form(count))


@functools.lru_cache(maxsize=512)
def plural_categories(locale: str) -> tuple[str, ...]:
    """Return the plural categories ``locale`` uses, in CLDR order.

    ``uk`` -> ``("one", "few", "many", "other")``; ``other`` is always
    included. Nothing is raised.
    """
    used = set(babel_locale(locale).plural_form.tags) | {PLURAL_OTHER}

    return tuple(category for category in PLURAL_CATEGORIES if category in used)
