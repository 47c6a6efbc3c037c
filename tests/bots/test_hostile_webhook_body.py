"""The webhook's body as gunicorn hands it over: chunked bodies that are
malformed, and Content-Length values no parser should believe.

Sent by hand over a socket, since no HTTP client writes such requests.
"""

import json
import re
import socket
from collections.abc import Iterator

import pytest
from django.conf import settings

from bots.models import Bot, ProcessedUpdate
from tests.bots.conftest import DEMO_SECRET
from tests.bots.hostile_server import demo_server_env, gunicorn

CHAT = 5550177


@pytest.fixture
def server(demo_bot: Bot, fake_telegram_url: str) -> Iterator[str]:
    env = demo_server_env(
        database=settings.DATABASES["default"], telegram_url=fake_telegram_url
    )
    with gunicorn(workers=1, env=env) as url:
        yield url


def _update(update_id: int) -> bytes:
    message = {
        "message_id": 1,
        "date": 1767261600,
        "chat": {"id": CHAT, "type": "private"},
        "from": {"id": CHAT, "is_bot": False, "first_name": "Ann"},
        "text": "/start",
    }

    return json.dumps({"update_id": update_id, "message": message}).encode()


def _post(server: str, bot: Bot, head: bytes, payload: bytes) -> tuple[int, bytes]:
    """Send a hand-written request; return the status and the body."""
    host, port = server.removeprefix("http://").split(":")
    request = (
        (
            f"POST /telegram/{bot.pk}/webhook HTTP/1.1\r\n"
            f"Host: {host}\r\n"
            f"X-Telegram-Bot-Api-Secret-Token: {DEMO_SECRET}\r\n"
            "Content-Type: application/json\r\n"
            "Connection: close\r\n"
        ).encode()
        + head
        + b"\r\n"
        + payload
    )
    answer = b""
    with socket.create_connection((host, int(port)), timeout=20.0) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            answer += chunk
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    assert match is not None, answer[:200]
    _, _, body = answer.partition(b"\r\n\r\n")

    return int(match.group(1)), body


def _outcomes() -> list[tuple[int, str]]:
    return list(
        ProcessedUpdate.objects.order_by("update_id").values_list(
            "update_id", "outcome"
        )
    )


def test_malformed_chunked_bodies_are_a_400_json_error_and_store_nothing(
    server: str, demo_bot: Bot
) -> None:
    body = _update(71)
    size = f"{len(body):x}".encode()
    bodies = {
        "size_not_hex": b"zz\r\n" + body + b"\r\n0\r\n\r\n",
        "size_too_small": f"{len(body) - 9:x}".encode()
        + b"\r\n"
        + body
        + b"\r\n0\r\n\r\n",
        "bare_cr_in_extension": size + b";x\r\r\n" + body + b"\r\n0\r\n\r\n",
        "negative_size": b"-1\r\n" + body + b"\r\n0\r\n\r\n",
    }

    answers = {
        name: _post(server, demo_bot, b"Transfer-Encoding: chunked\r\n", payload)
        for name, payload in bodies.items()
    }

    codes = {
        name: (status, json.loads(body)["code"])
        for name, (status, body) in answers.items()
    }
    assert codes == dict.fromkeys(bodies, (400, "bad_request"))
    assert _outcomes() == []


def test_a_well_formed_chunked_update_in_several_chunks_is_processed(
    server: str, demo_bot: Bot
) -> None:
    body = _update(72)
    middle = len(body) // 2
    chunks = b"".join(
        f"{len(part):x}\r\n".encode() + part + b"\r\n"
        for part in (body[:middle], body[middle:])
    )

    status, answer = _post(
        server, demo_bot, b"Transfer-Encoding: chunked\r\n", chunks + b"0\r\n\r\n"
    )

    assert (status, json.loads(answer)) == (200, {"ok": True})
    assert _outcomes() == [(72, "processed")]


def test_a_chunked_body_over_the_cap_is_a_413_and_stores_nothing(
    server: str, demo_bot: Bot
) -> None:
    body = json.dumps({"update_id": 73, "message": {"text": "x" * 300_000}}).encode()
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"

    status, answer = _post(server, demo_bot, b"Transfer-Encoding: chunked\r\n", chunked)

    assert (status, json.loads(answer)["code"]) == (413, "payload_too_large")
    assert _outcomes() == []


@pytest.mark.parametrize("length", ["+5", "0x10", "5 5", "1e3"])
def test_a_content_length_that_is_not_a_plain_number_is_refused_by_the_server(
    server: str, demo_bot: Bot, length: str
) -> None:
    body = _update(74)

    status, answer = _post(
        server, demo_bot, f"Content-Length: {length}\r\n".encode(), body
    )

    # gunicorn refuses the request itself, before the application sees it
    assert status == 400
    assert b"<title>Bad Request</title>" in answer
    assert _outcomes() == []


def test_a_content_length_of_twenty_digits_is_a_413_before_any_read(
    server: str, demo_bot: Bot
) -> None:
    body = _update(75)

    status, answer = _post(
        server, demo_bot, b"Content-Length: 99999999999999999999\r\n", body
    )

    assert (status, json.loads(answer)["code"]) == (413, "payload_too_large")
    assert _outcomes() == []
