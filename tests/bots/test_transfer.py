import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from bots.models import AuditEntry, Bot, BotAccess, SpecVersion, Transcript
from bots.services.specs import TranscriptsFailedError, spec_publish
from bots.services.transfer import (
    BotTransferError,
    bot_export,
    bot_file_dumps,
    bot_file_loads,
    bot_import,
)
from i18n.models import Translation
from i18n.services import translation_set
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
        "format_version": 1,
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
            {"format_version": 2},
            "bot_file_version",
            {
                "format_version": [
                    "Format version 2 is not supported; this server reads version 1."
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


@pytest.mark.django_db(transaction=True)
def test_a_bot_whose_tables_the_file_lacks_is_refused_by_its_tests(
    demo_bot: Bot,
) -> None:
    # given the demo's file, whose orders table a new bot would not have
    data = _file(demo_bot)
    data["bot"]["slug"] = "demo-copy"
    before = _world()

    # when it is imported as a new bot
    with pytest.raises(TranscriptsFailedError) as caught:
        bot_import(data=data)

    # then the transcripts that read or write orders fail, and nothing changed
    assert [r.name for r in caught.value.results] == [
        "en: no orders yet",
        "en: order with a phone number",
        "en: order with an invalid quantity re-asked",
        "uk: замовлення з номером телефону",
        "uk: замовлення з повторним питанням про кількість",
        "uk: ще немає замовлень",
    ]
    assert caught.value.results[0].difference == (
        'step 2 (press "🧾 My orders"): reply 1 was "Sorry, something went '
        'wrong. Let\'s start over.", expected "You have no orders yet."'
    )
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
