from typing import TYPE_CHECKING, Any

from django import forms as django_forms
from django.contrib import admin

from i18n.locales import locale_normalize
from i18n.models import Translation
from i18n.validation import forms_from_input, forms_problems

# Django's form and admin classes are generic only in the type stubs.
if TYPE_CHECKING:
    _ModelForm = django_forms.ModelForm[Translation]
    _ModelAdmin = admin.ModelAdmin[Translation]
else:
    _ModelForm = django_forms.ModelForm
    _ModelAdmin = admin.ModelAdmin


class TranslationAdminForm(_ModelForm):
    """Checks the plural forms against the locale, as the services do."""

    class Meta:
        model = Translation
        fields = ["bot", "locale", "key", "forms"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "forms" not in cleaned:
            return cleaned

        locale = locale_normalize(cleaned.get("locale"))
        problems = forms_problems(cleaned["forms"], locale=locale)
        for category, messages in problems.items():
            for message in messages:
                prefix = f"{category}: " if category else ""
                self.add_error("forms", f"{prefix}{message}")
        if not problems:
            cleaned["forms"] = forms_from_input(cleaned["forms"])

        return cleaned


@admin.register(Translation)
class TranslationAdmin(_ModelAdmin):
    form = TranslationAdminForm
    list_display = ["key", "locale", "bot", "updated_at"]
    list_filter = ["bot", "locale"]
    search_fields = ["key"]
    list_select_related = ["bot"]
    ordering = ["bot", "locale", "key"]
