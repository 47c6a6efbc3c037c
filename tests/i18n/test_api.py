import subprocess
from typing import Any

import pytest
from rest_framework.test import APIClient

from bots.models import Bot
from bots.services.specs import spec_publish
from i18n.models import Translation
from i18n.selectors import translation_table_get, translator_get
from i18n.services import translation_set
from tests.bots.test_api import (
    SPEC,
    api,
    staff_user,
    translator_ask,
    translator_process,
)

# Fixtures shared with the bots API tests.
__all__ = ["api", "staff_user", "translator_process"]

FILES_UK = {
    "one": "{count} файл",
    "few": "{count} файли",
    "many": "{count} файлів",
    "other": "{count} файлу",
}


def _revision(bot: Bot) -> int:
    return Bot.objects.values_list("cache_revision", flat=True).get(pk=bot.pk)


def _put(api: APIClient, bot: Bot, locale: str, key: str, forms: Any) -> Any:
    return api.put(f"/bots/{bot.pk}/i18n/{locale}/{key}", forms, format="json")


# --- reading ----------------------------------------------------------------


def test_list_answers_one_locale_with_its_plural_forms(
    api: APIClient, bot: Bot, other_bot: Bot
) -> None:
    # given texts in two locales, and another bot's text
    translation_set(bot_id=bot.pk, locale="uk", key="files", forms=FILES_UK)
    translation_set(bot_id=bot.pk, locale="uk", key="greeting", forms="Привіт")
    translation_set(bot_id=bot.pk, locale="en", key="greeting", forms="Hello")
    translation_set(bot_id=other_bot.pk, locale="uk", key="other", forms="Інше")

    # when one locale is asked for
    response = api.get(f"/bots/{bot.pk}/i18n", {"locale": "uk"})

    # then only that locale's texts of that bot come back
    assert response.status_code == 200
    assert response.json() == {
        "locale": "uk",
        "translations": {"files": FILES_UK, "greeting": {"other": "Привіт"}},
    }


def test_list_takes_a_locale_in_any_usual_spelling(api: APIClient, bot: Bot) -> None:
    translation_set(bot_id=bot.pk, locale="pt-br", key="greeting", forms="Olá")

    response = api.get(f"/bots/{bot.pk}/i18n", {"locale": "pt_BR"})

    assert response.status_code == 200
    assert response.json() == {
        "locale": "pt-br",
        "translations": {"greeting": {"other": "Olá"}},
    }


def test_list_of_a_locale_without_texts_is_empty(api: APIClient, bot: Bot) -> None:
    translation_set(bot_id=bot.pk, locale="en", key="greeting", forms="Hello")

    response = api.get(f"/bots/{bot.pk}/i18n", {"locale": "de"})

    assert response.status_code == 200
    assert response.json() == {"locale": "de", "translations": {}}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({}, "This field is required."),
        ({"locale": ""}, "This field may not be blank."),
        (
            {"locale": "english!"},
            "Not a locale; use a BCP 47 tag such as uk, pt-br or zh-hans.",
        ),
        (
            {"locale": "x" * 40},
            "Ensure this field has no more than 35 characters.",
        ),
    ],
    ids=["missing", "blank", "malformed", "too-long"],
)
def test_list_without_a_valid_locale_is_a_400(
    api: APIClient, bot: Bot, query: dict[str, str], message: str
) -> None:
    response = api.get(f"/bots/{bot.pk}/i18n", query)

    assert response.status_code == 400
    assert response.json() == {
        "detail": "The input is invalid.",
        "code": "invalid",
        "fields": {"locale": [message]},
    }


# --- editing ----------------------------------------------------------------


def test_put_stores_the_forms_and_makes_them_live(api: APIClient, bot: Bot) -> None:
    # given a text that a process has cached at the bot's revision
    translation_set(bot_id=bot.pk, locale="uk", key="files", forms="файли")
    before = _revision(bot)
    translator_get(bot_id=bot.pk, revision=before, locale="uk", default_locale="en")

    # when its plural forms are sent
    response = _put(api, bot, "uk", "files", FILES_UK)

    # then they are stored, and the translator at the new revision has them
    assert response.status_code == 200
    assert response.json() == {"locale": "uk", "key": "files", "forms": FILES_UK}
    assert translation_table_get(bot_id=bot.pk) == {"uk": {"files": FILES_UK}}
    after = _revision(bot)
    assert after == before + 1
    translator = translator_get(
        bot_id=bot.pk, revision=after, locale="uk", default_locale="en"
    )
    assert translator.pattern("files", count=3) == "{count} файли"


def test_put_creates_a_missing_key_under_the_normalized_locale(
    api: APIClient, bot: Bot
) -> None:
    response = _put(api, bot, "pt_BR", "menu.title", {"other": "Menu"})

    assert response.status_code == 200
    assert response.json() == {
        "locale": "pt-br",
        "key": "menu.title",
        "forms": {"other": "Menu"},
    }
    assert translation_table_get(bot_id=bot.pk) == {
        "pt-br": {"menu.title": {"other": "Menu"}}
    }


@pytest.mark.parametrize(
    ("locale", "key", "forms", "fields"),
    [
        (
            "uk",
            "files",
            {"one": "{count} файл", "two": "x", "few": " "},
            {
                "forms": ["The 'other' form is required."],
                "forms.two": [
                    "Not a plural category of this locale; use one, few, many, other."
                ],
                "forms.few": ["The text is empty."],
            },
        ),
        (
            "english!",
            "9files",
            {"other": "x"},
            {
                "locale": [
                    "Not a locale; use a BCP 47 tag such as uk, pt-br or zh-hans."
                ],
                "key": ["Not a key; use dotted identifiers such as menu.title."],
            },
        ),
        (
            "uk",
            "files",
            ["not", "a", "mapping"],
            {"forms": ["Give a text, or a mapping of plural categories to texts."]},
        ),
        (
            "uk",
            "files",
            {"other": "x" * 4097},
            {
                "forms.other": [
                    "The text is 4097 characters long; Telegram allows 4096."
                ]
            },
        ),
    ],
    ids=["forms", "locale-and-key", "not-a-mapping", "too-long"],
)
def test_put_of_invalid_texts_is_a_400_and_changes_nothing(
    api: APIClient,
    bot: Bot,
    locale: str,
    key: str,
    forms: Any,
    fields: dict[str, list[str]],
) -> None:
    # given a stored text
    translation_set(bot_id=bot.pk, locale="uk", key="files", forms="файли")
    before = _revision(bot)

    # when invalid texts are sent
    response = _put(api, bot, locale, key, forms)

    # then every problem is named by its path, and nothing changed
    assert response.status_code == 400
    assert response.json() == {
        "detail": "The translations are invalid.",
        "code": "translation_invalid",
        "fields": fields,
    }
    assert translation_table_get(bot_id=bot.pk) == {"uk": {"files": {"other": "файли"}}}
    assert _revision(bot) == before


def test_put_of_malformed_json_is_a_400_and_changes_nothing(
    api: APIClient, bot: Bot
) -> None:
    translation_set(bot_id=bot.pk, locale="en", key="greeting", forms="Hello")
    before = _revision(bot)

    response = api.put(
        f"/bots/{bot.pk}/i18n/en/greeting",
        data='{"other": "Hi"',
        content_type="application/json",
    )

    assert response.status_code == 400
    assert response.json() == {
        "detail": "JSON parse error - Expecting ',' delimiter: line 1 column 15 "
        "(char 14)",
        "code": "parse_error",
    }
    assert Translation.objects.get(bot=bot).forms == {"other": "Hello"}
    assert _revision(bot) == before


def test_put_through_the_api_is_seen_by_another_process(
    translator_process: subprocess.Popen[str], api: APIClient, bot: Bot
) -> None:
    # given another process that cached the bot's texts at its revision
    translation_set(bot_id=bot.pk, locale="en", key="greeting", forms="Hello")
    before = _revision(bot)
    request = {"bot_id": bot.pk, "locale": "en", "key": "greeting"}
    warm = translator_ask(translator_process, revision=before, **request)

    # when the text is edited through the API
    response = _put(api, bot, "en", "greeting", {"other": "Hi"})
    after = _revision(bot)

    # then that process reads the new text at the revision it now finds
    assert response.status_code == 200
    assert after == before + 1
    assert warm == {"pattern": "Hello", "queries": 1}
    assert translator_ask(translator_process, revision=after, **request) == {
        "pattern": "Hi",
        "queries": 1,
    }


# --- coverage ---------------------------------------------------------------


def test_coverage_counts_the_live_spec_keys_missing_per_locale(
    api: APIClient, bot: Bot
) -> None:
    # given a live spec with four keys of its own and a built-in one, all
    # translated in English, one in Ukrainian, and a locale the spec lacks
    for key in ["cmd.help", "help.text", "main.text", "menu.help", "unused"]:
        translation_set(bot_id=bot.pk, locale="en", key=key, forms=key)
    translation_set(bot_id=bot.pk, locale="uk", key="main.text", forms="Головне")
    translation_set(bot_id=bot.pk, locale="de", key="main.text", forms="Haupt")
    spec_publish(bot=bot, source=SPEC)

    # when the coverage is asked for
    response = api.get(f"/bots/{bot.pk}/i18n/coverage")

    # then it lists the spec's locales, and a built-in text counts as present
    assert response.status_code == 200
    assert response.json() == {
        "locales": {
            "en": {"total": 5, "missing": []},
            "uk": {"total": 5, "missing": ["cmd.help", "help.text", "menu.help"]},
        }
    }


def test_coverage_follows_an_edit_through_the_api(api: APIClient, bot: Bot) -> None:
    spec_publish(bot=bot, source={**SPEC, "locales": ["en"]})
    _put(api, bot, "en", "main.text", {"other": "Main"})

    response = api.get(f"/bots/{bot.pk}/i18n/coverage")

    assert response.json() == {
        "locales": {
            "en": {"total": 5, "missing": ["cmd.help", "help.text", "menu.help"]}
        }
    }


def test_coverage_without_a_live_spec_compares_the_bot_locales(
    api: APIClient, bot: Bot
) -> None:
    translation_set(bot_id=bot.pk, locale="en", key="a", forms="A")
    translation_set(bot_id=bot.pk, locale="en", key="b", forms="B")
    translation_set(bot_id=bot.pk, locale="uk", key="b", forms="Б")

    response = api.get(f"/bots/{bot.pk}/i18n/coverage")

    assert response.status_code == 200
    assert response.json() == {
        "locales": {
            "en": {"total": 2, "missing": []},
            "uk": {"total": 2, "missing": ["a"]},
        }
    }


def test_coverage_of_a_bot_with_nothing_is_empty(api: APIClient, bot: Bot) -> None:
    response = api.get(f"/bots/{bot.pk}/i18n/coverage")

    assert response.status_code == 200
    assert response.json() == {"locales": {}}
