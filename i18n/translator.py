"""The translator the spec runtime asks for patterns, over one bot's table."""

from collections.abc import Mapping
from decimal import Decimal

from i18n.locales import locale_fallback_chain
from i18n.plurals import PLURAL_CATEGORIES, PLURAL_OTHER, plural_category

# locale -> key -> plural category -> text, as stored.
TranslationTable = Mapping[str, Mapping[str, Mapping[str, str]]]


def _form_pick(forms: Mapping[str, str], category: str) -> str | None:
    if forms.get(category):
        return forms[category]
    if forms.get(PLURAL_OTHER):
        return forms[PLURAL_OTHER]
    # Stored rows always have ``other``; a hand-made table might not, and
    # the CLDR order keeps the pick the same whatever order the JSON had.
    names = [*PLURAL_CATEGORIES, *sorted(set(forms) - set(PLURAL_CATEGORIES))]

    return next((forms[name] for name in names if forms.get(name)), None)


class BotTranslator:
    """Patterns of one bot for one locale, falling back along a chain.

    Implements the spec runtime's ``Translator`` protocol. The table is
    shared between translators and threads and never modified here.
    """

    __slots__ = ("_table", "chain", "locale")

    def __init__(
        self, *, locale: str, default_locale: str, table: TranslationTable
    ) -> None:
        self.chain: tuple[str, ...] = tuple(
            locale_fallback_chain(locale, default=default_locale)
        )
        self.locale: str = self.chain[0] if self.chain else default_locale
        self._table = table

    def __repr__(self) -> str:
        return f"<BotTranslator {' > '.join(self.chain)}>"

    def pattern(
        self, key: str, count: int | float | Decimal | None = None
    ) -> str | None:
        """Return the raw pattern for ``key``, or None if no locale has it.

        The first locale of the chain that has the key wins, and the plural
        category of ``count`` follows that locale's rules (a Ukrainian
        fallback for a Polish user is declined the Ukrainian way). A missing
        category falls back to ``other``, then to any form; ``count=None``
        asks for ``other``. Nothing is raised.
        """
        for locale in self.chain:
            forms = self._table.get(locale, {}).get(key)
            if not forms:
                continue
            category = PLURAL_OTHER if count is None else plural_category(locale, count)
            text = _form_pick(forms, category)
            if text is not None:
                return text

        return None
