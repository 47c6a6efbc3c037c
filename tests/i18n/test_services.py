import json
from typing import Any

import pytest

from bots.models import Bot
from i18n.models import Translation
from i18n.selectors import translation_table_get, translations_export
from i18n.services import (
    TranslationInvalidError,
    translation_delete,
    translation_set,
    translations_import,
)

pytestmark = pytest.mark.django_db

EMPTY_TEXT = "The text is empty."
OTHER_REQUIRED = "The 'other' form is required."
NOT_A_LOCALE = "Not a locale; use a BCP 47 tag such as uk, pt-br or zh-hans."
NOT_A_KEY = "Not a key; use dotted identifiers such as menu.title."
UK_CATEGORIES = "Not a plural category of this locale; use one, few, many, other."
EN_CATEGORIES = "Not a plural category of this locale; use one, other."

DATA: dict[str, dict[str, Any]] = {
    "en": {
        "greeting": "Hello, {name}!",
        "files": {"one": "{count} file", "other": "{count} files"},
        "menu.title": "Menu",
    },
    "uk": {
        "greeting": "Привіт, {name}!",
        "files": {
            "one": "{count} файл",
            "few": "{count} файли",
            "many": "{count} файлів",
            "other": "{count} файлу",
        },
    },
    "pt-br": {"greeting": "Olá, {name}!"},
}


def _rows(bot: Bot) -> list[tuple[str, str, dict[str, str]]]:
    return list(
        Translation.objects.filter(bot=bot)
        .order_by("locale", "key")
        .values_list("locale", "key", "forms")
    )


def test_translation_set_stores_a_plain_text_as_other(bot: Bot) -> None:
    # given a bot without translations
    # when a plain text is set under a Telegram-style locale
    translation = translation_set(
        bot_id=bot.pk, locale="pt_BR", key="menu.title", forms="Menu"
    )

    # then it is stored under the normalized locale as the "other" form
    assert _rows(bot) == [("pt-br", "menu.title", {"other": "Menu"})]
    assert str(translation) == "pt-br: menu.title"


def test_translation_set_replaces_the_forms_of_an_existing_key(bot: Bot) -> None:
    # given a stored text
    first = translation_set(bot_id=bot.pk, locale="uk", key="files", forms="файли")

    # when plural forms are set for the same locale and key
    second = translation_set(
        bot_id=bot.pk,
        locale="uk",
        key="files",
        forms={"one": "{count} файл", "few": "{count} файли", "other": "{count}"},
    )

    # then the same row holds the new forms
    assert second.pk == first.pk
    assert _rows(bot) == [
        (
            "uk",
            "files",
            {"one": "{count} файл", "few": "{count} файли", "other": "{count}"},
        )
    ]


def test_translation_set_accepts_a_text_at_telegrams_limit(bot: Bot) -> None:
    # given a text of exactly 4096 characters
    text = "a" * 4096

    # when it is set
    translation_set(bot_id=bot.pk, locale="en", key="long", forms=text)

    # then it is stored whole
    assert _rows(bot) == [("en", "long", {"other": text})]


@pytest.mark.parametrize(
    ("locale", "key", "forms", "fields"),
    [
        ("x", "greeting", "Hi", {"locale": [NOT_A_LOCALE]}),
        ("en--", "greeting", "Hi", {"locale": [NOT_A_LOCALE]}),
        ("en", "Menu title", "Hi", {"key": [NOT_A_KEY]}),
        ("en", "menu..title", "Hi", {"key": [NOT_A_KEY]}),
        ("en", "1st", "Hi", {"key": [NOT_A_KEY]}),
        (
            "en",
            "k" * 201,
            "Hi",
            {"key": ["The key is longer than 200 characters."]},
        ),
        ("en", "greeting", "", {"forms": [EMPTY_TEXT]}),
        ("en", "greeting", "   ", {"forms": [EMPTY_TEXT]}),
        (
            "en",
            "greeting",
            "a" * 4097,
            {"forms": ["The text is 4097 characters long; Telegram allows 4096."]},
        ),
        (
            "en",
            "greeting",
            {},
            {"forms": ["Give a text, or a mapping of plural categories to texts."]},
        ),
        ("uk", "files", {"one": "{count} файл"}, {"forms": [OTHER_REQUIRED]}),
        (
            "uk",
            "files",
            {"two": "{count}", "other": "{count}"},
            {"forms.two": [UK_CATEGORIES]},
        ),
        ("en", "files", {"few": "x", "other": "y"}, {"forms.few": [EN_CATEGORIES]}),
        ("en", "files", {"one": "", "other": "y"}, {"forms.one": [EMPTY_TEXT]}),
        (
            "x",
            "bad key",
            {"one": ""},
            {
                "locale": [NOT_A_LOCALE],
                "key": [NOT_A_KEY],
                "forms": [OTHER_REQUIRED],
                "forms.one": [EMPTY_TEXT],
            },
        ),
    ],
)
def test_translation_set_refuses_invalid_input_and_changes_nothing(
    bot: Bot, locale: str, key: str, forms: Any, fields: dict[str, list[str]]
) -> None:
    # given a stored translation
    translation_set(bot_id=bot.pk, locale="en", key="greeting", forms="Hello")

    # when an invalid translation is set
    with pytest.raises(TranslationInvalidError) as raised:
        translation_set(bot_id=bot.pk, locale=locale, key=key, forms=forms)

    # then every problem is reported under its path and nothing changed
    assert raised.value.code == "translation_invalid"
    assert raised.value.extra == {"fields": fields}
    assert _rows(bot) == [("en", "greeting", {"other": "Hello"})]


def test_translation_delete_removes_one_locale_of_a_key(bot: Bot) -> None:
    # given a key in two locales
    translations_import(bot_id=bot.pk, data={"en": {"a": "A"}, "pt-br": {"a": "Á"}})

    # when it is deleted in one, named the Telegram way, then deleted again
    first = translation_delete(bot_id=bot.pk, locale="pt_BR", key="a")
    second = translation_delete(bot_id=bot.pk, locale="pt_BR", key="a")

    # then only that row went, and the second call found nothing
    assert (first, second) == (True, False)
    assert _rows(bot) == [("en", "a", {"other": "A"})]


def test_translation_delete_with_a_malformed_locale_finds_nothing(bot: Bot) -> None:
    # given a stored translation
    translation_set(bot_id=bot.pk, locale="en", key="a", forms="A")

    # when a malformed locale is deleted
    deleted = translation_delete(bot_id=bot.pk, locale="--", key="a")

    # then nothing is deleted
    assert deleted is False
    assert _rows(bot) == [("en", "a", {"other": "A"})]


def test_translations_import_writes_every_row(bot: Bot) -> None:
    # given a bot without translations
    # when a whole set is imported
    written = translations_import(bot_id=bot.pk, data=DATA)

    # then each (locale, key) is a row with its forms
    assert written == 6
    assert _rows(bot) == [
        ("en", "files", {"one": "{count} file", "other": "{count} files"}),
        ("en", "greeting", {"other": "Hello, {name}!"}),
        ("en", "menu.title", {"other": "Menu"}),
        ("pt-br", "greeting", {"other": "Olá, {name}!"}),
        (
            "uk",
            "files",
            {
                "one": "{count} файл",
                "few": "{count} файли",
                "many": "{count} файлів",
                "other": "{count} файлу",
            },
        ),
        ("uk", "greeting", {"other": "Привіт, {name}!"}),
    ]


def test_translations_import_counts_only_changed_rows(bot: Bot) -> None:
    # given an imported set
    translations_import(bot_id=bot.pk, data=DATA)
    created_at = dict(
        Translation.objects.filter(bot=bot).values_list("key", "created_at")
    )

    # when the same set is imported again, then with one text changed
    again = translations_import(bot_id=bot.pk, data=DATA)
    changed = translations_import(
        bot_id=bot.pk, data={"en": {"menu.title": "Main menu"}}
    )

    # then only the changed row is written, in place
    assert (again, changed) == (0, 1)
    assert translation_table_get(bot_id=bot.pk)["en"]["menu.title"] == {
        "other": "Main menu"
    }
    assert Translation.objects.filter(bot=bot).count() == 6
    assert (
        Translation.objects.get(bot=bot, locale="en", key="menu.title").created_at
        == created_at["menu.title"]
    )


def test_translations_import_keeps_other_rows_unless_replacing(bot: Bot) -> None:
    # given an imported set
    translations_import(bot_id=bot.pk, data=DATA)

    # when a smaller set is imported without, then with replace
    kept = translations_import(bot_id=bot.pk, data={"en": {"greeting": "Hi"}})
    rows_kept = len(_rows(bot))
    replaced = translations_import(
        bot_id=bot.pk, data={"en": {"greeting": "Hi", "bye": "Bye"}}, replace=True
    )

    # then replace leaves exactly the imported rows
    assert (kept, rows_kept, replaced) == (1, 6, 1)
    assert _rows(bot) == [
        ("en", "bye", {"other": "Bye"}),
        ("en", "greeting", {"other": "Hi"}),
    ]


def test_translations_import_does_not_touch_other_bots(
    bot: Bot, other_bot: Bot
) -> None:
    # given another bot with translations
    translations_import(bot_id=other_bot.pk, data={"en": {"greeting": "Other"}})

    # when this bot imports with replace
    translations_import(bot_id=bot.pk, data={"en": {"bye": "Bye"}}, replace=True)

    # then the other bot keeps its rows
    assert _rows(other_bot) == [("en", "greeting", {"other": "Other"})]


def test_translations_import_refuses_invalid_data_and_changes_nothing(
    bot: Bot,
) -> None:
    # given a stored set
    translations_import(bot_id=bot.pk, data=DATA)
    before = _rows(bot)

    # when an import with valid and invalid entries is made, even replacing
    data: Any = {
        "en": {"greeting": "Changed", "bad key": "x", "files": {"few": "x"}},
        "uk": {"files": {"one": "{count}", "two": "{count}", "other": ""}},
        "x": {"greeting": "Hi"},
        "pl": "not a mapping",
        "pt_BR": {"greeting": "Oi"},
        "pt-br": {"greeting": "Oi"},
    }
    with pytest.raises(TranslationInvalidError) as raised:
        translations_import(bot_id=bot.pk, data=data, replace=True)

    # then every problem is reported under its path and nothing changed
    assert raised.value.code == "translation_invalid"
    assert raised.value.fields == {
        "en.bad key": [NOT_A_KEY],
        "en.files": [OTHER_REQUIRED],
        "en.files.few": [EN_CATEGORIES],
        "uk.files.two": [UK_CATEGORIES],
        "uk.files.other": [EMPTY_TEXT],
        "x": [NOT_A_LOCALE],
        "pl": ["Give a mapping of keys to texts."],
        "pt-br": ["The same locale as pt_BR."],
    }
    assert _rows(bot) == before


def test_translations_import_refuses_data_that_is_not_a_mapping(bot: Bot) -> None:
    # given a stored translation
    translation_set(bot_id=bot.pk, locale="en", key="a", forms="A")

    # when a list is imported
    with pytest.raises(TranslationInvalidError) as raised:
        translations_import(bot_id=bot.pk, data=["en"], replace=True)  # type: ignore[arg-type]

    # then it is refused as a whole and nothing changed
    assert raised.value.fields == {"": ["Give a mapping of locales to keys."]}
    assert _rows(bot) == [("en", "a", {"other": "A"})]


def test_export_then_import_round_trips_exactly(bot: Bot, other_bot: Bot) -> None:
    # given a bot's translations exported and sent as JSON
    translations_import(bot_id=bot.pk, data=DATA)
    exported = translations_export(bot_id=bot.pk)
    sent = json.loads(json.dumps(exported))

    # when they are imported into another bot, and back into the first
    written = translations_import(bot_id=other_bot.pk, data=sent)
    rewritten = translations_import(bot_id=bot.pk, data=sent, replace=True)

    # then both bots hold the same rows and export the same data
    assert (written, rewritten) == (6, 0)
    assert _rows(other_bot) == _rows(bot)
    assert translations_export(bot_id=other_bot.pk) == exported
    assert translation_table_get(bot_id=other_bot.pk) == translation_table_get(
        bot_id=bot.pk
    )
