import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from bots.models import Bot
from i18n.selectors import (
    translation_keys_get,
    translation_locales_list,
    translation_table_get,
    translations_export,
    translator_get,
)
from i18n.services import translation_set, translations_import

pytestmark = pytest.mark.django_db

# Starting Django in a fresh interpreter takes a second or two; this leaves
# room for a loaded machine without letting a hung worker stall the suite.
WORKER_TIMEOUT = 30.0

DATA: dict[str, dict[str, Any]] = {
    "en": {
        "greeting": "Hello, {name}!",
        "files": {"one": "{count} file", "other": "{count} files"},
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
}


def test_translation_table_get_groups_forms_by_locale_and_key(
    bot: Bot, other_bot: Bot
) -> None:
    # given translations of two bots
    translations_import(bot_id=bot.pk, data=DATA)
    translations_import(bot_id=other_bot.pk, data={"en": {"greeting": "Other"}})

    # when the first bot's table is read
    table = translation_table_get(bot_id=bot.pk)

    # then it holds exactly that bot's forms
    assert table == {
        "en": {
            "greeting": {"other": "Hello, {name}!"},
            "files": {"one": "{count} file", "other": "{count} files"},
        },
        "uk": {
            "greeting": {"other": "Привіт, {name}!"},
            "files": {
                "one": "{count} файл",
                "few": "{count} файли",
                "many": "{count} файлів",
                "other": "{count} файлу",
            },
        },
    }


def test_translation_table_get_of_a_bot_without_translations_is_empty(
    bot: Bot,
) -> None:
    # given a bot without translations
    # when its table is read
    table = translation_table_get(bot_id=bot.pk)

    # then it is empty
    assert table == {}


def test_translation_keys_get_lists_keys_per_locale(bot: Bot) -> None:
    # given a bot with a key missing in one locale
    translations_import(
        bot_id=bot.pk,
        data={"en": {"a.b": "A", "c": "C"}, "uk": {"a.b": "Файл"}},
    )

    # when its keys are read
    keys = translation_keys_get(bot_id=bot.pk)

    # then each locale has its own set
    assert keys == {"en": {"a.b", "c"}, "uk": {"a.b"}}


def test_translation_locales_list_is_sorted_and_per_bot(
    bot: Bot, other_bot: Bot
) -> None:
    # given two bots with translations in several locales
    translations_import(
        bot_id=bot.pk,
        data={"uk": {"a": "Файл"}, "en": {"a": "A", "b": "B"}, "pt_BR": {"a": "Á"}},
    )
    translations_import(bot_id=other_bot.pk, data={"pl": {"a": "A"}})

    # when the first bot's locales are listed
    locales = translation_locales_list(bot_id=bot.pk)

    # then they are its normalized locales, sorted, each once
    assert locales == ["en", "pt-br", "uk"]


def test_translations_export_writes_plain_texts_as_strings(bot: Bot) -> None:
    # given translations with and without plural forms
    translations_import(bot_id=bot.pk, data=DATA)

    # when they are exported
    exported = translations_export(bot_id=bot.pk)

    # then plain texts are strings, plural forms are in CLDR order
    assert json.dumps(exported, ensure_ascii=False) == json.dumps(
        {
            "en": {
                "files": {"one": "{count} file", "other": "{count} files"},
                "greeting": "Hello, {name}!",
            },
            "uk": {
                "files": {
                    "one": "{count} файл",
                    "few": "{count} файли",
                    "many": "{count} файлів",
                    "other": "{count} файлу",
                },
                "greeting": "Привіт, {name}!",
            },
        },
        ensure_ascii=False,
    )


def test_translator_get_serves_an_unchanged_revision_from_the_cache(
    bot: Bot, django_assert_num_queries: Any
) -> None:
    # given a bot whose table was read at its current revision
    translation_set(bot_id=bot.pk, locale="en", key="greeting", forms="Hello")
    with django_assert_num_queries(1):
        first = translator_get(
            bot_id=bot.pk, revision=bot.cache_revision, locale="en", default_locale="en"
        )

    # when a text is edited but the revision stays the same
    translation_set(bot_id=bot.pk, locale="en", key="greeting", forms="Hi")
    with django_assert_num_queries(0):
        again = translator_get(
            bot_id=bot.pk, revision=bot.cache_revision, locale="en", default_locale="en"
        )

    # then the cached table answers, without the edit
    assert first.pattern("greeting") == "Hello"
    assert again.pattern("greeting") == "Hello"


def test_translator_get_reads_the_table_again_at_a_new_revision(
    bot: Bot, django_assert_num_queries: Any
) -> None:
    # given a table cached at revision 0, then an edit
    translation_set(bot_id=bot.pk, locale="en", key="greeting", forms="Hello")
    translator_get(bot_id=bot.pk, revision=0, locale="en", default_locale="en")
    translation_set(bot_id=bot.pk, locale="en", key="greeting", forms="Hi")

    # when the translator is asked for at revision 1
    with django_assert_num_queries(1):
        fresh = translator_get(
            bot_id=bot.pk, revision=1, locale="en", default_locale="en"
        )

    # then the edit shows, and later calls at revision 1 hit the cache
    assert fresh.pattern("greeting") == "Hi"
    with django_assert_num_queries(0):
        cached = translator_get(
            bot_id=bot.pk, revision=1, locale="uk", default_locale="en"
        )
    assert cached.pattern("greeting") == "Hi"
    assert cached.locale == "uk"


def test_translator_get_serves_a_late_request_the_newer_table(
    bot: Bot, django_assert_num_queries: Any
) -> None:
    # given a table cached at revision 2
    translation_set(bot_id=bot.pk, locale="en", key="greeting", forms="Hello")
    translator_get(bot_id=bot.pk, revision=2, locale="en", default_locale="en")

    # when a request that read the bot before the reload asks for revision 1
    with django_assert_num_queries(0):
        late = translator_get(
            bot_id=bot.pk, revision=1, locale="en", default_locale="en"
        )

    # then it is served the newer table without a query
    assert late.pattern("greeting") == "Hello"


def test_translator_get_keeps_bots_apart(bot: Bot, other_bot: Bot) -> None:
    # given two bots with the same key
    translation_set(bot_id=bot.pk, locale="en", key="greeting", forms="First")
    translation_set(bot_id=other_bot.pk, locale="en", key="greeting", forms="Second")

    # when both translators are asked at the same revision
    first = translator_get(bot_id=bot.pk, revision=0, locale="en", default_locale="en")
    second = translator_get(
        bot_id=other_bot.pk, revision=0, locale="en", default_locale="en"
    )

    # then each bot has its own text
    assert (first.pattern("greeting"), second.pattern("greeting")) == (
        "First",
        "Second",
    )


def _database_url() -> str:
    database = connection.settings_dict
    user = quote(database["USER"] or "")
    password = f":{quote(database['PASSWORD'])}" if database["PASSWORD"] else ""
    host = database["HOST"] or "127.0.0.1"
    port = database["PORT"] or 5432

    return f"postgres://{user}{password}@{host}:{port}/{database['NAME']}"


def _read_answer(process: subprocess.Popen[str]) -> dict[str, Any]:
    stdout: IO[str] | None = process.stdout
    assert stdout is not None
    readable, _, _ = select.select([stdout], [], [], WORKER_TIMEOUT)
    assert readable, "the worker did not answer in time"

    answer: dict[str, Any] = json.loads(stdout.readline())

    return answer


def _ask(process: subprocess.Popen[str], **request: Any) -> dict[str, Any]:
    assert process.stdin is not None
    process.stdin.write(json.dumps(request) + "\n")
    process.stdin.flush()

    return _read_answer(process)


@pytest.fixture
def translator_workers(transactional_db: None) -> Iterator[list[subprocess.Popen[str]]]:
    """Two separate processes answering ``translator_get`` on the test DB."""
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "DJANGO_SETTINGS_MODULE": "botfactory.settings",
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.i18n.translator_worker"],
            cwd=settings.BASE_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for process in processes:
            assert _read_answer(process) == {"ready": True}
        yield processes
    finally:
        for process in processes:
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(timeout=WORKER_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_translator_get_sees_a_new_revision_in_every_process(
    translator_workers: list[subprocess.Popen[str]], bot: Bot
) -> None:
    # given two processes that cached a bot's table at revision 0
    translation_set(bot_id=bot.pk, locale="en", key="greeting", forms="Hello")
    request = {"bot_id": bot.pk, "locale": "en", "key": "greeting"}
    warm = [_ask(process, revision=0, **request) for process in translator_workers]

    # when the text is edited and the revision bumped
    translation_set(bot_id=bot.pk, locale="en", key="greeting", forms="Hi")
    stale = [_ask(process, revision=0, **request) for process in translator_workers]
    fresh = [_ask(process, revision=1, **request) for process in translator_workers]

    # then revision 0 stays cached in each, and revision 1 is read by each
    assert warm == [{"pattern": "Hello", "queries": 1}] * 2
    assert stale == [{"pattern": "Hello", "queries": 0}] * 2
    assert fresh == [{"pattern": "Hi", "queries": 1}] * 2


def test_bots_with_identical_tables_share_one_cached_table(
    bot: Bot, other_bot: Bot
) -> None:
    from i18n import selectors

    translations_import(bot_id=bot.pk, data=DATA)
    translations_import(bot_id=other_bot.pk, data=DATA)

    for each in (bot, other_bot):
        translator_get(
            bot_id=each.pk, revision=50_000, locale="en", default_locale="en"
        )
    first = selectors._tables.get(bot.pk, 50_000)
    second = selectors._tables.get(other_bot.pk, 50_000)

    assert first is not None and first is second
    # A change to one bot gives it its own table again, the other keeps it.
    translation_set(bot_id=other_bot.pk, locale="en", key="greeting", forms="Hey")
    translator_get(
        bot_id=other_bot.pk, revision=50_001, locale="en", default_locale="en"
    )
    changed = selectors._tables.get(other_bot.pk, 50_001)
    assert changed is not None and changed is not first
    assert changed["en"]["greeting"] == {"other": "Hey"}
    assert selectors._tables.get(bot.pk, 50_000) is first
