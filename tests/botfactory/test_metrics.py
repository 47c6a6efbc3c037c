"""``GET /metrics`` in one process: access rules, and what the runtime counts.

The processes' side (several gunicorn workers, a Celery worker) is in
``test_metrics_processes.py``. Here the default registry is read before and
after each step, so every assertion is about an exact difference.
"""

import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client import REGISTRY

from bots.models import Bot, OutboundMessage
from bots.services.outbox import outbox_chat_drain
from bots.services.specs import bot_reload, spec_publish
from bots.services.translations import bot_translation_set
from tests.bots.conftest import DEMO_SECRET, Webhook, fixture_update
from tests.fakes.control import FakeTelegramControl

BASE_DIR = Path(__file__).resolve().parents[2]
CREDENTIALS = "scraper:s3cret-Pa55"
CHAT = 5550123


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Deltas:
    """Differences of chosen samples since the object was made."""

    def __init__(self, *samples: tuple[str, dict[str, str]]) -> None:
        self.samples = samples
        self.before = [_value(name, **labels) for name, labels in samples]

    def __call__(self) -> list[float]:
        return [
            _value(name, **labels) - before
            for (name, labels), before in zip(self.samples, self.before, strict=True)
        ]


@pytest.fixture
def webhook(demo_bot: Bot) -> Webhook:
    return Webhook(Client(), demo_bot)


def _basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


# --- the page and its access rules -------------------------------------------


def test_metrics_page_is_open_by_default_and_lists_the_application_metrics() -> None:
    # given no access rule and no database access allowed in this test
    # when a scraper asks by IP address, a host not in ALLOWED_HOSTS
    response = Client().get("/metrics", HTTP_HOST="10.20.30.40:8000")

    # then the page answers, without any query (pytest-django would refuse)
    body = response.content.decode()
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response["Cache-Control"] == "no-store"
    assert 'botfactory_webhook_rejected_total{reason="db_unavailable"}' in body
    assert 'botfactory_cache_requests_total{cache="spec",result="miss"}' in body
    assert "# TYPE botfactory_webhook_duration_seconds histogram" in body
    assert 'botfactory_webhook_duration_seconds_bucket{le="0.2"}' in body
    assert "django_http_requests_before_middlewares_total" in body


def test_metrics_page_has_one_url_and_takes_only_get() -> None:
    client = Client()

    with_slash = client.get("/metrics/", secure=True)
    posted = client.post("/metrics", data=b"", content_type="text/plain")
    head = client.head("/metrics")

    assert with_slash.status_code == 404
    assert (posted.status_code, posted["Allow"]) == (405, "GET, HEAD")
    assert head.status_code == 200


@pytest.fixture
def basic_auth(settings: Any) -> Iterator[None]:
    settings.METRICS_BASIC_AUTH = CREDENTIALS
    yield


def test_basic_auth_refuses_missing_and_wrong_credentials(basic_auth: None) -> None:
    client = Client()

    missing = client.get("/metrics")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION=_basic("scraper:guess"))
    garbled = client.get("/metrics", HTTP_AUTHORIZATION="Basic !!not-base64!!")
    bearer = client.get("/metrics", HTTP_AUTHORIZATION="Bearer " + CREDENTIALS)
    right = client.get("/metrics", HTTP_AUTHORIZATION=_basic(CREDENTIALS))

    for refused in (missing, wrong, garbled, bearer):
        assert refused.status_code == 401
        assert refused["WWW-Authenticate"] == 'Basic realm="metrics", charset="UTF-8"'
        assert b"botfactory_" not in refused.content
    assert right.status_code == 200
    assert b"botfactory_webhook_rejected_total" in right.content


def test_ip_allow_list_admits_listed_addresses_and_blocks(settings: Any) -> None:
    settings.METRICS_ALLOWED_IPS = ["10.1.0.0/16", "192.0.2.7", "2001:db8::/32"]
    client = Client()

    statuses = {
        address: client.get("/metrics", REMOTE_ADDR=address).status_code
        for address in ("10.1.200.3", "192.0.2.7", "2001:db8::1", "10.2.0.1", "::1")
    }
    forwarded = client.get(
        "/metrics", REMOTE_ADDR="10.2.0.1", HTTP_X_FORWARDED_FOR="10.1.0.1"
    )

    assert statuses == {
        "10.1.200.3": 200,
        "192.0.2.7": 200,
        "2001:db8::1": 200,
        "10.2.0.1": 403,
        "::1": 403,
    }
    assert forwarded.status_code == 403
    assert b"botfactory_" not in forwarded.content


def test_with_both_rules_a_scraper_needs_the_address_and_the_credentials(
    settings: Any,
) -> None:
    settings.METRICS_ALLOWED_IPS = ["10.1.0.0/16"]
    settings.METRICS_BASIC_AUTH = CREDENTIALS
    client = Client()
    right = _basic(CREDENTIALS)

    outsider = client.get("/metrics", REMOTE_ADDR="10.9.0.1", HTTP_AUTHORIZATION=right)
    anonymous = client.get("/metrics", REMOTE_ADDR="10.1.0.1")
    admitted = client.get("/metrics", REMOTE_ADDR="10.1.0.1", HTTP_AUTHORIZATION=right)

    assert [outsider.status_code, anonymous.status_code, admitted.status_code] == [
        403,
        401,
        200,
    ]


def _startup_error(**variables: str) -> str:
    env = {
        **os.environ,
        "DOTENV_PATH": os.devnull,
        "DEBUG": "0",
        "SECRET_KEY": "a-secret-key-for-settings-tests",
        **variables,
    }
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE',"
            " 'botfactory.settings'); django.setup()",
        ],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0

    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"METRICS_ALLOWED_IPS": "10.0.0.0/8, not-an-ip"},
            "METRICS_ALLOWED_IPS must list IP addresses or CIDR blocks; "
            "got 'not-an-ip'.",
        ),
        (
            {"METRICS_BASIC_AUTH": "no-colon-here"},
            "METRICS_BASIC_AUTH must be user:password.",
        ),
        (
            {"WORKER_METRICS_PORT": "-1"},
            "WORKER_METRICS_PORT must be at least 0; got -1.",
        ),
        (
            {"METRICS_MONITOR_INTERVAL_SECONDS": "0"},
            "METRICS_MONITOR_INTERVAL_SECONDS must be at least 0.1; got 0.0.",
        ),
    ],
)
def test_malformed_metrics_settings_stop_start_up(
    variables: dict[str, str], message: str
) -> None:
    assert _startup_error(**variables) == (
        f"django.core.exceptions.ImproperlyConfigured: {message}"
    )


# --- what the webhook and the runtime count -----------------------------------


def _update(update_id: int, text: str = "/start") -> dict[str, Any]:
    update = fixture_update("private_start")
    update["update_id"] = update_id
    update["message"]["text"] = text
    update["message"]["chat"]["id"] = CHAT
    update["message"]["from"]["id"] = CHAT

    return update


def test_webhook_counts_each_update_by_type_and_outcome(
    webhook: Webhook, demo_bot: Bot
) -> None:
    bot_id = str(demo_bot.pk)

    def received(update_type: str, outcome: str) -> tuple[str, dict[str, str]]:
        labels = {"bot_id": bot_id, "update_type": update_type, "outcome": outcome}
        return "botfactory_updates_received_total", labels

    deltas = Deltas(
        received("message", "processed"),
        received("message", "duplicate"),
        received("edited_message", "ignored"),
        received("other", "ignored"),
        received("message", "inactive"),
        ("botfactory_duplicate_updates_total", {"bot_id": bot_id}),
        ("botfactory_webhook_duration_seconds_count", {}),
        ("botfactory_executor_step_duration_seconds_count", {"component": "menu.v1"}),
    )
    edited = fixture_update("edited_message")
    edited["update_id"] = 9002

    # when Telegram delivers a new update, the same one twice more, an edit,
    # a type of update the Bot API may add one day, and one after the bot
    # was deactivated
    answers = [
        webhook.post(_update(9001)).status_code,
        webhook.post(_update(9001)).status_code,
        webhook.post(_update(9001)).status_code,
        webhook.post(edited).status_code,
        webhook.post({"update_id": 9003, "future_update": {"x": 1}}).status_code,
    ]
    Bot.objects.filter(pk=demo_bot.pk).update(is_active=False)
    answers.append(webhook.post(_update(9004)).status_code)

    # then each is counted once by its type and outcome (the switched-off
    # bot's update is refused before it is read), and only the new update
    # ran a step of the executor (the start node, a menu)
    assert answers == [200] * 5 + [404]
    assert deltas() == [1, 2, 1, 1, 0, 2, 6, 1]


def test_webhook_counts_refusals_by_reason_and_times_every_call(
    webhook: Webhook, demo_bot: Bot, settings: Any
) -> None:
    reasons = (
        "unknown_bot",
        "forbidden",
        "unsupported_media_type",
        "too_large",
        "malformed",
        "db_unavailable",
    )
    deltas = Deltas(
        *(("botfactory_webhook_rejected_total", {"reason": r}) for r in reasons),
        ("botfactory_webhook_duration_seconds_count", {}),
        (
            "botfactory_updates_received_total",
            {
                "bot_id": str(demo_bot.pk),
                "update_type": "message",
                "outcome": "processed",
            },
        ),
    )
    settings.WEBHOOK_MAX_BODY_BYTES = 2048

    unknown = Webhook(webhook.client, Bot(pk=demo_bot.pk + 1000)).post(_update(1))
    forbidden = webhook.post(_update(2), secret="wrong-" + DEMO_SECRET)
    no_secret = webhook.post(_update(3), secret=None)
    text = webhook.post("update_id=4", content_type="text/plain", raw=True)
    large = webhook.post({"update_id": 5, "pad": "x" * 4096})
    malformed = webhook.post("{not json", raw=True)
    no_id = webhook.post({"message": {}})

    assert [
        r.status_code
        for r in (unknown, forbidden, no_secret, text, large, malformed, no_id)
    ] == [404, 403, 403, 415, 413, 400, 400]
    assert deltas() == [1, 2, 1, 1, 2, 0, 7, 0]


def test_spec_and_translation_caches_count_hits_and_misses(
    webhook: Webhook, demo_bot: Bot
) -> None:
    deltas = Deltas(
        ("botfactory_cache_requests_total", {"cache": "spec", "result": "miss"}),
        ("botfactory_cache_requests_total", {"cache": "spec", "result": "hit"}),
        (
            "botfactory_cache_requests_total",
            {"cache": "translations", "result": "miss"},
        ),
        ("botfactory_cache_requests_total", {"cache": "translations", "result": "hit"}),
    )

    # when one user sends /start twice, the bot is reloaded, and /start again
    webhook.post(_update(9101))
    webhook.post(_update(9102))
    after_two = deltas()
    bot_reload(bot=demo_bot)
    webhook.post(_update(9103))

    # then the spec (immutable per version) is never parsed again, and the
    # translations are read again only after the reload: the publish that
    # set the command lists in Telegram already read both
    assert after_two == [0, 2, 0, 2]
    assert deltas() == [0, 3, 1, 2]


def test_publish_reload_and_translation_edit_each_count_one_reload(
    demo_bot: Bot,
) -> None:
    deltas = Deltas(("botfactory_spec_reloads_total", {}))
    assert demo_bot.live_version is not None

    spec_publish(bot=demo_bot, source=demo_bot.live_version.source)
    bot_reload(bot=demo_bot)
    bot_translation_set(
        bot=demo_bot, locale="en", key="x.metrics", forms={"other": "X"}
    )

    assert deltas() == [3]


# --- Telegram sends by result and error code ----------------------------------


def _queue(bot: Bot, *texts: str) -> None:
    for text in texts:
        OutboundMessage.objects.create(
            bot=bot,
            chat_id=CHAT,
            method="sendMessage",
            payload={"chat_id": CHAT, "text": text},
        )


def _sends(result: str, code: str) -> tuple[str, dict[str, str]]:
    labels = {"method": "sendMessage", "result": result, "error_code": code}
    return "botfactory_telegram_sends_total", labels


def _drain_due(bot: Bot) -> None:
    OutboundMessage.objects.filter(bot=bot).update(next_attempt_at=timezone.now())
    outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT)


def test_sends_are_counted_by_result_and_bot_api_error_code(
    demo_bot: Bot, telegram_api: FakeTelegramControl, settings: Any
) -> None:
    outcomes = (
        ("ok", ""),
        ("retry", "429"),
        ("retry", "500"),
        ("retry", "502"),
        ("retry", "timeout"),
        ("failed", "400"),
        ("failed", "403"),
    )
    deltas = Deltas(*(_sends(result, code) for result, code in outcomes))
    settings.TELEGRAM_TIMEOUT_SECONDS = 0.5

    # given a throttle, two server errors and a slow answer on the way
    telegram_api.add_fault(
        method="sendMessage", status=429, parameters={"retry_after": 1}, times=1
    )
    telegram_api.add_fault(method="sendMessage", status=500, times=1)
    telegram_api.add_fault(method="sendMessage", status=502, times=1)
    telegram_api.add_fault(method="sendMessage", delay_ms=1500, times=1)
    _queue(demo_bot, "one")

    # when the row is retried until it goes out (the 429 holds the whole
    # bot for its second, which no forced retry can shorten)
    deadline = time.monotonic() + 15
    while (
        OutboundMessage.objects.get().status != OutboundMessage.Status.SENT
        and time.monotonic() < deadline
    ):
        _drain_due(demo_bot)
        time.sleep(0.05)
    sent_first = OutboundMessage.objects.get().status

    # and then Telegram refuses a malformed text and a blocked chat
    telegram_api.add_fault(
        method="sendMessage",
        status=400,
        description="Bad Request: can't parse entities",
        times=1,
    )
    telegram_api.add_fault(
        method="sendMessage",
        status=403,
        description="Forbidden: bot was blocked by the user",
        times=1,
    )
    _queue(demo_bot, "two", "three")
    _drain_due(demo_bot)
    _drain_due(demo_bot)

    # then every call is counted once, by what the outbox did next
    assert sent_first == OutboundMessage.Status.SENT
    assert deltas() == [1, 1, 1, 1, 1, 1, 1]


def test_an_unreachable_bot_api_counts_as_a_network_retry(
    demo_bot: Bot, telegram_api: FakeTelegramControl, settings: Any
) -> None:
    deltas = Deltas(_sends("retry", "network"), _sends("ok", ""))
    # Port 9 (discard) on loopback refuses the connection at once.
    settings.TELEGRAM_API_URL = "http://127.0.0.1:9"
    _queue(demo_bot, "one")

    outbox_chat_drain(bot_id=demo_bot.pk, chat_id=CHAT)

    assert deltas() == [1, 0]
    assert OutboundMessage.objects.get().status == OutboundMessage.Status.PENDING


def test_an_update_type_becomes_a_label_only_when_the_bot_api_defines_it(
    webhook: Webhook, demo_bot: Bot
) -> None:
    webhook.post({"update_id": 9201, "x" * 40: {"a": 1}})

    body = Client().get("/metrics").content.decode()

    assert "x" * 40 not in body
    assert f'bot_id="{demo_bot.pk}",outcome="ignored",update_type="other"' in body
