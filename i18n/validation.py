"""Checks on one translation, shared by the services and the admin form.

Each check returns messages instead of raising, so that a caller can report
every problem of an import at once, each under its own path.
"""

import re
from collections.abc import Mapping

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from i18n.locales import locale_normalize
from i18n.plurals import PLURAL_CATEGORIES, PLURAL_OTHER, plural_categories

KEY_MAX_LENGTH = 200
KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")

# Telegram's limit on the text of one message.
TEXT_MAX_LENGTH = 4096

UNSTORABLE_RE = re.compile("[\x00\ud800-\udfff]")


def validate_locale_tag(value: str) -> None:
    """Raise ``ValidationError`` unless ``value`` is a normalized locale tag."""
    # Stored tags are already normalized, so that lookups are plain equality.
    if locale_normalize(value) != value:
        raise ValidationError(
            _("Use a lowercase BCP 47 tag such as uk, pt-br or zh-hans."),
            code="invalid_locale",
        )


def locale_problems(locale: object) -> list[str]:
    if not isinstance(locale, str) or locale_normalize(locale) is None:
        return [_("Not a locale; use a BCP 47 tag such as uk, pt-br or zh-hans.")]

    return []


def key_problems(key: object) -> list[str]:
    if not isinstance(key, str) or not key:
        return [_("The key must be a non-empty string.")]
    if len(key) > KEY_MAX_LENGTH:
        return [
            _("The key is longer than %(limit)s characters.")
            % {"limit": KEY_MAX_LENGTH}
        ]
    if not KEY_RE.fullmatch(key):
        return [_("Not a key; use dotted identifiers such as menu.title.")]

    return []


def text_problems(text: object) -> list[str]:
    if not isinstance(text, str):
        return [_("The text must be a string.")]
    # Telegram refuses to send an empty or blank message.
    if not text.strip():
        return [_("The text is empty.")]
    if len(text) > TEXT_MAX_LENGTH:
        message = _(
            "The text is %(length)s characters long; Telegram allows %(limit)s."
        )
        return [message % {"length": len(text), "limit": TEXT_MAX_LENGTH}]
    # PostgreSQL's jsonb refuses both, which would fail the write itself.
    if UNSTORABLE_RE.search(text):
        return [_("The text holds a NUL character or an unpaired surrogate.")]

    return []


def forms_problems(forms: object, *, locale: str | None) -> dict[str, list[str]]:
    """Check plural forms; ``""`` holds problems of the whole mapping.

    A plain string stands for ``{"other": text}``. The categories allowed
    are those of ``locale``, or any CLDR category when the locale is not
    known (None) because it is itself invalid.
    """
    if isinstance(forms, str):
        return {"": problems} if (problems := text_problems(forms)) else {}
    if not isinstance(forms, Mapping) or not forms:
        return {"": [_("Give a text, or a mapping of plural categories to texts.")]}

    allowed = plural_categories(locale) if locale else PLURAL_CATEGORIES
    found: dict[str, list[str]] = {}
    if PLURAL_OTHER not in forms:
        found[""] = [_("The 'other' form is required.")]
    for category, text in forms.items():
        if category not in allowed:
            message = _("Not a plural category of this locale; use %(allowed)s.")
            found[str(category)] = [message % {"allowed": ", ".join(allowed)}]
        elif problems := text_problems(text):
            found[category] = problems

    return found


def forms_from_input(forms: Mapping[str, str] | str) -> dict[str, str]:
    """Return forms as stored: a plain string becomes ``{"other": text}``."""
    if isinstance(forms, str):
        return {PLURAL_OTHER: forms}

    return dict(forms)
