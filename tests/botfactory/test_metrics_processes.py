"""Metrics under several processes: gunicorn with ``docker/gunicorn.conf.py``
and real ``celery worker`` processes, against the test database, Redis and
the fake Telegram Bot API.

Whichever gunicorn worker serves a scrape, ``/metrics`` must show the sum of
all of them, and a worker that dies must not take its counts along.
"""

import json
import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings as django_settings

from bots.models import Bot, LlmRequest, OutboundMessage
from tests.botfactory.metrics_support import (
    Samples,
    alert_metric_names,
    broker_env,
    celery_worker,
    gunicorn_served,
    per_process,
    samples_parse,
    scrape,
    server_env,
    stale_counts_leave,
    total,
    wait_for,
)
from tests.bots.conftest import DEMO_SECRET, DEMO_TOKEN
from tests.bots.hostile_server import free_port
from tests.fakes.control import FakeTelegramControl

pytestmark = pytest.mark.django_db(transaction=True)

# Generous for two cores shared with other test runs.
SCRAPE_BOUND = 2.0
UPDATES_RECEIVED = "botfactory_updates_received_total"


def _message(update_id: int, chat_id: int, text: str) -> dict[str, Any]:
    sender = {"id": chat_id, "is_bot": False, "first_name": "Ann"}
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1767261600,
            "chat": {"id": chat_id, "type": "private"},
            "from": {**sender, "language_code": "en"},
            "text": text,
        },
    }


def _post(
    url: str, bot_id: int, update: dict[str, Any], secret: str = DEMO_SECRET
) -> int:
    response = httpx.post(
        f"{url}/telegram/{bot_id}/webhook",
        content=json.dumps(update).encode(),
        headers={
            "Content-Type": "application/json",
            "X-Telegram-Bot-Api-Secret-Token": secret,
        },
        timeout=30.0,
    )
    return response.status_code


def _post_all(url: str, bot_id: int, updates: list[dict[str, Any]]) -> list[int]:
    """Post updates six at a time, so that every worker takes some."""
    with ThreadPoolExecutor(max_workers=6) as pool:
        return list(pool.map(lambda update: _post(url, bot_id, update), updates))


def _processed(samples: Samples, bot: Bot) -> float:
    return total(samples, UPDATES_RECEIVED, bot_id=str(bot.pk), outcome="processed")


def _stale_counts(path: Path, *, bot_id: int, processed: int) -> None:
    """Leave a file in ``path`` as a process of an earlier run would."""
    program = (
        "from botfactory.metrics import UPDATES_RECEIVED as counter; "
        f"counter.labels('{bot_id}', 'message', 'processed').inc({processed})"
    )
    stale_counts_leave(path, program)
    assert len(list(path.glob("counter_*.db"))) == 1


@pytest.fixture
def web_env(demo_bot: Bot, fake_telegram_url: str) -> dict[str, str]:
    # Without Redis the replies are sent from the web process itself.
    return server_env(
        django_settings.DATABASES["default"],
        REDIS_URL="",
        TELEGRAM_API_URL=fake_telegram_url,
    )


def test_counts_add_up_across_gunicorn_workers_and_survive_a_dead_one(
    demo_bot: Bot, web_env: dict[str, str], tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "web"
    metrics_dir.mkdir()
    # A file left by an earlier run must not add to this one's totals.
    _stale_counts(metrics_dir, bot_id=demo_bot.pk, processed=1000)

    with gunicorn_served(workers=2, env=web_env, metrics_dir=metrics_dir) as web:
        # given two workers; when 30 new updates, 6 re-deliveries and 4
        # calls with a wrong secret arrive, several at a time
        updates = [_message(7000 + n, 880000 + n, "/start") for n in range(30)]
        answers = _post_all(web.url, demo_bot.pk, updates + updates[:6])
        wrong = [
            _post(web.url, demo_bot.pk, update, secret="wrong")
            for update in updates[:4]
        ]
        before_kill = scrape(f"{web.url}/metrics")
        served = {
            pid: _processed(samples, demo_bot)
            for pid, samples in per_process(metrics_dir).items()
        }

        # and one worker that served some of them is killed outright, and
        # gunicorn replaces it before 10 more updates arrive
        victim = max(served, key=lambda pid: served[pid])
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: victim not in web.worker_pids() and len(web.worker_pids()) == 2,
            within=30.0,
            what="a replacement worker",
        )
        later = [_message(7100 + n, 881000 + n, "/start") for n in range(10)]
        later_answers = _post_all(web.url, demo_bot.pk, later)
        started = time.monotonic()
        after_kill = [scrape(f"{web.url}/metrics") for _ in range(6)]
        scrape_seconds = (time.monotonic() - started) / 6

    # then every scrape, whichever worker answered it, shows all the counts
    assert answers == [200] * 36
    assert wrong == [403] * 4
    assert later_answers == [200] * 10
    assert _processed(before_kill, demo_bot) == 30
    assert total(before_kill, UPDATES_RECEIVED, outcome="duplicate") == 6
    assert total(before_kill, "botfactory_duplicate_updates_total") == 6
    assert total(before_kill, "botfactory_webhook_rejected_total") == 4
    assert (
        total(before_kill, "botfactory_webhook_rejected_total", reason="forbidden") == 4
    )
    assert total(before_kill, "botfactory_webhook_duration_seconds_count") == 40
    assert (
        total(before_kill, "django_http_responses_total_by_status_total", status="200")
        == 36
    )
    # the work was really spread: more than one process counted updates
    assert sum(served.values()) == 30
    assert len([pid for pid, count in served.items() if count > 0]) >= 2

    # and the dead worker's counts stayed in the totals
    for samples in after_kill:
        assert _processed(samples, demo_bot) == 40
        assert total(samples, "botfactory_webhook_duration_seconds_count") == 50
        assert (
            total(
                samples,
                "botfactory_executor_step_duration_seconds_count",
                component="menu.v1",
            )
            == 40
        )
    assert (metrics_dir / f"counter_{victim}.db").exists()
    assert scrape_seconds < SCRAPE_BOUND


def test_metrics_answer_while_the_database_is_unreachable(tmp_path: Path) -> None:
    # given web workers whose database refuses every connection
    metrics_dir = tmp_path / "web"
    metrics_dir.mkdir()
    env = {
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/botfactory",
        "DOTENV_PATH": os.devnull,
        "LOG_LEVEL": "error",
        "REDIS_URL": "",
        "METRICS_BASIC_AUTH": "prometheus:scrape-Pa55",
    }
    auth = ("prometheus", "scrape-Pa55")

    with gunicorn_served(workers=2, env=env, metrics_dir=metrics_dir) as web:
        # when Telegram delivers updates and a probe checks the database
        statuses = [_post(web.url, 1, _message(1, 1, "/start")) for _ in range(4)]
        probe = httpx.get(f"{web.url}/health/db", timeout=10.0).status_code
        started = time.monotonic()
        response = httpx.get(f"{web.url}/metrics", auth=auth, timeout=10.0)
        seconds = time.monotonic() - started
        refused = httpx.get(f"{web.url}/metrics", timeout=10.0).status_code

    # then the webhook answers 503, and /metrics answers at once and counts
    # each refusal (the probe is not a request that failed)
    assert statuses == [503] * 4
    assert probe == 503
    assert response.status_code == 200
    assert seconds < SCRAPE_BOUND
    assert refused == 401
    samples = samples_parse(response.text)
    assert total(samples, "botfactory_db_unavailable_total") == 4
    assert (
        total(samples, "botfactory_webhook_rejected_total", reason="db_unavailable")
        == 4
    )
    assert total(samples, "botfactory_webhook_duration_seconds_count") == 4
    assert (
        total(samples, "django_http_responses_total_by_status_total", status="503") == 4
    )


def _all_answered() -> bool:
    """Tell whether the LLM answered and every reply went out."""
    answered = LlmRequest.objects.filter(status=LlmRequest.Status.DONE).count() == 1
    unsent = OutboundMessage.objects.exclude(status=OutboundMessage.Status.SENT)

    return answered and not unsent.exists()


def _sent_ok(telegram_api: FakeTelegramControl) -> int:
    return len(
        [call for call in telegram_api.calls(token=DEMO_TOKEN) if call["status"] == 200]
    )


def test_the_main_flows_on_web_and_worker_processes_export_every_alerted_metric(
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    fake_telegram_url: str,
    broker_prefix: str,
    tmp_path: Path,
) -> None:
    env = broker_env(prefix=broker_prefix, telegram_url=fake_telegram_url)
    web_dir = tmp_path / "web"
    web_dir.mkdir()
    names = alert_metric_names()
    assert len(names) >= 10

    # given two web workers and a Celery worker (two prefork children) that
    # takes the outbox and the LLM queues
    with (
        gunicorn_served(workers=2, env=env, metrics_dir=web_dir) as web,
        celery_worker(
            env=env,
            hostname=f"metrics-flow-{uuid.uuid4().hex[:8]}@localhost",
            queues="celery,llm",
        ) as worker,
    ):
        # when eight users start, two updates come twice, one call has a
        # wrong secret, and one user asks the barista a question
        starts = [_message(7200 + n, 882000 + n, "/start") for n in range(8)]
        answers = _post_all(web.url, demo_bot.pk, starts + starts[:2])
        wrong = _post(web.url, demo_bot.pk, starts[0], secret="wrong")
        asked = [
            _post(web.url, demo_bot.pk, _message(7300, 883000, "/ask")),
            _post(
                web.url, demo_bot.pk, _message(7301, 883000, "What is a flat white?")
            ),
        ]
        wait_for(
            _all_answered,
            within=90.0,
            what="every reply and the answer to be sent",
        )
        web_samples = scrape(f"{web.url}/metrics")
        worker_samples = scrape(worker.url)
        delivered = _sent_ok(telegram_api)

    # then the web processes counted every update once, whichever served it
    assert answers == [200] * 10
    assert (wrong, asked) == (403, [200, 200])
    assert total(web_samples, UPDATES_RECEIVED, outcome="processed") == 10
    assert total(web_samples, UPDATES_RECEIVED, outcome="duplicate") == 2
    assert total(web_samples, "botfactory_webhook_duration_seconds_count") == 13

    # and the worker counted every call Telegram accepted, and the answer
    assert total(worker_samples, "botfactory_telegram_sends_total", result="ok") == (
        delivered
    )
    assert delivered >= 10
    assert total(worker_samples, "botfactory_llm_requests_total") == 1
    assert (
        total(
            worker_samples,
            "botfactory_cache_requests_total",
            cache="llm",
            result="miss",
        )
        == 1
    )

    # and every metric the alert rules use is on one of the two pages
    exported = {name for name, _labels, _value in web_samples + worker_samples}
    assert names - exported == set()
