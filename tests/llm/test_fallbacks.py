"""The embedded default and a Redis outage, each in a fresh interpreter."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.fakes.openai_api import expected_answer
from tests.fakes.openai_control import PROJECT_ROOT, TEST_API_KEY, FakeOpenAI

# Opens the breaker with five failing attempts, checks that it rejects, then
# asks twice the same cached question of a healthy provider.
SCENARIO = """
import json, sys, time
import django
django.setup()
import httpx
from llm.errors import LlmUnavailableError
from llm.services import breaker_get, complete
from llm.types import ChatMessage, CompletionRequest

fake = sys.argv[1]
request = CompletionRequest(messages=(ChatMessage(role="user", content="Hi"),))
cached = CompletionRequest(
    messages=(ChatMessage(role="user", content="Hi"),), cache_ttl_seconds=60
)
out = {}
first = complete(cached, deadline_seconds=5)
second = complete(cached, deadline_seconds=5)
out["answers"] = [[first.text, first.cached], [second.text, second.cached]]
httpx.post(fake + "/_control", json={"fail_rate": 1, "fail_kind": "500"})
codes = []
for _ in range(3):
    try:
        complete(request, deadline_seconds=5)
    except LlmUnavailableError as exc:
        codes.append(exc.code)
out["codes"] = codes
out["state"] = breaker_get().snapshot().state
print(json.dumps(out))
"""

ONE_CALL = """
import json, time
import django
django.setup()
from llm.services import complete
from llm.types import ChatMessage, CompletionRequest

request = CompletionRequest(
    messages=(ChatMessage(role="user", content="Hi"),), cache_ttl_seconds=60
)
started = time.monotonic()
completion = complete(request, deadline_seconds=20)
print(json.dumps({"text": completion.text, "seconds": time.monotonic() - started}))
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(env: dict[str, str], fake_openai: FakeOpenAI) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", SCENARIO, fake_openai.url],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr

    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def _environment(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LLM_", "OPENAI_", "PYTEST_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="botfactory.settings",
        LLM_BACKOFF_INITIAL_SECONDS="0.01",
        LLM_BACKOFF_MAX_SECONDS="0.05",
        **extra,
    )

    return env


def test_embedded_default_breaker_and_cache_run_on_the_local_cache(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    env = _environment(OPENAI_BASE_URL=fake_openai.api_url, OPENAI_API_KEY=TEST_API_KEY)
    for name in ("DATABASE_URL", "REDIS_URL", "CACHE_KEY_PREFIX"):
        env.pop(name, None)
    env.update(DEBUG="1", DATA_DIR=str(tmp_path), DOTENV_PATH="/dev/null")

    out = _run(env, fake_openai)

    answer = expected_answer([{"role": "user", "content": "Hi"}])
    assert out["answers"] == [[answer, False], [answer, True]]
    assert out["codes"] == ["retries_exhausted", "breaker_open", "breaker_open"]
    assert out["state"] == "open"
    assert len(fake_openai.calls()) == 1 + 5


def test_embedded_default_answers_with_the_echo_provider(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    env = _environment()
    for name in ("DATABASE_URL", "REDIS_URL", "CACHE_KEY_PREFIX"):
        env.pop(name, None)
    env.update(DEBUG="1", DATA_DIR=str(tmp_path), DOTENV_PATH="/dev/null")

    out = _run(env, fake_openai)

    assert out["answers"] == [["Echo: Hi", False], ["Echo: Hi", True]]
    assert out["codes"] == []
    assert out["state"] == "closed"
    assert fake_openai.calls() == []


def test_redis_down_neither_fails_nor_stalls_and_the_breaker_still_opens(
    fake_openai: FakeOpenAI,
) -> None:
    env = _environment(
        OPENAI_BASE_URL=fake_openai.api_url,
        OPENAI_API_KEY=TEST_API_KEY,
        REDIS_URL=f"redis://127.0.0.1:{_free_port()}/0",
    )

    out = _run(env, fake_openai)

    # Without Redis the cache is off (two calls) and the breaker lives in
    # the process's own memory.
    answer = expected_answer([{"role": "user", "content": "Hi"}])
    assert out["answers"] == [[answer, False], [answer, False]]
    assert out["codes"] == ["retries_exhausted", "breaker_open", "breaker_open"]
    assert out["state"] == "open"
    assert len(fake_openai.calls()) == 2 + 5


def test_a_redis_that_never_answers_costs_one_socket_timeout(
    fake_openai: FakeOpenAI,
) -> None:
    # A listening socket that never accepts: connections succeed, replies
    # never come, as with a frozen server.
    with socket.socket() as frozen:
        frozen.bind(("127.0.0.1", 0))
        frozen.listen(64)
        env = _environment(
            OPENAI_BASE_URL=fake_openai.api_url,
            OPENAI_API_KEY=TEST_API_KEY,
            REDIS_URL=f"redis://127.0.0.1:{frozen.getsockname()[1]}/0",
        )
        result = subprocess.run(
            [sys.executable, "-c", ONE_CALL],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    # The cache's socket timeout is 1 s; after it, this process leaves Redis
    # alone for a while, so the call pays that wait once and then answers.
    assert out["text"] == expected_answer([{"role": "user", "content": "Hi"}])
    assert 0.9 <= out["seconds"] < 3.5
