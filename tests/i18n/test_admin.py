import json

import pytest

from bots.models import Bot
from i18n.admin import TranslationAdminForm
from i18n.models import Translation

pytestmark = pytest.mark.django_db


def test_admin_form_stores_a_plain_text_as_other(bot: Bot) -> None:
    # given the admin form filled with a plain JSON string
    form = TranslationAdminForm(
        data={"bot": bot.pk, "locale": "uk", "key": "greeting", "forms": '"Привіт"'}
    )

    # when it is saved
    assert form.is_valid(), form.errors
    form.save()

    # then the text is stored as the "other" form
    stored = Translation.objects.get(bot=bot)
    assert (stored.locale, stored.key, stored.forms) == (
        "uk",
        "greeting",
        {"other": "Привіт"},
    )


def test_admin_form_refuses_categories_the_locale_lacks(bot: Bot) -> None:
    # given the admin form with an English "few" form and no "other"
    forms = json.dumps({"one": "{count} file", "few": "{count} files"})
    form = TranslationAdminForm(
        data={"bot": bot.pk, "locale": "en", "key": "files", "forms": forms}
    )

    # when it is validated
    valid = form.is_valid()

    # then the forms field lists both problems and nothing is stored
    assert valid is False
    assert form.errors["forms"] == [
        "The 'other' form is required.",
        "few: Not a plural category of this locale; use one, other.",
    ]
    assert Translation.objects.count() == 0


def test_admin_form_refuses_an_unnormalized_locale(bot: Bot) -> None:
    # given the admin form with a locale in Telegram's spelling
    form = TranslationAdminForm(
        data={"bot": bot.pk, "locale": "pt_BR", "key": "a", "forms": '"Oi"'}
    )

    # when it is validated
    valid = form.is_valid()

    # then the locale is refused with the expected spelling
    assert valid is False
    assert form.errors["locale"] == [
        "Use a lowercase BCP 47 tag such as uk, pt-br or zh-hans."
    ]
