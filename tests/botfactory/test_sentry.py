"""Optional error reporting: off without a DSN, redacted when on."""

import gzip
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
from sentry_sdk.types import Event

from botfactory.sentry import sentry_before_send
from tests.botfactory.test_settings import _refused, _startup_error
from tests.docker.conftest import production_env
from tests.tokens import fake_bot_token

TOKEN = fake_bot_token(7000000001, "demo")
PASSWORD = "hunter2-Pa55word"
REPORTING_PROGRAM = f"""
import logging, os
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "botfactory.settings")
django.setup()
import sentry_sdk
try:
    raise RuntimeError("connect to postgres://bf:{PASSWORD}@db:5432/bf failed")
except RuntimeError:
    logging.getLogger("bots.outbox").exception("send failed with %s", "{TOKEN}")
sentry_sdk.flush(timeout=10)
print(sentry_sdk.get_client().is_active())
"""


class _FakeSentry(ThreadingHTTPServer):
    envelopes: list[list[dict[str, Any]]]


class _EnvelopeHandler(BaseHTTPRequestHandler):
    server: _FakeSentry

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        # An envelope is JSON lines: a header, then item headers and items.
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        self.server.envelopes.append(lines)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def fake_sentry() -> Iterator[_FakeSentry]:
    """A Sentry ingestion endpoint on loopback that keeps what it receives."""
    server = _FakeSentry(("127.0.0.1", 0), _EnvelopeHandler)
    server.envelopes = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _report(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", REPORTING_PROGRAM],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_before_send_redacts_texts_and_drops_the_private_request_parts() -> None:
    event: dict[str, Any] = {
        "level": "error",
        "logentry": {
            "message": "send failed for %s",
            "params": [f"https://api.telegram.org/bot{TOKEN}/sendMessage", 3],
            "formatted": f"send failed for https://api.telegram.org/bot{TOKEN}/sendMessage",
        },
        "exception": {
            "values": [
                {
                    "type": "OperationalError",
                    "value": f"connect to postgres://bf:{PASSWORD}@db/bf failed",
                }
            ]
        },
        "breadcrumbs": {
            "values": [
                {
                    "category": "httplib",
                    "data": {"url": f"https://api.telegram.org/bot{TOKEN}/getMe"},
                }
            ]
        },
        "request": {
            "url": "https://bots.example.com/telegram/1/webhook",
            "method": "POST",
            "headers": {"X-Telegram-Bot-Api-Secret-Token": "s3cret-webhook-value"},
            "cookies": {"sessionid": "abc"},
            "data": {"message": {"text": "my card number is 4111"}},
        },
        "extra": {"attempts": 3, "sent": False},
    }

    cleaned = sentry_before_send(cast("Event", event), {})

    assert cleaned == {
        "level": "error",
        "logentry": {
            "message": "send failed for %s",
            "params": ["https://api.telegram.org/bot[redacted]/sendMessage", 3],
            "formatted": "send failed for https://api.telegram.org/bot[redacted]/sendMessage",
        },
        "exception": {
            "values": [
                {
                    "type": "OperationalError",
                    "value": "connect to postgres://bf:[redacted]@db/bf failed",
                }
            ]
        },
        "breadcrumbs": {
            "values": [
                {
                    "category": "httplib",
                    "data": {"url": "https://api.telegram.org/bot[redacted]/getMe"},
                }
            ]
        },
        "request": {
            "url": "https://bots.example.com/telegram/1/webhook",
            "method": "POST",
        },
        "extra": {"attempts": 3, "sent": False},
    }
    # The SDK's own event is left as it was.
    assert event["request"]["headers"] == {
        "X-Telegram-Bot-Api-Secret-Token": "s3cret-webhook-value"
    }


def test_a_logged_error_is_reported_redacted_when_a_dsn_is_set(
    tmp_path: Path, fake_sentry: _FakeSentry
) -> None:
    # Given a production process with a DSN pointing at the fake ingestion
    port = fake_sentry.server_address[1]
    env = production_env(
        tmp_path,
        SENTRY_DSN=f"http://publickey@127.0.0.1:{port}/42",
        SENTRY_ENVIRONMENT="staging",
    )

    # When it logs an exception with secrets in its message and its value
    result = _report(env)

    # Then one event arrives, with neither secret in it
    assert result.returncode == 0, result.stderr
    assert result.stdout == "True\n"
    events = [
        item
        for envelope in fake_sentry.envelopes
        for header, item in zip(envelope[1::2], envelope[2::2], strict=True)
        if header["type"] == "event"
    ]
    assert len(events) == 1
    event = events[0]
    assert event["environment"] == "staging"
    assert event["logentry"]["formatted"] == "send failed with [redacted]"
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    assert exception["value"] == "connect to postgres://bf:[redacted]@db:5432/bf failed"
    assert exception["stacktrace"]["frames"][-1]["function"] == "<module>"
    raw = json.dumps(fake_sentry.envelopes)
    assert TOKEN not in raw
    assert PASSWORD not in raw


def test_nothing_is_reported_without_a_dsn(
    tmp_path: Path, fake_sentry: _FakeSentry
) -> None:
    result = _report(production_env(tmp_path))

    assert result.returncode == 0, result.stderr
    assert result.stdout == "False\n"
    assert fake_sentry.envelopes == []


def test_a_malformed_dsn_stops_start_up(tmp_path: Path) -> None:
    env = production_env(tmp_path, SENTRY_DSN="not a dsn")

    assert _startup_error(env) == _refused("SENTRY_DSN is not a valid Sentry DSN.")
