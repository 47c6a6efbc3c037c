"""Serializer fields for locales and plural forms, for any API that takes them.

The translation endpoints themselves are resources of a bot
(``/bots/{id}/i18n``) and live in ``bots.apis``: ``i18n`` knows nothing of
bots, and making an edit live is the bots app's business.
"""

from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from i18n.locales import LOCALE_MAX_LENGTH, locale_normalize

FORMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Plural category (one, few, many, other, ...) to text.",
    "additionalProperties": {"type": "string"},
    "example": {"one": "{count} file", "other": "{count} files"},
}


@extend_schema_field(
    {
        "type": "string",
        "maxLength": LOCALE_MAX_LENGTH,
        "example": "pt-br",
        "description": "A BCP 47 locale tag, answered in lowercase (pt-br).",
    }
)
class LocaleField(serializers.CharField):
    """A locale tag in any usual spelling, normalized: ``pt_BR`` -> ``pt-br``."""

    default_error_messages = {
        "invalid_locale": _(
            "Not a locale; use a BCP 47 tag such as uk, pt-br or zh-hans."
        ),
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", LOCALE_MAX_LENGTH)
        super().__init__(**kwargs)

    def run_validation(self, data: Any = serializers.empty) -> Any:
        # After the length check, so that an overlong tag is called that.
        value = super().run_validation(data)
        if value is None:
            return value
        tag = locale_normalize(value)
        if tag is None:
            raise serializers.ValidationError(
                self.error_messages["invalid_locale"], code="invalid_locale"
            )

        return tag


@extend_schema_field(FORMS_SCHEMA)
class FormsField(serializers.DictField):
    """The texts of one key by plural category, as stored."""

    child = serializers.CharField()
