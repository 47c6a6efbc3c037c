import copy
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client

from bots.models import AuditEntry, Bot, BotAccess, SpecVersion, Transcript
from bots.services.bots import DEMO_DIR
from bots.services.specs import TranscriptsFailedError, spec_publish
from bots.services.transfer import (
    BotTransferError,
    bot_export,
    bot_file_dumps,
    bot_file_loads,
    bot_import,
)
from bots.sql import sql_deprovision
from bots.sql.postgresql import role_name, schema_name
from i18n.models import Translation
from i18n.services import translation_set
from tests.bots.test_studio_try import TryIt
from tests.factories import BotAccessFactory, BotFactory, StaffUserFactory

pytestmark = pytest.mark.django_db

TOKEN = "7111222333:AAHtransferTokenThatMustNotTravel"
SECRET = "transfer-webhook-secret_never-exported-01"
SPEC: dict[str, Any] = {
    "start": "main",
    "default_locale": "en",
    "locales": ["en", "uk"],
    "nodes": {
        "main": {
            "type": "menu.v1",
            "text": "main.text",
            "rows": [[{"label": "main.again", "goto": "main"}]],
        }
    },
}
STEPS = [{"say": "/start", "expect": ["Hello, world"], "buttons": ["Again"]}]


def _draft() -> dict[str, Any]:
    draft = copy.deepcopy(SPEC)
    draft["nodes"]["main"]["rows"].append([{"label": "main.more", "goto": "main"}])

    return draft


def _source_bot() -> Bot:
    """A bot with everything a file holds, a token and a secret."""
    bot: Bot = BotFactory.create(
        name="Shop",
        slug="shop",
        token=TOKEN,
        webhook_secret=SECRET,
        default_locale="en",
        is_active=False,
        allows_sql_writes=True,
    )
    translation_set(bot_id=bot.pk, locale="en", key="main.text", forms="Hello, world")
    translation_set(bot_id=bot.pk, locale="en", key="main.again", forms="Again")
    translation_set(bot_id=bot.pk, locale="en", key="main.more", forms="More")
    translation_set(
        bot_id=bot.pk,
        locale="uk",
        key="main.text",
        forms={"one": "Привіт", "few": "Привіти", "many": "Привітів", "other": "Ой"},
    )
    Transcript.objects.create(bot=bot, name="greets", locale="en", steps=STEPS)
    Transcript.objects.create(
        bot=bot,
        name="saved from try it",
        locale="uk",
        steps=[{"say": "hi"}],
        is_draft=True,
    )
    spec_publish(bot=bot, source=SPEC)
    bot.draft_spec = _draft()
    bot.save()

    return bot


def _world() -> tuple[Any, ...]:
    """Everything an import may change, to compare before and after."""
    return (
        sorted(Bot.objects.values_list("slug", "name", "draft_spec", "live_version")),
        SpecVersion.objects.count(),
        sorted(Translation.objects.values_list("bot__slug", "locale", "key", "forms")),
        sorted(Transcript.objects.values_list("bot__slug", "name", "steps")),
        AuditEntry.objects.count(),
    )


def _file(bot: Bot) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(bot_file_dumps(data=bot_export(bot=bot)))

    return data


def test_export_holds_the_whole_bot_and_no_secret() -> None:
    bot = _source_bot()

    text = bot_file_dumps(data=bot_export(bot=bot))

    assert json.loads(text) == {
        "format": "botfactory.bot",
        "format_version": 2,
        "bot": {
            "slug": "shop",
            "name": "Shop",
            "default_locale": "en",
            "is_active": False,
            "allows_sql_writes": True,
        },
        "draft_spec": _draft(),
        "live_spec": Bot.objects.get(pk=bot.pk).live_version.source,  # type: ignore[union-attr]
        "translations": {
            "locales": {
                "en": {
                    "main.again": "Again",
                    "main.more": "More",
                    "main.text": "Hello, world",
                },
                "uk": {
                    "main.text": {
                        "one": "Привіт",
                        "few": "Привіти",
                        "many": "Привітів",
                        "other": "Ой",
                    }
                },
            }
        },
        "transcripts": [
            {"name": "greets", "locale": "en", "steps": STEPS, "is_draft": False},
            {
                "name": "saved from try it",
                "locale": "uk",
                "steps": [{"say": "hi"}],
                "is_draft": True,
            },
        ],
        "sql_schema": {"postgresql": "", "sqlite": ""},
    }
    assert TOKEN not in text
    assert TOKEN.partition(":")[2] not in text
    assert SECRET not in text
    # Stable: sorted keys, two spaces, UTF-8 as is, one final newline.
    assert (
        text
        == json.dumps(json.loads(text), ensure_ascii=False, indent=2, sort_keys=True)
        + "\n"
    )
    assert "Привіт" in text


def test_round_trip_into_a_new_slug_gives_the_same_file() -> None:
    source = _source_bot()
    first = _file(source)

    result = bot_import(data=first, slug="shop-copy")

    again = _file(result.bot)
    assert again == {**first, "bot": {**first["bot"], "slug": "shop-copy"}}
    copied = Bot.objects.get(slug="shop-copy")
    assert (copied.token, copied.is_demo, copied.name) == ("", True, "Shop")
    assert copied.webhook_secret not in ("", SECRET)
    assert [v.number for v in SpecVersion.objects.filter(bot=copied)] == [1]
    assert (result.created, result.published_version) == (True, 1)
    assert (result.translations, result.transcripts) == (4, 2)
    entry = AuditEntry.objects.get(action="import")
    assert (entry.bot_id, entry.actor_id, entry.actor_label, entry.detail) == (
        copied.pk,
        None,
        "command:import_bot",
        {
            "created": True,
            "published_version": 1,
            "translations": 4,
            "transcripts": 2,
        },
    )


def test_replace_updates_the_bot_keeps_its_secrets_and_drops_what_is_gone() -> None:
    source = _source_bot()
    data = _file(source)
    target = BotFactory.create(slug="target", token=TOKEN, webhook_secret=SECRET)
    translation_set(bot_id=target.pk, locale="en", key="old.key", forms="Old")
    Transcript.objects.create(bot=target, name="old test", locale="en", steps=STEPS)
    data["bot"]["slug"] = "target"

    bot_import(data=data, replace=True)
    again = bot_import(data=data, replace=True)

    fresh = Bot.objects.get(pk=target.pk)
    assert (fresh.token, fresh.webhook_secret, fresh.name) == (TOKEN, SECRET, "Shop")
    assert _file(fresh) == data
    assert not Translation.objects.filter(bot=target, key="old.key").exists()
    assert not Transcript.objects.filter(bot=target, name="old test").exists()
    # The same file again publishes nothing new.
    assert again.published_version is None
    assert SpecVersion.objects.filter(bot=target).count() == 1


def test_a_taken_slug_is_refused_without_replace_and_nothing_changes() -> None:
    data = _file(_source_bot())
    before = _world()

    with pytest.raises(BotTransferError) as caught:
        bot_import(data=data)

    assert caught.value.code == "slug_taken"
    assert caught.value.fields == {
        "bot.slug": [
            "A bot with slug 'shop' exists; choose another slug or replace that bot."
        ]
    }
    assert _world() == before


@pytest.mark.parametrize(
    ("change", "code", "fields"),
    [
        (
            {"format_version": 3},
            "bot_file_version",
            {
                "format_version": [
                    "Format version 3 is not supported; this server reads "
                    "versions 1, 2."
                ]
            },
        ),
        (
            {"format": "something.else"},
            "bot_file_format",
            {"format": ["Not a bot file: format must be 'botfactory.bot'."]},
        ),
        (
            {"colour": "red", "bot": {"slug": "new", "name": "N", "shape": 1}},
            "bot_file_invalid",
            {
                "colour": ["Unknown field."],
                "bot.shape": ["Unknown field."],
                "bot.default_locale": ["Give a locale tag such as en or pt-BR."],
                "bot.is_active": ["Give true or false."],
                "bot.allows_sql_writes": ["Give true or false."],
            },
        ),
        (
            {"format_version": 1},
            "bot_file_invalid",
            {"sql_schema": ["Unknown field."]},
        ),
        (
            {"sql_schema": {"postgresql": 1, "mysql": ""}},
            "bot_file_invalid",
            {
                "sql_schema.mysql": ["Unknown field."],
                "sql_schema.postgresql": ["Give the DDL as text (or '')."],
                "sql_schema.sqlite": ["Give the DDL as text (or '')."],
            },
        ),
        (
            {"live_spec": {**SPEC, "start": "nowhere"}},
            "bot_file_invalid",
            {"live_spec.start": ["There is no node 'nowhere'."]},
        ),
        (
            {"transcripts": [{"name": "t", "locale": "en", "steps": []}]},
            "bot_file_invalid",
            {
                "transcripts[0].steps": [
                    "The transcript must have a non-empty list of steps."
                ]
            },
        ),
        (
            {"translations": {"locales": {"fr": {"main.text": "Salut"}}}},
            "bot_file_invalid",
            {
                "translations.locales.fr": [
                    "Not a locale of this bot (en, uk); add it to the spec first."
                ]
            },
        ),
    ],
)
def test_bad_files_are_refused_by_path_and_change_nothing(
    change: dict[str, Any], code: str, fields: dict[str, list[str]]
) -> None:
    data = {**_file(_source_bot()), **change}
    if "bot" not in change:
        data["bot"] = {**data["bot"], "slug": "fresh"}
    before = _world()

    with pytest.raises(BotTransferError) as caught:
        bot_import(data=data)

    assert (caught.value.code, caught.value.fields) == (code, fields)
    assert _world() == before


def test_failing_transcripts_refuse_the_whole_import() -> None:
    data = _file(_source_bot())
    data["bot"]["slug"] = "fresh"
    data["transcripts"][0]["steps"] = [{"say": "/start", "expect": ["Goodbye"]}]
    before = _world()

    with pytest.raises(TranscriptsFailedError):
        bot_import(data=data)

    assert _world() == before


def _bot_schemas() -> tuple[list[str], list[str]]:
    """The bots' own schemas and roles that exist in the database."""
    prefix = role_name(0).removesuffix("0")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nspname FROM pg_namespace WHERE left(nspname, 4) = 'bot_'"
            " ORDER BY 1"
        )
        schemas = [name for (name,) in cursor.fetchall()]
        cursor.execute(
            "SELECT rolname FROM pg_roles WHERE left(rolname, %s) = %s ORDER BY 1",
            [len(prefix), prefix],
        )
        roles = [name for (name,) in cursor.fetchall()]

    return schemas, roles


def _orders(bot: Bot) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT drink, size, quantity, name FROM {schema_name(bot.pk)}.orders"
            " ORDER BY id"
        )
        return list(cursor.fetchall())


@pytest.fixture
def imported_bots_dropped(transactional_db: None) -> Iterator[None]:
    """Drop the own databases of the bots a test imported (roles outlive it)."""
    yield
    for bot in Bot.objects.exclude(slug="demo"):
        sql_deprovision(bot=bot)


@pytest.mark.django_db(transaction=True)
def test_the_demo_imported_as_a_new_bot_gets_its_own_tables_and_passes_its_tests(
    demo_bot: Bot, imported_bots_dropped: None
) -> None:
    # given the demo's file, which carries the DDL of its orders table
    data = _file(demo_bot)
    data["bot"]["slug"] = "demo-copy"
    assert data["sql_schema"] == {
        "postgresql": (DEMO_DIR / "schema_postgresql.sql").read_text("utf-8"),
        "sqlite": (DEMO_DIR / "schema_sqlite.sql").read_text("utf-8"),
    }

    # when it is imported as a new bot
    result = bot_import(data=data)

    # then its tables are in its own schema, and its 12 transcripts passed
    copied = result.bot
    assert (result.created, result.published_version) == (True, 1)
    assert result.transcripts == 12
    assert _orders(copied) == []
    schemas, roles = _bot_schemas()
    assert (schema_name(copied.pk) in schemas, role_name(copied.pk) in roles) == (
        True,
        True,
    )
    assert _file(copied) == data

    # and an order placed in the new bot lands in its table, not the demo's
    staff = get_user_model().objects.create_superuser("ann", password="pw-123456")
    client = Client()
    client.force_login(staff)
    chat = TryIt(client, copied)
    demo_before = _orders(demo_bot)
    drink = chat.say("/order")["replies"][0]
    size = chat.press(drink, "Tea")["replies"][0]
    chat.press(size, "Small")
    chat.say("3")
    phone = chat.say("Bo")["replies"][0]
    done = chat.press(phone, "Skip »")
    assert done["replies"][0]["text"].startswith("Thank you, Bo!")
    assert _orders(copied) == [("tea", "small", 3, "Bo")]
    assert _orders(demo_bot) == demo_before


@pytest.mark.django_db(transaction=True)
def test_replacing_a_bot_without_tables_applies_the_files_schema_first(
    demo_bot: Bot, imported_bots_dropped: None
) -> None:
    # given a bot with neither tables nor SQL set up, and the demo's file
    target = BotFactory.create(slug="target", token=TOKEN, webhook_secret=SECRET)
    data = _file(demo_bot)
    data["bot"]["slug"] = "target"

    # when the file replaces that bot
    result = bot_import(data=data, replace=True)

    # then the schema was applied before its transcripts ran, and kept
    assert (result.created, result.published_version) == (False, 1)
    fresh = Bot.objects.get(pk=target.pk)
    assert fresh.sql_schema_postgresql == demo_bot.sql_schema_postgresql
    assert (fresh.token, fresh.allows_sql_writes) == (TOKEN, True)
    assert _orders(fresh) == []


@pytest.mark.django_db(transaction=True)
def test_a_file_with_bad_ddl_is_refused_with_the_database_message_and_creates_nothing(
    demo_bot: Bot, imported_bots_dropped: None
) -> None:
    data = _file(demo_bot)
    data["bot"]["slug"] = "demo-copy"
    data["sql_schema"]["postgresql"] = (
        "CREATE TABLE orders (id integer);\nCREATE TABLE broken (id integr);"
    )
    before = (_world(), _bot_schemas())

    with pytest.raises(BotTransferError) as caught:
        bot_import(data=data)

    assert caught.value.code == "sql_schema_invalid"
    assert caught.value.fields == {
        "sql_schema.postgresql": [
            'The bot\'s SQL schema could not be applied: type "integr" does not '
            "exist (at character 59)"
        ]
    }
    assert (_world(), _bot_schemas()) == before


@pytest.mark.django_db(transaction=True)
def test_a_new_bot_whose_tests_then_fail_leaves_no_schema_or_role(
    demo_bot: Bot, imported_bots_dropped: None
) -> None:
    data = _file(demo_bot)
    data["bot"]["slug"] = "demo-copy"
    data["transcripts"][0]["steps"][0]["expect"] = ["Goodbye"]
    before = (_world(), _bot_schemas())

    with pytest.raises(TranscriptsFailedError):
        bot_import(data=data)

    assert (_world(), _bot_schemas()) == before


def test_a_version_1_file_without_a_schema_still_imports() -> None:
    data = _file(_source_bot())
    del data["sql_schema"]
    data["format_version"] = 1

    result = bot_import(data=data, slug="from-v1")

    assert (result.created, result.published_version) == (True, 1)
    again = _file(result.bot)
    assert again == {
        **data,
        "format_version": 2,
        "bot": {**data["bot"], "slug": "from-v1"},
        "sql_schema": {"postgresql": "", "sqlite": ""},
    }


def test_only_a_superuser_may_import_a_changed_sql_schema() -> None:
    data = _file(_source_bot())
    data["sql_schema"]["postgresql"] = "CREATE TABLE notes (body text)"
    author = StaffUserFactory.create()
    BotAccessFactory.create(
        bot=Bot.objects.get(slug="shop"), user=author, level=BotAccess.Level.PUBLISH
    )
    before = _world()

    with pytest.raises(BotTransferError) as caught:
        bot_import(data=data, replace=True, author=author)

    assert caught.value.code == "sql_schema_forbidden"
    assert caught.value.fields == {
        "sql_schema": [
            "Only a superuser may import a bot file whose SQL schema differs "
            "from the bot's."
        ]
    }
    assert _world() == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe", "The file is not UTF-8 (byte 1)."),
        (
            b"{",
            "Not valid JSON: Expecting property name enclosed in double quotes "
            "(line 1, column 2).",
        ),
        (b"[]", "A bot file is a JSON object."),
        (b'{"a": 1, "a": 2}', "The name 'a' appears twice in one object."),
    ],
)
def test_unreadable_files_are_refused(content: bytes, message: str) -> None:
    with pytest.raises(BotTransferError) as caught:
        bot_file_loads(content=content)

    assert (caught.value.code, caught.value.fields) == (
        "bot_file_unreadable",
        {"file": [message]},
    )


def test_import_checks_the_authors_access() -> None:
    data = _file(_source_bot())
    editor = BotAccessFactory.create(
        bot=Bot.objects.get(slug="shop"), level=BotAccess.Level.EDIT
    ).user
    data["live_spec"]["nodes"]["main"]["rows"][0][0]["label"] = "main.more"
    before = _world()

    with pytest.raises(PermissionDenied):
        # Updating the live spec publishes, which EDIT does not allow.
        bot_import(data=data, replace=True, author=editor)
    with pytest.raises(PermissionDenied):
        # Creating a bot takes the add permission.
        bot_import(data=data, slug="brand-new", author=editor)

    assert _world() == before


def test_commands_export_and_import(tmp_path: Path) -> None:
    source = _source_bot()
    path = tmp_path / "shop.bot.json"
    stdout = io.StringIO()

    call_command("export_bot", "shop", "--output", str(path), stderr=io.StringIO())
    call_command("import_bot", str(path), "--slug", "from-ci", stdout=stdout)

    assert path.read_text(encoding="utf-8") == bot_file_dumps(
        data=bot_export(bot=source)
    )
    assert stdout.getvalue() == (
        "bot from-ci created: 4 translations, 2 transcripts, published as version 1\n"
    )
    before = _world()
    with pytest.raises(CommandError) as caught:
        call_command("import_bot", str(path))
    assert str(caught.value) == (
        f"{path} was not imported (slug_taken):\n"
        "bot.slug: A bot with slug 'shop' exists; choose another slug or replace "
        "that bot."
    )
    assert _world() == before


def test_admin_export_downloads_the_file_for_a_viewer() -> None:
    bot = _source_bot()
    viewer = BotAccessFactory.create(bot=bot, level=BotAccess.Level.VIEW).user
    client = Client()
    client.force_login(viewer)

    response = client.get(f"/admin/bots/bot/{bot.pk}/studio/export/")

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="shop.bot.json"'
    assert response.content.decode() == bot_file_dumps(data=bot_export(bot=bot))


def test_admin_import_page_creates_or_shows_every_problem(
    admin_client: Client,
) -> None:
    data = _file(_source_bot())
    text = bot_file_dumps(data=data).encode()
    url = "/admin/bots/bot/studio/import/"
    broken = {**data, "colour": "red"}
    broken["bot"] = {**data["bot"], "slug": "broken"}
    before = _world()

    refused = admin_client.post(
        url,
        {
            "file": SimpleUploadedFile(
                "b.bot.json", bot_file_dumps(data=broken).encode()
            )
        },
    )
    taken = admin_client.post(url, {"file": SimpleUploadedFile("s.bot.json", text)})
    after_refusals = _world()
    created = admin_client.post(
        url, {"file": SimpleUploadedFile("s.bot.json", text), "slug": "shop-2"}
    )

    assert refused.status_code == 200
    assert refused.context["problems"] == ["colour: Unknown field."]
    assert '<ul id="import-problems"' in refused.content.decode()
    assert taken.context["problems"] == [
        "bot.slug: A bot with slug 'shop' exists; choose another slug or replace "
        "that bot."
    ]
    assert after_refusals == before
    new = Bot.objects.get(slug="shop-2")
    assert (created.status_code, created["Location"]) == (
        302,
        f"/admin/bots/bot/{new.pk}/change/",
    )


def test_admin_import_needs_add_or_edit_permission() -> None:
    bot = _source_bot()
    text = bot_file_dumps(data=_file(bot)).encode()
    viewer = BotAccessFactory.create(bot=bot, level=BotAccess.Level.VIEW).user
    nobody = StaffUserFactory.create()
    url = "/admin/bots/bot/studio/import/"
    before = _world()
    statuses = []
    for user in (viewer, nobody):
        client = Client()
        client.force_login(user)
        statuses.append(client.get(url).status_code)
        statuses.append(
            client.post(
                url,
                {"file": SimpleUploadedFile("s.bot.json", text), "replace": "on"},
            ).status_code
        )

    assert statuses == [403, 403, 403, 403]
    assert _world() == before
