import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.test import Client

from bots.models import Bot, OutboundMessage, ProcessedUpdate
from tests.bots.conftest import DEMO_SECRET
from tests.bots.hostile_server import database_url, free_port, gunicorn

PROBE_HOST = "10.20.30.40"


def _health_db() -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    response = Client().get("/health/db")

    return response.status_code, response.json(), time.monotonic() - started


@dataclass
class HangingServer:
    """Accepts connections and never answers; counts what it accepted."""

    url: str
    accepted: list[socket.socket] = field(default_factory=list)


def _accept_forever(listener: socket.socket, server: HangingServer) -> None:
    with suppress(OSError):
        while True:
            server.accepted.append(listener.accept()[0])


@pytest.fixture
def hanging_redis(settings: Any) -> Iterator[HangingServer]:
    """Point REDIS_URL at a server that accepts connections, never answering."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        server = HangingServer(f"redis://127.0.0.1:{listener.getsockname()[1]}/0")
        threading.Thread(
            target=_accept_forever, args=(listener, server), daemon=True
        ).start()
        settings.REDIS_URL = server.url
        yield server
        listener.shutdown(socket.SHUT_RDWR)
    for connection in server.accepted:
        connection.close()


def test_health_db_is_ok_when_postgresql_and_redis_answer(db: None) -> None:
    status, body, _ = _health_db()

    assert (status, body) == (
        200,
        {"status": "ok", "checks": {"database": "ok", "redis": "ok"}},
    )


def test_health_db_is_ok_without_redis_in_the_embedded_default(
    db: None, settings: Any
) -> None:
    settings.REDIS_URL = None

    status, body, _ = _health_db()

    assert (status, body) == (
        200,
        {"status": "ok", "checks": {"database": "ok", "redis": "not_configured"}},
    )


def test_health_db_is_degraded_when_redis_refuses(db: None, settings: Any) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

    status, body, _ = _health_db()

    assert (status, body) == (
        200,
        {"status": "degraded", "checks": {"database": "ok", "redis": "down"}},
    )


def test_health_db_answers_within_two_seconds_when_redis_hangs(
    db: None, hanging_redis: HangingServer
) -> None:
    status, body, seconds = _health_db()

    assert (status, body) == (
        200,
        {"status": "degraded", "checks": {"database": "ok", "redis": "timeout"}},
    )
    assert seconds < 2.0


def test_probes_of_a_hanging_redis_share_one_check(
    db: None, hanging_redis: HangingServer
) -> None:
    # given five probes at once while Redis hangs
    answers: list[tuple[int, dict[str, Any], float]] = []
    probes = [
        threading.Thread(target=lambda: answers.append(_health_db())) for _ in range(5)
    ]

    # when they all wait for it
    for probe in probes:
        probe.start()
    for probe in probes:
        probe.join(timeout=10)

    # then one check, on one connection, served them all in time
    assert len(hanging_redis.accepted) == 1
    assert [(status, body["checks"]["redis"]) for status, body, _ in answers] == [
        (200, "timeout")
    ] * 5
    assert max(seconds for _, _, seconds in answers) < 2.0


def test_health_answers_a_probe_by_an_ip_address_not_in_allowed_hosts(
    db: None,
) -> None:
    assert PROBE_HOST not in settings.ALLOWED_HOSTS
    client = Client(HTTP_HOST=PROBE_HOST)

    alive = client.get("/health")
    ready = client.get("/health/db")
    other = client.get("/admin/login/")

    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()["status"]) == (200, "ok")
    # Every other path still validates the host.
    assert other.status_code == 400


def test_health_db_refuses_other_methods() -> None:
    response = Client().post("/health/db")

    assert response.status_code == 405


def test_redis_down_degrades_health_and_never_fails_the_webhook(
    demo_bot: Bot, fake_telegram_url: str
) -> None:
    # given a server whose Redis (cache and broker) refuses connections
    env = {
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "CACHE_KEY_PREFIX": f"bfhealth-{uuid.uuid4().hex[:8]}",
        "TELEGRAM_API_URL": fake_telegram_url,
        "DOTENV_PATH": os.devnull,
        "LOG_LEVEL": "error",
    }
    update = {
        "update_id": 8801,
        "message": {
            "message_id": 1,
            "date": 1767261600,
            "chat": {"id": 8801, "type": "private"},
            "from": {"id": 8801, "is_bot": False, "first_name": "Ann"},
            "text": "/start",
        },
    }

    # when a probe and Telegram call it
    with gunicorn(workers=1, env=env) as url:
        probe = httpx.get(f"{url}/health/db", timeout=10.0)
        started = time.monotonic()
        webhook = httpx.post(
            f"{url}/telegram/{demo_bot.pk}/webhook",
            content=json.dumps(update),
            headers={
                "Content-Type": "application/json",
                "X-Telegram-Bot-Api-Secret-Token": DEMO_SECRET,
            },
            timeout=10.0,
        )
        elapsed = time.monotonic() - started

    # then the probe says degraded, and the update is processed with a 200;
    # its reply waits in the outbox for the broker to come back
    assert (probe.status_code, probe.json()) == (
        200,
        {"status": "degraded", "checks": {"database": "ok", "redis": "down"}},
    )
    assert (webhook.status_code, webhook.json()) == (200, {"ok": True})
    assert elapsed < 2.0
    assert ProcessedUpdate.objects.get(update_id=8801).outcome == "processed"
    assert list(OutboundMessage.objects.values_list("chat_id", "status")) == [
        (8801, OutboundMessage.Status.PENDING)
    ]
