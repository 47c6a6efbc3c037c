"""Claims about several processes, tested with several OS processes."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from llm.breaker import BreakerSnapshot
from llm.errors import LlmUnavailableError
from llm.services import breaker_get, complete
from llm.types import ChatMessage, CompletionRequest
from tests.fakes.openai_api import expected_answer
from tests.fakes.openai_control import PROJECT_ROOT, FakeOpenAI
from tests.llm.helpers import subprocess_env

# Django set-up in a fresh interpreter takes about a second here; several
# start at once on two shared cores.
READY_TIMEOUT_SECONDS = 60.0
RESULT_TIMEOUT_SECONDS = 60.0


class Workers:
    """Helper processes that each make one ``complete`` call on a signal."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.redis = redis.Redis.from_url(os.environ["REDIS_URL"])
        run = uuid.uuid4().hex
        self.ready_key = f"{settings.CACHES['default']['KEY_PREFIX']}:test:{run}:ready"
        self.go_key = f"{settings.CACHES['default']['KEY_PREFIX']}:test:{run}:go"
        self.processes: list[subprocess.Popen[str]] = []

    def start(
        self, count: int, *, question: str = "Hi", deadline: float = 20, ttl: int = 0
    ) -> list["subprocess.Popen[str]"]:
        started = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.llm.worker",
                    "--question",
                    question,
                    "--deadline",
                    str(deadline),
                    "--ttl",
                    str(ttl),
                    "--ready",
                    self.ready_key,
                    "--go",
                    self.go_key,
                ],
                cwd=PROJECT_ROOT,
                env=subprocess_env(self.settings),
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]
        self.processes.extend(started)

        return started

    def wait_ready(self, count: int) -> None:
        ends = time.monotonic() + READY_TIMEOUT_SECONDS
        while int(self.redis.get(self.ready_key) or 0) < count:
            assert time.monotonic() < ends, "helper processes did not start"
            assert all(p.poll() is None for p in self.processes), "a helper exited"
            time.sleep(0.02)

    def go(self) -> None:
        self.redis.set(self.go_key, "1", ex=120)

    def results(
        self, processes: list["subprocess.Popen[str]"] | None = None
    ) -> list[dict[str, Any]]:
        outputs = []
        for process in processes if processes is not None else self.processes:
            stdout, _ = process.communicate(timeout=RESULT_TIMEOUT_SECONDS)
            assert process.returncode == 0, stdout
            outputs.append(json.loads(stdout.strip().splitlines()[-1]))

        return outputs

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.communicate()
        self.redis.delete(self.ready_key, self.go_key)
        self.redis.close()


@pytest.fixture
def workers(llm_settings: Any) -> Iterator[Workers]:
    helpers = Workers(llm_settings)
    yield helpers
    helpers.stop()


def _wait_for_calls(fake_openai: FakeOpenAI, count: int) -> list[dict[str, Any]]:
    ends = time.monotonic() + READY_TIMEOUT_SECONDS
    while len(calls := fake_openai.calls()) < count:
        assert time.monotonic() < ends, f"only {len(calls)} calls arrived"
        time.sleep(0.02)

    return calls


def _open_breaker(fake_openai: FakeOpenAI) -> None:
    fake_openai.control(fail_rate=1, fail_kind="500")
    request = CompletionRequest(messages=(ChatMessage(role="user", content="x"),))
    codes = []
    for _ in range(2):
        with pytest.raises(LlmUnavailableError) as caught:
            complete(request, deadline_seconds=10)
        codes.append(caught.value.code)
    assert codes == ["retries_exhausted", "breaker_open"]
    assert breaker_get().snapshot().state == "open"
    fake_openai.control(fail_rate=0)
    fake_openai.clear_calls()


def test_failures_at_once_from_ten_processes_open_the_breaker_exactly_once(
    llm_settings: Any, fake_openai: FakeOpenAI, workers: Workers
) -> None:
    # Every first attempt is admitted while the breaker is closed and held
    # at the fake, then all ten fail together. The backoff of two seconds
    # or more lets every failure land before the first retry asks again.
    llm_settings.LLM_BACKOFF_INITIAL_SECONDS = 2.0
    llm_settings.LLM_BACKOFF_MAX_SECONDS = 4.0
    fake_openai.control(hold=True, fail_rate=1, fail_kind="500")
    workers.start(10)
    workers.wait_ready(10)
    workers.go()
    _wait_for_calls(fake_openai, 10)

    fake_openai.control(hold=False)
    results = workers.results()

    assert [result["code"] for result in results] == ["breaker_open"] * 10
    assert len(fake_openai.calls()) == 10
    snapshot = breaker_get().snapshot()
    assert (snapshot.state, snapshot.failures) == ("open", 5)


@pytest.mark.parametrize("count", [4, 5])
def test_concurrent_failures_are_all_counted(
    llm_settings: Any, fake_openai: FakeOpenAI, workers: Workers, count: int
) -> None:
    llm_settings.LLM_MAX_ATTEMPTS = 1
    fake_openai.control(hold=True, fail_rate=1, fail_kind="500")
    workers.start(count)
    workers.wait_ready(count)
    workers.go()
    _wait_for_calls(fake_openai, count)

    fake_openai.control(hold=False)
    results = workers.results()

    assert [result["code"] for result in results] == ["retries_exhausted"] * count
    snapshot = breaker_get().snapshot()
    assert (snapshot.state, snapshot.failures) == (
        "open" if count == 5 else "closed",
        count,
    )


def test_half_open_admits_exactly_one_probe_across_processes(
    llm_settings: Any, fake_openai: FakeOpenAI, workers: Workers
) -> None:
    llm_settings.LLM_BREAKER_COOLDOWN_SECONDS = 1.0
    # The probe stays held until the three others have exited.
    llm_settings.LLM_TIMEOUT_SECONDS = 50.0
    _open_breaker(fake_openai)
    fake_openai.control(hold=True)
    workers.start(4, deadline=55)
    workers.wait_ready(4)
    time.sleep(1.1)

    workers.go()
    [probe] = _wait_for_calls(fake_openai, 1)
    rejected = _wait_for_exits(workers.processes, 3)
    held = [p for p in workers.processes if p not in rejected]
    fake_openai.release()

    assert probe["status"] == 0
    assert [result["code"] for result in workers.results(rejected)] == [
        "breaker_open"
    ] * 3
    assert workers.results(held) == [
        {
            "ok": True,
            "text": expected_answer([{"role": "user", "content": "Hi"}]),
            "cached": False,
        }
    ]
    assert len(fake_openai.calls()) == 1
    assert breaker_get().snapshot() == BreakerSnapshot(
        state="closed", failures=0, opened_at_ms=0, probe_held=False
    )


def _wait_for_exits(
    processes: list["subprocess.Popen[str]"], count: int
) -> list["subprocess.Popen[str]"]:
    ends = time.monotonic() + RESULT_TIMEOUT_SECONDS
    while len(exited := [p for p in processes if p.poll() is not None]) < count:
        assert time.monotonic() < ends, f"only {len(exited)} helpers exited"
        time.sleep(0.02)

    return exited


def test_a_prober_that_dies_frees_the_probe_after_its_lease(
    llm_settings: Any, fake_openai: FakeOpenAI, workers: Workers
) -> None:
    llm_settings.LLM_BREAKER_COOLDOWN_SECONDS = 0.5
    # Long enough to see the lease held after the kill on a busy machine.
    llm_settings.LLM_BREAKER_PROBE_TTL_SECONDS = 6.0
    _open_breaker(fake_openai)
    time.sleep(0.6)
    fake_openai.control(hold=True)
    [prober] = workers.start(1)
    workers.wait_ready(1)
    workers.go()
    _wait_for_calls(fake_openai, 1)

    prober.send_signal(signal.SIGKILL)
    prober.wait(timeout=10)
    fake_openai.control(hold=False)
    fake_openai.clear_calls()
    request = CompletionRequest(messages=(ChatMessage(role="user", content="Hi"),))
    held = breaker_get().snapshot()
    with pytest.raises(LlmUnavailableError) as while_leased:
        complete(request, deadline_seconds=5)
    _wait_for_lease_expiry(timeout=6.0 + 10.0)
    completion = complete(request, deadline_seconds=5)

    assert (held.state, held.probe_held) == ("half_open", True)
    assert while_leased.value.code == "breaker_open"
    assert completion.text == expected_answer([{"role": "user", "content": "Hi"}])
    assert len(fake_openai.calls()) == 1
    assert breaker_get().snapshot().state == "closed"


def _wait_for_lease_expiry(*, timeout: float) -> None:
    ends = time.monotonic() + timeout
    while breaker_get().snapshot().probe_held:
        assert time.monotonic() < ends, "the probe lease never expired"
        time.sleep(0.1)


def test_a_starting_process_keeps_a_shared_open_breaker(
    llm_settings: Any, fake_openai: FakeOpenAI, workers: Workers
) -> None:
    _open_breaker(fake_openai)
    before = breaker_get().snapshot()

    workers.start(1)
    workers.wait_ready(1)
    workers.go()

    assert workers.results() == [{"ok": False, "code": "breaker_open"}]
    assert fake_openai.calls() == []
    assert breaker_get().snapshot() == before


def test_identical_questions_at_once_make_one_call(
    llm_settings: Any, fake_openai: FakeOpenAI, workers: Workers
) -> None:
    fake_openai.control(latency_ms=[500, 500])
    workers.start(4, question="Same question", ttl=60)
    workers.wait_ready(4)

    workers.go()
    results = workers.results()

    text = expected_answer([{"role": "user", "content": "Same question"}])
    assert sorted(result["cached"] for result in results) == [False] + [True] * 3
    assert {result["text"] for result in results} == {text}
    assert len(fake_openai.calls()) == 1
