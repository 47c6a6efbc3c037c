import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from bots.models import Bot, ProcessedUpdate, SpecVersion
from bots.sql import sql_deprovision
from tests.bots.conftest import DEMO_SECRET, DEMO_TOKEN
from tests.fakes.control import FakeTelegramControl


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)

    return out.getvalue()


@pytest.fixture
def cleanup_demo() -> object:
    yield None
    bot = Bot.objects.filter(slug="demo").first()
    if bot is not None:
        sql_deprovision(bot=bot)


@pytest.mark.django_db(transaction=True)
def test_load_demo_bot_prints_one_line_and_runs_in_demo_mode(
    cleanup_demo: object,
) -> None:
    output = _run("load_demo_bot")

    bot = Bot.objects.get(slug="demo")
    assert output == f"bot_id={bot.pk} webhook_path=/telegram/{bot.pk}/webhook\n"
    assert bot.is_demo
    assert bot.live_version is not None and bot.live_version.number == 1
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,256}", bot.webhook_secret)


@pytest.mark.django_db(transaction=True)
def test_load_demo_bot_again_keeps_values_and_publishes_nothing_new(
    telegram_api: FakeTelegramControl, cleanup_demo: object
) -> None:
    _run("load_demo_bot", "--token", DEMO_TOKEN, "--webhook-secret", DEMO_SECRET)

    output = _run("load_demo_bot")

    bot = Bot.objects.get(slug="demo")
    assert output == f"bot_id={bot.pk} webhook_path=/telegram/{bot.pk}/webhook\n"
    assert (bot.token, bot.webhook_secret) == (DEMO_TOKEN, DEMO_SECRET)
    assert bot.username == "botfactory_demo_bot"
    assert SpecVersion.objects.filter(bot=bot).count() == 1


@pytest.mark.django_db(transaction=True)
def test_load_demo_bot_option_replaces_the_stored_value(
    telegram_api: FakeTelegramControl, cleanup_demo: object
) -> None:
    _run("load_demo_bot", "--token", DEMO_TOKEN, "--webhook-secret", DEMO_SECRET)

    _run("load_demo_bot", "--webhook-secret", "another_secret-2")

    bot = Bot.objects.get(slug="demo")
    assert (bot.token, bot.webhook_secret) == (DEMO_TOKEN, "another_secret-2")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("secret", ["has space", "", "x" * 257, "slash/y", "ünï"])
def test_load_demo_bot_refuses_a_secret_telegram_would_refuse(
    secret: str, cleanup_demo: object
) -> None:
    with pytest.raises(CommandError, match="webhook secret"):
        _run("load_demo_bot", "--webhook-secret", secret)

    assert Bot.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_set_telegram_webhook_refuses_plain_http(
    telegram_api: FakeTelegramControl, settings: object, cleanup_demo: object
) -> None:
    _run("load_demo_bot", "--token", DEMO_TOKEN, "--webhook-secret", DEMO_SECRET)
    settings.PUBLIC_BASE_URL = "http://bots.example.com"  # type: ignore[attr-defined]
    telegram_api.clear_calls()

    with pytest.raises(CommandError, match="HTTPS"):
        _run("set_telegram_webhook", "demo")

    assert telegram_api.calls() == []


@pytest.mark.django_db(transaction=True)
def test_set_telegram_webhook_registers_url_secret_updates_and_commands(
    telegram_api: FakeTelegramControl, settings: object, cleanup_demo: object
) -> None:
    _run("load_demo_bot", "--token", DEMO_TOKEN, "--webhook-secret", DEMO_SECRET)
    settings.PUBLIC_BASE_URL = "https://bots.example.com"  # type: ignore[attr-defined]
    bot = Bot.objects.get(slug="demo")
    telegram_api.clear_calls()

    output = _run("set_telegram_webhook", str(bot.pk))

    webhook_calls = telegram_api.calls("setWebhook")
    assert [c["params"] for c in webhook_calls] == [
        {
            "url": f"https://bots.example.com/telegram/{bot.pk}/webhook",
            "secret_token": DEMO_SECRET,
            "allowed_updates": ["message", "callback_query", "my_chat_member"],
        }
    ]
    command_calls = telegram_api.calls("setMyCommands")
    assert [c["params"].get("language_code") for c in command_calls] == [
        None,
        "en",
        "uk",
    ]
    assert all(c["status"] == 200 for c in command_calls)
    assert output == (
        f"webhook set to https://bots.example.com/telegram/{bot.pk}/webhook; "
        "command lists set for 3 languages\n"
    )


@pytest.mark.django_db(transaction=True)
def test_run_polling_processes_queued_updates_through_the_same_service(
    telegram_api: FakeTelegramControl, cleanup_demo: object
) -> None:
    _run("load_demo_bot", "--token", DEMO_TOKEN, "--webhook-secret", DEMO_SECRET)
    updates = [
        {
            "update_id": 500 + n,
            "message": {
                "message_id": n,
                "date": 0,
                "chat": {"id": 9001, "type": "private"},
                "from": {
                    "id": 9001,
                    "is_bot": False,
                    "first_name": "P",
                    "language_code": "en",
                },
                "text": "/start",
            },
        }
        for n in range(2)
    ]
    telegram_api.queue_updates(DEMO_TOKEN, updates)
    telegram_api.clear_calls()

    output = _run("run_polling", "demo", "--max-updates", "2", "--poll-timeout", "1")

    assert output == "polling stopped after 2 updates\n"
    assert sorted(ProcessedUpdate.objects.values_list("update_id", flat=True)) == [
        500,
        501,
    ]
    assert [c["method"] for c in telegram_api.calls()][:1] == ["deleteWebhook"]
    assert len(telegram_api.calls("sendMessage")) == 2


@pytest.mark.django_db
def test_create_admin_user_prints_the_password_only_the_first_time() -> None:
    first = _run("create_admin_user")
    second = _run("create_admin_user")

    match = re.fullmatch(r"admin password: (\S+)\n", first)
    assert match is not None
    assert get_user_model().objects.get(username="admin").check_password(match.group(1))
    assert "password:" not in second


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("token", ["nonsense", "123:", ":abc", "12 3:abc"])
def test_load_demo_bot_refuses_a_malformed_token(
    token: str, cleanup_demo: object
) -> None:
    with pytest.raises(CommandError, match="Telegram token"):
        _run("load_demo_bot", "--token", token)

    assert Bot.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_run_polling_refuses_a_bot_in_demo_mode(cleanup_demo: object) -> None:
    _run("load_demo_bot")

    with pytest.raises(CommandError, match="demo mode"):
        _run("run_polling", "demo")
