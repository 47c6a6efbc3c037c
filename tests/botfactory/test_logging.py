import io
import json
import logging
import re
import secrets
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.utils.module_loading import import_string

from botfactory.context import context_bind, context_scope
from botfactory.logging import REDACTED, redact, secret_register
from bots.models import Bot
from tests.bots.conftest import DEMO_SECRET, DEMO_TOKEN
from tests.factories import BotFactory
from tests.fakes.control import FakeTelegramControl
from tests.tokens import fake_bot_token

TOKEN = fake_bot_token(123456789, "logging")
BOT_URL = f"https://api.telegram.org/bot{TOKEN}/sendMessage"
# Every logger that could see a token, a URL with one, or an update.
LOGGERS = [
    "",
    "httpx",
    "httpcore",
    "telegram",
    "celery",
    "django",
    "django.db.backends",
]
START = {
    "update_id": 1001,
    "message": {
        "message_id": 1,
        "date": 1767261600,
        "chat": {"id": 5550001, "type": "private"},
        "from": {
            "id": 5550001,
            "is_bot": False,
            "first_name": "Ann",
            "language_code": "en",
        },
        "text": "/start",
    },
}

logger = logging.getLogger(__name__)


def _handler(stream: io.StringIO, formatter: str) -> logging.Handler:
    """A handler with the filters and a formatter of ``settings.LOGGING``."""
    config: dict[str, Any] = settings.LOGGING
    handler = logging.StreamHandler(stream)
    for name in config["handlers"]["console"]["filters"]:
        handler.addFilter(import_string(config["filters"][name]["()"])())
    formatter_config = config["formatters"][formatter]
    if "()" in formatter_config:
        handler.setFormatter(import_string(formatter_config["()"])())
    else:
        handler.setFormatter(logging.Formatter(formatter_config["format"]))

    return handler


class Captured:
    def __init__(self) -> None:
        self.json_stream = io.StringIO()
        self.text_stream = io.StringIO()
        self.json_handler = _handler(self.json_stream, "json")
        self.text_handler = _handler(self.text_stream, "text")

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.json_stream.getvalue().splitlines()]

    def output(self) -> str:
        return self.json_stream.getvalue() + self.text_stream.getvalue()


@pytest.fixture
def captured() -> Iterator[Captured]:
    """Everything logged, at DEBUG, through the handlers as configured."""
    capture = Captured()
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in LOGGERS}
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    root.addHandler(capture.json_handler)
    root.addHandler(capture.text_handler)
    try:
        yield capture
    finally:
        root.removeHandler(capture.json_handler)
        root.removeHandler(capture.text_handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _without_time(line: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in line.items() if key != "time"}


def test_json_line_carries_the_bound_context(captured: Captured) -> None:
    with context_scope(trace_id="trace-1"):
        context_bind(bot_id=7, update_id=42)
        logger.info("Update %s handled.", 42)

    [line] = captured.lines()
    assert _without_time(line) == {
        "level": "INFO",
        "name": "tests.botfactory.test_logging",
        "message": "Update 42 handled.",
        "trace_id": "trace-1",
        "bot_id": 7,
        "update_id": 42,
    }
    assert captured.text_stream.getvalue().endswith(
        "INFO tests.botfactory.test_logging [trace-1] Update 42 handled.\n"
    )


def test_json_line_outside_any_context_has_a_placeholder_trace_id(
    captured: Captured,
) -> None:
    logger.warning("Nothing bound.")

    [line] = captured.lines()
    assert _without_time(line) == {
        "level": "WARNING",
        "name": "tests.botfactory.test_logging",
        "message": "Nothing bound.",
        "trace_id": "-",
    }


def test_request_id_is_echoed() -> None:
    response = Client().get("/health", headers={"X-Request-ID": "req-42.a_b"})

    assert response.status_code == 200
    assert response["X-Request-ID"] == "req-42.a_b"


@pytest.mark.parametrize(
    "supplied", [None, "", "has space", "x" * 129, "abc\n", "id;drop", "ünï"]
)
def test_missing_or_malformed_request_id_is_replaced(supplied: str | None) -> None:
    headers = {} if supplied is None else {"X-Request-ID": supplied}

    first = Client().get("/health", headers=headers)
    second = Client().get("/health", headers=headers)

    assert first.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", first["X-Request-ID"])
    assert first["X-Request-ID"] != second["X-Request-ID"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"token {TOKEN} seen", "token [redacted] seen"),
        (
            f"HTTP Request: POST {BOT_URL} 200",
            "HTTP Request: POST https://api.telegram.org/bot[redacted]/sendMessage 200",
        ),
        ("Authorization: Token xyz", "Authorization: Token [redacted]"),
        ("authorization=Bearer abc.def-ghi", "authorization=Bearer [redacted]"),
        ("{'token': 'abc123', 'chat_id': 5}", "{'token': '[redacted]', 'chat_id': 5}"),
        ('{"api_key": "k-123"}', '{"api_key": "[redacted]"}'),
        (
            "key sk-proj-Ab3dE6gH9jK2mN5pQ8sT1vW4 failed",
            "key [redacted] failed",
        ),
        (
            "connect postgres://u:secret@h/db failed",
            "connect postgres://u:[redacted]@h/db failed",
        ),
        (
            "broker redis://:secret@cache:6379/0 down",
            "broker redis://:[redacted]@cache:6379/0 down",
        ),
        ("?password=hunter2&user=ann", "?password=[redacted]&user=ann"),
        ("webhook_secret=abc123 set", "webhook_secret=[redacted] set"),
        (
            "X-Telegram-Bot-Api-Secret-Token: abc123",
            "X-Telegram-Bot-Api-Secret-Token: [redacted]",
        ),
        ("Update 1001 for chat 5550001 at 12:30:45", None),
    ],
)
def test_redact_removes_tokens_keys_and_passwords(
    text: str, expected: str | None
) -> None:
    assert redact(text) == (text if expected is None else expected)


def test_registered_secret_is_redacted_wherever_it_appears() -> None:
    secret = "whs_" + secrets.token_urlsafe(24)
    text = f"header={secret!r} url=/hook?s={secret}"
    before = redact(text)

    secret_register(secret)

    assert before == text
    assert redact(text) == f"header='{REDACTED}' url=/hook?s={REDACTED}"


def test_short_value_is_not_registered() -> None:
    secret_register("ok")

    assert redact("ok, done") == "ok, done"


@pytest.mark.parametrize("name", ["httpx", "httpcore", "telegram", "celery", ""])
def test_third_party_record_arguments_are_redacted(
    captured: Captured, name: str
) -> None:
    logging.getLogger(name).debug(
        'HTTP Request: %s %s "%s"', "POST", BOT_URL, "HTTP/1.1 200 OK"
    )

    [line] = captured.lines()
    assert line["message"] == (
        "HTTP Request: POST https://api.telegram.org/bot[redacted]/sendMessage "
        '"HTTP/1.1 200 OK"'
    )
    assert TOKEN not in captured.output()


def test_exception_text_is_redacted(captured: Captured) -> None:
    try:
        raise RuntimeError(f"call to {BOT_URL} failed")
    except RuntimeError:
        logging.getLogger("telegram").exception("Call failed for %s.", TOKEN)

    [line] = captured.lines()
    assert line["message"] == "Call failed for [redacted]."
    assert line["exc_info"].startswith("Traceback (most recent call last):")
    assert line["exc_info"].endswith(
        "RuntimeError: call to https://api.telegram.org/bot[redacted]/sendMessage "
        "failed"
    )
    assert TOKEN not in captured.output()


def test_exception_text_rendered_by_an_earlier_handler_is_redacted(
    captured: Captured,
) -> None:
    try:
        raise RuntimeError(f"call to {BOT_URL} failed")
    except RuntimeError:
        record = logger.makeRecord(
            "httpx", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    # A handler without the filter renders and caches the exception text.
    logging.Formatter().format(record)
    queued = logging.makeLogRecord(
        {"name": "celery", "msg": "failed", "exc_text": record.exc_text}
    )

    captured.json_handler.handle(record)
    captured.json_handler.handle(queued)

    lines = captured.lines()
    assert [line["exc_info"].splitlines()[-1] for line in lines] == [
        "RuntimeError: call to https://api.telegram.org/bot[redacted]/sendMessage "
        "failed"
    ] * 2
    assert TOKEN not in captured.output()


def test_stack_text_and_extra_fields_are_redacted(captured: Captured) -> None:
    secret = "role_pw_" + secrets.token_urlsafe(16)
    secret_register(secret)

    logging.getLogger("django.db.backends").debug(
        "(%.3f) %s; args=%s",
        0.5,
        f"ALTER ROLE bot PASSWORD '{secret}'",
        (TOKEN,),
        extra={
            "sql": f"ALTER ROLE bot PASSWORD '{secret}'",
            "params": (TOKEN,),
            "duration": 0.5,
            "alias": "default",
        },
        stack_info=True,
    )

    [line] = captured.lines()
    assert line["message"] == (
        "(0.500) ALTER ROLE bot PASSWORD '[redacted]'; args=('[redacted]',)"
    )
    assert (line["sql"], line["params"], line["duration"], line["alias"]) == (
        "ALTER ROLE bot PASSWORD '[redacted]'",
        "('[redacted]',)",
        0.5,
        "default",
    )
    assert line["stack_info"].startswith("Stack (most recent call last):")
    assert secret not in captured.output()
    assert TOKEN not in captured.output()


@pytest.mark.django_db
def test_loading_a_bot_registers_its_token_and_webhook_secret() -> None:
    token = f"7{secrets.randbelow(10**9):09d}:{secrets.token_urlsafe(8)}"
    secret = secrets.token_urlsafe(24)
    bot = BotFactory.create(token=token, webhook_secret=secret)
    # Too short for the token pattern: only the registration can catch it.
    text = f"token {token!r}, secret {secret!r}"
    before = redact(text)

    Bot.objects.get(pk=bot.pk)

    assert before == text
    assert redact(text) == f"token '{REDACTED}', secret '{REDACTED}'"


@pytest.fixture
def debug_cursor() -> Iterator[None]:
    """Log every SQL statement, as with DEBUG on."""
    connection.force_debug_cursor = True
    try:
        yield
    finally:
        connection.force_debug_cursor = False


def test_processing_an_update_logs_no_secret_at_debug(
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    captured: Captured,
    debug_cursor: None,
) -> None:
    response = Client().post(
        f"/telegram/{demo_bot.pk}/webhook",
        data=json.dumps(START),
        content_type="application/json",
        headers={
            "X-Telegram-Bot-Api-Secret-Token": DEMO_SECRET,
            "X-Request-ID": "e2e-trace-1",
        },
    )

    output = captured.output()
    assert response.status_code == 200
    assert len(telegram_api.calls("sendMessage", token=DEMO_TOKEN)) == 1
    # The Bot API URL was logged, so the redactor had something to remove.
    assert f"/bot{REDACTED}/sendMessage" in output
    for secret in (
        DEMO_TOKEN,
        DEMO_TOKEN.partition(":")[2],
        f"bot{DEMO_TOKEN}",
        DEMO_SECRET,
    ):
        assert secret not in output
    assert any(
        (line["trace_id"], line.get("bot_id"), line.get("update_id"))
        == ("e2e-trace-1", demo_bot.pk, 1001)
        for line in captured.lines()
    )
