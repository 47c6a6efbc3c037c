import html
import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client

from bots.models import Bot, BotAccess, Conversation, OutboundMessage, SpecVersion
from bots.services.specs import spec_publish
from dsl import spec_validate
from i18n.models import Translation
from tests.factories import BotAccessFactory, BotFactory
from tests.tokens import fake_bot_token

pytestmark = pytest.mark.django_db

DEMO_SPEC = Path(__file__).resolve().parents[2] / "bots" / "demo" / "spec.json"
TOKEN = fake_bot_token(7123456789, "admin")
SECRET = "webhook-secret_that-must-not-leak_0123"
SMALL_SPEC: dict[str, Any] = {
    "start": "main",
    "default_locale": "en",
    "locales": ["en"],
    "nodes": {
        "main": {
            "type": "menu.v1",
            "text": "main.text",
            "rows": [[{"label": "main.again", "goto": "main"}]],
        }
    },
}


def _demo_spec() -> dict[str, Any]:
    return json.loads(DEMO_SPEC.read_text(encoding="utf-8"))


def _change_url(bot: Bot) -> str:
    return f"/admin/bots/bot/{bot.pk}/change/"


def _change_data(bot: Bot, **overrides: Any) -> dict[str, Any]:
    """The change form as the browser posts it, translations included."""
    translations = list(bot.translations.order_by("key", "locale"))
    data: dict[str, Any] = {
        "name": bot.name,
        "slug": bot.slug,
        "default_locale": bot.default_locale,
        "is_active": "on" if bot.is_active else "",
        "draft_spec": json.dumps(bot.draft_spec),
        "sql_schema_postgresql": bot.sql_schema_postgresql,
        "sql_schema_sqlite": bot.sql_schema_sqlite,
        "new_token": "",
        "translations-TOTAL_FORMS": str(len(translations)),
        "translations-INITIAL_FORMS": str(len(translations)),
        "translations-MIN_NUM_FORMS": "0",
        "translations-MAX_NUM_FORMS": "1000",
    }
    for index, translation in enumerate(translations):
        prefix = f"translations-{index}-"
        data[prefix + "id"] = str(translation.pk)
        data[prefix + "bot"] = str(bot.pk)
        data[prefix + "locale"] = translation.locale
        data[prefix + "key"] = translation.key
        data[prefix + "forms"] = json.dumps(translation.forms)
    data.update(overrides)

    return {key: value for key, value in data.items() if value != ""}


def _snapshot(bot: Bot) -> tuple[Any, ...]:
    fresh = Bot.objects.get(pk=bot.pk)

    return (
        fresh.name,
        fresh.token,
        fresh.webhook_secret,
        fresh.draft_spec,
        fresh.live_version_id,
        fresh.cache_revision,
        SpecVersion.objects.filter(bot=bot).count(),
        sorted(fresh.translations.values_list("locale", "key", "forms")),
    )


def _messages(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_change_page_never_shows_the_token_or_the_webhook_secret(
    admin_client: Client,
) -> None:
    bot = BotFactory.create(token=TOKEN, webhook_secret=SECRET)

    change = admin_client.get(_change_url(bot)).content.decode()
    listing = admin_client.get("/admin/bots/bot/").content.decode()

    for page in (change, listing):
        assert TOKEN not in page
        assert TOKEN.partition(":")[2] not in page
        assert SECRET not in page
        assert html.escape(f"7123456789:…{TOKEN[-4:]}") in page


def test_token_is_write_only_and_kept_when_left_empty(admin_client: Client) -> None:
    bot = BotFactory.create(token=TOKEN, draft_spec=SMALL_SPEC)

    kept = admin_client.post(_change_url(bot), _change_data(bot, name="Renamed"))
    after_keep = Bot.objects.get(pk=bot.pk)
    replaced = admin_client.post(
        _change_url(bot), _change_data(bot, new_token=" 7000000002:AAHnewTokenValue ")
    )

    assert (kept.status_code, replaced.status_code) == (302, 302)
    assert (after_keep.name, after_keep.token) == ("Renamed", TOKEN)
    assert Bot.objects.get(pk=bot.pk).token == "7000000002:AAHnewTokenValue"


def test_clearing_the_token_puts_the_bot_in_demo_mode(admin_client: Client) -> None:
    bot = BotFactory.create(token=TOKEN, draft_spec=SMALL_SPEC)

    response = admin_client.post(_change_url(bot), _change_data(bot, clear_token="on"))

    assert response.status_code == 302
    assert Bot.objects.get(pk=bot.pk).token == ""


def test_malformed_new_token_is_refused_and_never_echoed(
    admin_client: Client,
) -> None:
    bot = BotFactory.create(token=TOKEN, draft_spec=SMALL_SPEC)
    before = _snapshot(bot)
    typed = "not a token at all 99"

    response = admin_client.post(_change_url(bot), _change_data(bot, new_token=typed))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["new_token"] == [
        "A Telegram token is digits, a colon and letters, such as 123456789:AAE…."
    ]
    assert typed not in response.content.decode()
    assert _snapshot(bot) == before


def test_draft_spec_with_two_errors_shows_both_paths_and_changes_nothing(
    admin_client: Client,
) -> None:
    bot = BotFactory.create(token=TOKEN, draft_spec=_demo_spec())
    before = _snapshot(bot)
    spec = _demo_spec()
    spec["nodes"]["order"]["steps"][2]["max"] = "ten"
    spec["nodes"]["order"]["steps"][3]["min_length"] = -1
    new_token = "7000000003:AAHtypedTogetherWithABrokenSpec"

    response = admin_client.post(
        _change_url(bot),
        _change_data(bot, draft_spec=json.dumps(spec), new_token=new_token),
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["draft_spec"] == [
        "nodes.order.steps[2].max: Input should be a valid integer, "
        "unable to parse string as an integer",
        "nodes.order.steps[3].min_length: Input should be greater than or equal to 0",
    ]
    page = response.content.decode()
    assert "nodes.order.steps[2].max" in page
    assert "nodes.order.steps[3].min_length" in page
    assert new_token not in page
    assert _snapshot(bot) == before


def test_draft_spec_with_a_lint_error_is_refused_with_its_path(
    admin_client: Client,
) -> None:
    bot = BotFactory.create(draft_spec=SMALL_SPEC)
    before = _snapshot(bot)
    spec = json.loads(json.dumps(SMALL_SPEC))
    spec["nodes"]["main"]["rows"][0][0]["goto"] = "nowhere"

    response = admin_client.post(
        _change_url(bot), _change_data(bot, draft_spec=json.dumps(spec))
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["draft_spec"] == [
        "nodes.main.rows[0][0].goto: There is no node 'nowhere'."
    ]
    assert _snapshot(bot) == before


def _translated(bot: Bot, *keys: str) -> None:
    for key in keys:
        Translation.objects.create(
            bot=bot, locale="en", key=key, forms={"other": key.title()}
        )


def test_publish_action_creates_the_next_version_and_reports_warnings(
    admin_client: Client,
) -> None:
    bot = BotFactory.create(draft_spec=SMALL_SPEC)
    _translated(bot, "main.text", "main.again", "orphan.text")
    spec_publish(bot=bot, source=SMALL_SPEC)
    draft = json.loads(json.dumps(SMALL_SPEC))
    draft["nodes"]["orphan"] = dict(draft["nodes"]["main"], text="orphan.text")
    Bot.objects.filter(pk=bot.pk).update(draft_spec=draft)
    revision = Bot.objects.get(pk=bot.pk).cache_revision

    response = admin_client.post(
        "/admin/bots/bot/",
        {"action": "publish_draft", "_selected_action": [str(bot.pk)]},
        follow=True,
    )

    fresh = Bot.objects.get(pk=bot.pk)
    version = SpecVersion.objects.get(bot=bot, number=2)
    assert list(
        SpecVersion.objects.filter(bot=bot).values_list("number", flat=True)
    ) == [2, 1]
    assert fresh.live_version_id == version.pk
    assert version.source == spec_validate(draft).as_json()
    assert version.author == get_user_model().objects.get(username="admin")
    assert fresh.cache_revision == revision + 1
    assert _messages(response) == [
        f"{bot.name} published as version 2 with warnings: "
        "nodes.orphan: No command, link or node leads here."
    ]


def test_publish_action_without_warnings_says_so(admin_client: Client) -> None:
    bot = BotFactory.create(draft_spec=SMALL_SPEC)
    _translated(bot, "main.text", "main.again")

    response = admin_client.post(
        "/admin/bots/bot/",
        {"action": "publish_draft", "_selected_action": [str(bot.pk)]},
        follow=True,
    )

    version = SpecVersion.objects.get(bot=bot)
    assert (version.number, Bot.objects.get(pk=bot.pk).live_version_id) == (
        1,
        version.pk,
    )
    assert _messages(response) == [f"{bot.name} published as version 1."]


def test_publish_action_refuses_a_spec_with_lint_errors(
    admin_client: Client,
) -> None:
    bot = BotFactory.create(draft_spec=SMALL_SPEC)
    spec_publish(bot=bot, source=SMALL_SPEC)
    broken = json.loads(json.dumps(SMALL_SPEC))
    broken["nodes"]["main"]["rows"] = [
        [{"label": "main.a", "goto": "nowhere"}],
        [{"label": "main.b", "goto": "elsewhere"}],
    ]
    Bot.objects.filter(pk=bot.pk).update(draft_spec=broken)
    before = _snapshot(bot)

    response = admin_client.post(
        "/admin/bots/bot/",
        {"action": "publish_draft", "_selected_action": [str(bot.pk)]},
        follow=True,
    )

    assert _messages(response) == [
        f"{bot.name} was not published: "
        "nodes.main.rows[0][0].goto: There is no node 'nowhere'.; "
        "nodes.main.rows[1][0].goto: There is no node 'elsewhere'."
    ]
    assert _snapshot(bot) == before


def test_translation_edited_inline_bumps_cache_revision(admin_client: Client) -> None:
    bot = BotFactory.create(draft_spec=SMALL_SPEC)
    Translation.objects.create(
        bot=bot, locale="en", key="main.text", forms={"other": "Hi"}
    )
    Bot.objects.filter(pk=bot.pk).update(cache_revision=7)

    response = admin_client.post(
        _change_url(bot),
        _change_data(bot, **{"translations-0-forms": '{"other": "Hello"}'}),
    )

    assert response.status_code == 302
    assert Bot.objects.get(pk=bot.pk).cache_revision == 8
    assert Translation.objects.get(bot=bot).forms == {"other": "Hello"}


def test_bot_saved_without_translation_changes_keeps_cache_revision(
    admin_client: Client,
) -> None:
    bot = BotFactory.create(draft_spec=SMALL_SPEC)
    Translation.objects.create(
        bot=bot, locale="en", key="main.text", forms={"other": "Hi"}
    )
    Bot.objects.filter(pk=bot.pk).update(cache_revision=7)

    response = admin_client.post(_change_url(bot), _change_data(bot, name="Renamed"))

    assert response.status_code == 302
    assert Bot.objects.get(pk=bot.pk).cache_revision == 7


def test_translation_with_a_wrong_plural_category_is_refused_inline(
    admin_client: Client,
) -> None:
    bot = BotFactory.create(draft_spec=SMALL_SPEC)
    Translation.objects.create(
        bot=bot, locale="en", key="main.text", forms={"other": "Hi"}
    )
    before = _snapshot(bot)

    response = admin_client.post(
        _change_url(bot),
        _change_data(
            bot, **{"translations-0-forms": '{"few": "Hi", "other": "Hello"}'}
        ),
    )

    assert response.status_code == 200
    # The translations inline, then the staff access inline.
    formset, _access = response.context["inline_admin_formsets"]
    assert formset.formset.errors == [
        {"forms": ["few: Not a plural category of this locale; use one, other."]}
    ]
    assert _snapshot(bot) == before


def test_spec_versions_cannot_be_added_or_changed(admin_client: Client) -> None:
    bot = BotFactory.create()
    version, _warnings = spec_publish(bot=bot, source=SMALL_SPEC)

    add = admin_client.get("/admin/bots/specversion/add/")
    view = admin_client.get(f"/admin/bots/specversion/{version.pk}/change/")
    change = admin_client.post(
        f"/admin/bots/specversion/{version.pk}/change/",
        {"bot": str(bot.pk), "number": "9", "source": "{}", "message": "edited"},
    )

    assert (add.status_code, view.status_code, change.status_code) == (403, 200, 403)
    version.refresh_from_db()
    assert (version.number, version.source, version.message) == (
        1,
        spec_validate(SMALL_SPEC).as_json(),
        "",
    )


def test_conversations_cannot_be_added_or_changed(admin_client: Client) -> None:
    bot = BotFactory.create()
    conversation = Conversation.objects.create(
        bot=bot, chat_id=5550001, state={"node": "main"}
    )

    add = admin_client.get("/admin/bots/conversation/add/")
    change = admin_client.post(
        f"/admin/bots/conversation/{conversation.pk}/change/",
        {"bot": str(bot.pk), "chat_id": "1", "state": "{}", "locale": "uk"},
    )

    assert (add.status_code, change.status_code) == (403, 403)
    conversation.refresh_from_db()
    assert (conversation.chat_id, conversation.state, conversation.locale) == (
        5550001,
        {"node": "main"},
        "",
    )


def test_outbound_messages_cannot_be_added_or_changed(admin_client: Client) -> None:
    bot = BotFactory.create()
    message = OutboundMessage.objects.create(
        bot=bot, chat_id=5550001, method="sendMessage", payload={"text": "Hi"}
    )

    add = admin_client.get("/admin/bots/outboundmessage/add/")
    change = admin_client.post(
        f"/admin/bots/outboundmessage/{message.pk}/change/",
        {"bot": str(bot.pk), "chat_id": "1", "method": "x", "status": "sent"},
    )

    assert (add.status_code, change.status_code) == (403, 403)
    message.refresh_from_db()
    assert (message.chat_id, message.method, message.status) == (
        5550001,
        "sendMessage",
        "pending",
    )


@pytest.mark.parametrize(
    "url", ["/admin/bots/bot/", "/admin/bots/specversion/", "/admin/"]
)
def test_non_staff_user_is_redirected_to_login(client: Client, url: str) -> None:
    user = get_user_model().objects.create_user(username="ann", password="pw-123456")
    client.force_login(user)

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={url}"


@pytest.mark.django_db(transaction=True)
def test_deactivating_a_bot_in_the_admin_deletes_its_webhook(
    admin_client: Client, telegram_api: Any
) -> None:
    bot = BotFactory.create(token=TOKEN, draft_spec=SMALL_SPEC)

    response = admin_client.post(_change_url(bot), _change_data(bot, is_active=""))

    assert response.status_code == 302
    assert Bot.objects.get(pk=bot.pk).is_active is False
    assert [(c["method"], c["token"]) for c in telegram_api.calls()] == [
        ("deleteWebhook", TOKEN)
    ]


def test_admin_pages_carry_the_botfactory_name(admin_client: Client) -> None:
    response = admin_client.get("/admin/")

    assert response.status_code == 200
    body = response.content.decode()
    assert "<title>Site administration | BotFactory</title>" in body
    assert '<div id="site-name"><a href="/admin/">BotFactory</a></div>' in body
    assert "Django administration" not in body


def _table_exists(bot: Bot, table: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [f"bot_{bot.pk}.{table}"])
        row = cursor.fetchone()

    return bool(row and row[0])


def test_saving_the_sql_schema_creates_the_bots_tables(admin_client: Client) -> None:
    bot = BotFactory.create(draft_spec=_demo_spec())
    schema = "CREATE TABLE IF NOT EXISTS notes (body text NOT NULL);"

    response = admin_client.post(
        _change_url(bot), _change_data(bot, sql_schema_postgresql=schema)
    )

    assert response.status_code == 302
    assert Bot.objects.get(pk=bot.pk).sql_schema_postgresql == schema
    assert _table_exists(bot, "notes")


def test_an_sql_schema_that_fails_is_shown_on_the_field_and_nothing_is_saved(
    admin_client: Client,
) -> None:
    bot = BotFactory.create(draft_spec=_demo_spec())
    before = _snapshot(bot)
    schema = "CREATE TABLE notes (body text);\nCREATE TABLE broken (id integr);"

    response = admin_client.post(
        _change_url(bot),
        _change_data(bot, name="Renamed", sql_schema_postgresql=schema),
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors == {
        "sql_schema_postgresql": [
            'The bot\'s SQL schema could not be applied: type "integr" does not '
            "exist (at character 57)"
        ]
    }
    assert _snapshot(bot) == before
    assert Bot.objects.get(pk=bot.pk).sql_schema_postgresql == ""
    assert not _table_exists(bot, "notes")


def test_staff_who_are_not_superusers_see_the_sql_schema_read_only(
    client: Client,
) -> None:
    bot = BotFactory.create(
        draft_spec=_demo_spec(), sql_schema_postgresql="CREATE TABLE a (b int);"
    )
    editor = BotAccessFactory.create(bot=bot, level=BotAccess.Level.EDIT).user
    client.force_login(editor)

    page = client.get(_change_url(bot))
    response = client.post(
        _change_url(bot),
        _change_data(bot, sql_schema_postgresql="DROP TABLE public.bots_bot;"),
    )

    assert "sql_schema_postgresql" not in page.context["adminform"].form.fields
    assert "CREATE TABLE a (b int);" in page.content.decode()
    assert response.status_code == 302
    assert Bot.objects.get(pk=bot.pk).sql_schema_postgresql == (
        "CREATE TABLE a (b int);"
    )
