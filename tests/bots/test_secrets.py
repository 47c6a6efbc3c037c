import html
import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.test import Client
from knox.models import AuthToken
from rest_framework.test import APIClient

from bots.models import Bot
from tests.bots.conftest import DEMO_SECRET, DEMO_TOKEN, Webhook
from tests.factories import BotFactory
from tests.fakes.control import FakeTelegramControl
from tests.tokens import fake_bot_token

KEY_A = Fernet.generate_key().decode("ascii")
KEY_B = Fernet.generate_key().decode("ascii")
KEY_C = Fernet.generate_key().decode("ascii")
TOKEN = fake_bot_token(7300000001, "secrets-old")
SECRET = "rotation-test_secret-0123456789"
SQL_PASSWORD = "sql-password-for-rotation-0123"
PUBLIC_URL = "https://bots.example.com"
DEADLINE_SECONDS = 10.0


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())

    return out.getvalue()


def _stored(bot: Bot) -> tuple[str, str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT token, webhook_secret, sql_password FROM bots_bot WHERE id = %s",
            [bot.pk],
        )
        row = cursor.fetchone()

    return row[0], row[1], row[2]


def _plain(bot: Bot) -> tuple[str, str, str]:
    fresh = Bot.objects.get(pk=bot.pk)

    return fresh.token, fresh.webhook_secret, fresh.sql_password


def _poll(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)


class _Background:
    """Runs a management command in a thread, keeping what it raised."""

    def __init__(self, *args: str) -> None:
        self.error: BaseException | None = None
        self.output = io.StringIO()
        self._thread = threading.Thread(target=self._run, args=args)
        self._thread.start()

    def _run(self, *args: str) -> None:
        try:
            call_command(*args, stdout=self.output, stderr=io.StringIO())
        except BaseException as exc:
            self.error = exc
        finally:
            connections.close_all()

    def join(self) -> None:
        self._thread.join(DEADLINE_SECONDS)
        assert not self._thread.is_alive()


@pytest.fixture
def keys_a(settings: Any) -> Any:
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]

    return settings


@pytest.fixture
def rotation_bot(keys_a: Any, db: None) -> Bot:
    return BotFactory.create(
        token=TOKEN, webhook_secret=SECRET, sql_password=SQL_PASSWORD
    )


@pytest.fixture
def public_url(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = PUBLIC_URL


@pytest.fixture
def post(demo_bot: Bot) -> Iterator[Callable[[str], int]]:
    """Post an update Telegram-style with a given secret; return the status."""
    webhook = Webhook(Client(), demo_bot)
    update_ids = iter(range(9000, 10000))

    def post_update(secret: str) -> int:
        # An update of no known type: accepted with 200 and otherwise ignored.
        response = webhook.post({"update_id": next(update_ids)}, secret=secret)
        return int(response.status_code)

    yield post_update


def _live_secrets(bot: Bot) -> tuple[str, str]:
    fresh = Bot.objects.get(pk=bot.pk)

    return fresh.webhook_secret, fresh.webhook_secret_previous


# --- encryption keys ----------------------------------------------------------


def test_key_rotation_adds_a_key_reencrypts_and_drops_the_old_one(
    rotation_bot: Bot, keys_a: Any
) -> None:
    written_under_a = _stored(rotation_bot)
    plain = (TOKEN, SECRET, SQL_PASSWORD)

    keys_a.FIELD_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    readable_before = _plain(rotation_bot)
    output = _run("reencrypt_secrets")
    rotated = _stored(rotation_bot)
    second_output = _run("reencrypt_secrets")

    keys_a.FIELD_ENCRYPTION_KEYS = [KEY_B]
    assert readable_before == plain
    assert _plain(rotation_bot) == plain
    assert output == (
        "bots.Bot.token: 1 re-encrypted, 0 already current, 0 empty\n"
        "bots.Bot.webhook_secret: 1 re-encrypted, 0 already current, 0 empty\n"
        "bots.Bot.webhook_secret_previous: 0 re-encrypted, 0 already current, "
        "1 empty\n"
        "bots.Bot.sql_password: 1 re-encrypted, 0 already current, 0 empty\n"
        "re-encrypted 3 values; 0 were already under the first key\n"
    )
    assert second_output.endswith(
        "re-encrypted 0 values; 3 were already under the first key\n"
    )
    assert _stored(rotation_bot) == rotated
    for before, after, value in zip(written_under_a, rotated, plain, strict=True):
        assert before != after
        assert Fernet(KEY_B.encode()).decrypt(after.encode()).decode() == value
    for text in (output, second_output):
        assert all(value not in text for value in plain)


def test_key_rotation_without_the_old_key_fails_clearly_and_changes_nothing(
    rotation_bot: Bot, keys_a: Any
) -> None:
    written_under_a = _stored(rotation_bot)
    keys_a.FIELD_ENCRYPTION_KEYS = [KEY_B, KEY_C]

    with pytest.raises(CommandError) as caught:
        _run("reencrypt_secrets")

    assert str(caught.value) == (
        "3 stored values cannot be decrypted with any key of FIELD_ENCRYPTION_KEYS "
        "(bots.Bot.token: 1, bots.Bot.webhook_secret: 1, bots.Bot.sql_password: 1); "
        "nothing was changed. Add the key they were written with after the new one."
    )
    assert caught.value.__cause__ is None
    assert _stored(rotation_bot) == written_under_a
    keys_a.FIELD_ENCRYPTION_KEYS = [KEY_A]
    assert _plain(rotation_bot) == (TOKEN, SECRET, SQL_PASSWORD)


def test_key_rotation_stops_at_one_unreadable_value_and_keeps_the_others(
    rotation_bot: Bot, keys_a: Any
) -> None:
    other = BotFactory.create(token=fake_bot_token(7300000002, "secrets-other"))
    keys_a.FIELD_ENCRYPTION_KEYS = [KEY_C]
    BotFactory.create(token=fake_bot_token(7300000003, "secrets-under-c"))
    before = (_stored(rotation_bot), _stored(other))
    keys_a.FIELD_ENCRYPTION_KEYS = [KEY_B, KEY_A]

    with pytest.raises(CommandError, match=r"^2 stored values cannot be decrypted"):
        _run("reencrypt_secrets")

    assert (_stored(rotation_bot), _stored(other)) == before


def test_a_value_under_no_configured_key_is_a_clear_error_without_the_value(
    rotation_bot: Bot, keys_a: Any
) -> None:
    # Read once under its key first: a decryption remembered for speed must
    # not outlive the key it needed.
    assert Bot.objects.get(pk=rotation_bot.pk).token == TOKEN
    keys_a.FIELD_ENCRYPTION_KEYS = [KEY_B]

    with pytest.raises(Exception) as caught:
        Bot.objects.get(pk=rotation_bot.pk)

    assert type(caught.value).__name__ == "DecryptionError"
    assert str(caught.value) == "No configured key decrypts this value."
    assert str(caught.value.__cause__) == ""


# --- bot token ----------------------------------------------------------------


def test_rotate_bot_token_checks_it_with_telegram_then_stores_it(
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    public_url: None,
    tmp_path: Path,
) -> None:
    new_token = fake_bot_token(7000000001, "demo-rotated")
    token_file = tmp_path / "token"
    token_file.write_text(new_token + "\n", encoding="utf-8")

    output = _run("rotate_bot_token", "demo", "--token-file", str(token_file))

    url = f"{PUBLIC_URL}/telegram/{demo_bot.pk}/webhook"
    assert output == f"token of bot {demo_bot.pk} replaced; webhook set to {url}\n"
    assert [(c["method"], c["token"], c["status"]) for c in telegram_api.calls()] == [
        ("getMe", new_token, 200),
        ("setWebhook", new_token, 200),
    ]
    assert telegram_api.calls("setWebhook")[0]["params"]["secret_token"] == DEMO_SECRET
    assert Bot.objects.get(pk=demo_bot.pk).token == new_token
    assert new_token not in output


def test_rotate_bot_token_reads_standard_input(
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    public_url: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    new_token = fake_bot_token(7000000001, "demo-from-stdin")
    monkeypatch.setattr("sys.stdin", io.StringIO(f"  {new_token}\n"))

    _run("rotate_bot_token", str(demo_bot.pk))

    assert Bot.objects.get(pk=demo_bot.pk).token == new_token


@pytest.mark.parametrize(
    ("method", "status", "message"),
    [
        (
            "getMe",
            401,
            "Either the bot token was rejected by Telegram or the endpoint "
            "'getMe' does not exist.",
        ),
        ("setWebhook", 400, "Bad webhook: failed to resolve host"),
    ],
)
def test_rotate_bot_token_refused_by_telegram_keeps_the_stored_token(
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    public_url: None,
    tmp_path: Path,
    method: str,
    status: int,
    message: str,
) -> None:
    new_token = fake_bot_token(7000000001, "demo-refused")
    token_file = tmp_path / "token"
    token_file.write_text(new_token, encoding="utf-8")
    telegram_api.add_fault(
        method=method,
        token=new_token,
        status=status,
        description="Bad Request: bad webhook: failed to resolve host",
    )

    with pytest.raises(CommandError) as caught:
        _run("rotate_bot_token", "demo", "--token-file", str(token_file))

    assert str(caught.value) == (
        f"Telegram refused the token: {message}; the stored token is unchanged."
    )
    assert new_token not in str(caught.value)
    assert Bot.objects.get(pk=demo_bot.pk).token == DEMO_TOKEN
    calls = [c["method"] for c in telegram_api.calls()]
    assert calls == (["getMe"] if method == "getMe" else ["getMe", "setWebhook"])


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("not-a-token", "A Telegram token is digits, a colon and letters"),
        ("", "A Telegram token is digits, a colon and letters"),
        (
            fake_bot_token(7999999999, "another-bot"),
            "The new token belongs to another Telegram bot.",
        ),
    ],
)
def test_rotate_bot_token_refuses_a_malformed_or_foreign_token_without_calls(
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    public_url: None,
    tmp_path: Path,
    token: str,
    message: str,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(token, encoding="utf-8")

    with pytest.raises(CommandError, match=f"^{message}"):
        _run("rotate_bot_token", "demo", "--token-file", str(token_file))

    assert telegram_api.calls() == []
    assert Bot.objects.get(pk=demo_bot.pk).token == DEMO_TOKEN


def test_rotate_bot_token_says_when_the_token_file_cannot_be_read(
    demo_bot: Bot, telegram_api: FakeTelegramControl, tmp_path: Path
) -> None:
    with pytest.raises(CommandError) as caught:
        _run("rotate_bot_token", "demo", "--token-file", str(tmp_path / "missing"))

    assert str(caught.value) == ("The token cannot be read: No such file or directory.")
    assert telegram_api.calls() == []
    assert Bot.objects.get(pk=demo_bot.pk).token == DEMO_TOKEN


def test_rotate_bot_token_takes_no_token_on_the_command_line(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    new_token = fake_bot_token(7000000001, "demo-on-argv")

    with pytest.raises(CommandError, match=r"^Error: unrecognized arguments: "):
        _run("rotate_bot_token", "demo", "--token", new_token)

    assert telegram_api.calls() == []
    assert Bot.objects.get(pk=demo_bot.pk).token == DEMO_TOKEN


# --- webhook secret -----------------------------------------------------------


def test_rotate_webhook_secret_accepts_both_until_telegram_confirms(
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    public_url: None,
    post: Callable[[str], int],
    settings: Any,
) -> None:
    # Telegram takes its time: the rotation waits in setWebhook meanwhile.
    settings.TELEGRAM_TIMEOUT_SECONDS = 10.0
    telegram_api.add_fault(method="setWebhook", delay_ms=3000, times=1)
    rotation = _Background("rotate_webhook_secret", "demo")
    _poll(lambda: [c["status"] for c in telegram_api.calls("setWebhook")] == [0])
    during = _live_secrets(demo_bot)

    statuses_during = (post(during[1]), post(during[0]), post("not-" + during[0]))
    rotation.join()

    new_secret = during[0]
    assert rotation.error is None
    assert during == (new_secret, DEMO_SECRET)
    assert statuses_during == (200, 200, 403)
    assert _live_secrets(demo_bot) == (new_secret, "")
    assert (post(DEMO_SECRET), post(new_secret)) == (403, 200)
    webhook_calls = telegram_api.calls("setWebhook")
    assert [c["params"]["secret_token"] for c in webhook_calls] == [new_secret]
    assert [c["status"] for c in webhook_calls] == [200]
    assert new_secret not in rotation.output.getvalue()
    assert len(new_secret) == 43


@pytest.mark.parametrize("status", [400, 500])
def test_rotate_webhook_secret_refused_by_telegram_keeps_the_old_one_live(
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    public_url: None,
    post: Callable[[str], int],
    status: int,
) -> None:
    telegram_api.add_fault(method="setWebhook", status=status, times=1)

    with pytest.raises(CommandError) as caught:
        _run("rotate_webhook_secret", "demo")

    refused = telegram_api.calls("setWebhook")[0]["params"]["secret_token"]
    assert str(caught.value).endswith("; the old secret stays in use.")
    assert _live_secrets(demo_bot) == (DEMO_SECRET, "")
    assert (post(DEMO_SECRET), post(refused)) == (200, 403)
    assert refused != DEMO_SECRET


def test_rotate_webhook_secret_unanswered_keeps_both_until_run_again(
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    public_url: None,
    post: Callable[[str], int],
    settings: Any,
) -> None:
    settings.TELEGRAM_TIMEOUT_SECONDS = 0.5
    telegram_api.add_fault(method="setWebhook", hang=True, times=1)

    with pytest.raises(CommandError, match="did not answer in time; both secrets"):
        _run("rotate_webhook_secret", "demo")
    unanswered, previous = _live_secrets(demo_bot)
    statuses_between = (post(DEMO_SECRET), post(unanswered))
    telegram_api.clear_faults()
    _run("rotate_webhook_secret", "demo")

    final, final_previous = _live_secrets(demo_bot)
    assert previous == DEMO_SECRET
    assert statuses_between == (200, 200)
    assert [c["params"]["secret_token"] for c in telegram_api.calls("setWebhook")] == [
        unanswered,
        unanswered,
        final,
    ]
    assert final_previous == ""
    assert len({DEMO_SECRET, unanswered, final}) == 3
    assert (post(DEMO_SECRET), post(unanswered), post(final)) == (403, 403, 200)


def test_a_bot_without_a_webhook_secret_cannot_be_put_in_webhook_mode(
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    public_url: None,
    post: Callable[[str], int],
) -> None:
    Bot.objects.filter(pk=demo_bot.pk).update(webhook_secret="")

    with pytest.raises(CommandError, match=r"^The bot has no webhook secret\.$"):
        _run("set_telegram_webhook", "demo")

    assert telegram_api.calls() == []
    assert post("") == 403


# --- nothing answers with a secret --------------------------------------------


def _secrets_of(bot: Bot) -> list[str]:
    fresh = Bot.objects.get(pk=bot.pk)
    values = [
        fresh.token,
        fresh.token.partition(":")[2],
        fresh.webhook_secret,
        fresh.webhook_secret_previous,
        fresh.sql_password,
    ]
    assert all(values)

    return values


def test_no_api_endpoint_or_admin_page_answers_with_a_secret(
    demo_bot: Bot, admin_client: Client
) -> None:
    previous = "previous-rotation_secret-0123456789"
    Bot.objects.filter(pk=demo_bot.pk).update(webhook_secret_previous=previous)
    staff = get_user_model().objects.create_user(
        username="api-editor", password=None, is_staff=True, is_superuser=True
    )
    _instance, key = AuthToken.objects.create(user=staff)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    spec = Bot.objects.get(pk=demo_bot.pk).draft_spec
    anonymous = APIClient()

    answers = [
        api.post(f"/bots/{demo_bot.pk}/reload"),
        api.post(f"/bots/{demo_bot.pk}/versions", {"spec": spec}, format="json"),
        api.get(f"/bots/{demo_bot.pk}/i18n?locale=en"),
        api.put(
            f"/bots/{demo_bot.pk}/i18n/en/main.text", {"other": "Hi"}, format="json"
        ),
        api.get(f"/bots/{demo_bot.pk}/i18n/coverage"),
        api.post(f"/bots/{demo_bot.pk}/versions", {"spec": {}}, format="json"),
        anonymous.post(f"/bots/{demo_bot.pk}/reload"),
        api.get("/api/schema"),
        admin_client.get(f"/admin/bots/bot/{demo_bot.pk}/change/"),
        admin_client.get("/admin/bots/bot/"),
        admin_client.get(f"/admin/bots/bot/{demo_bot.pk}/history/"),
    ]

    statuses = [answer.status_code for answer in answers]
    assert statuses == [200, 201, 200, 200, 200, 400, 401, 200, 200, 200, 200]
    pages = [answer.content.decode() for answer in answers]
    for secret in _secrets_of(demo_bot):
        assert [secret in page for page in pages] == [False] * len(pages)
    assert html.escape(f"7000000001:…{DEMO_TOKEN[-4:]}") in pages[8]


def test_the_provider_key_is_read_from_its_file(tmp_path: Path) -> None:
    key = "sk-test-" + "k" * 40
    key_file = tmp_path / "openai"
    key_file.write_text(key + "\n", encoding="utf-8")
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OPENAI_", "LLM_"))
    }
    env.update(OPENAI_API_KEY_FILE=str(key_file), DOTENV_PATH=os.devnull)
    program = (
        "import django; django.setup(); from django.conf import settings; "
        f"print(settings.LLM_PROVIDER_NAME, settings.OPENAI_API_KEY == {key!r})"
    )

    result = subprocess.run(
        [sys.executable, "-c", program],
        env={**env, "DJANGO_SETTINGS_MODULE": "botfactory.settings"},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert (result.returncode, result.stdout) == (0, "openai True\n")
