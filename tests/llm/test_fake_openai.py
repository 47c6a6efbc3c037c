import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.fakes.openai_api import expected_answer
from tests.fakes.openai_control import (
    TEST_API_KEY,
    FakeOpenAI,
    start_fake_openai_subprocess,
    stop_subprocess,
)

MESSAGES = [{"role": "user", "content": "two words"}]


def _ask(
    client: httpx.Client, *, timeout: float = 5.0, key: str | None = TEST_API_KEY
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post(
        "/v1/chat/completions",
        json={"model": "m", "messages": MESSAGES, "max_tokens": 7},
        headers=headers,
        timeout=timeout,
    )


@pytest.fixture
def api(fake_openai: FakeOpenAI) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake_openai.url) as client:
        yield client


def test_answer_is_deterministic_with_usage(
    fake_openai: FakeOpenAI, api: httpx.Client
) -> None:
    first, second = _ask(api), _ask(api)

    assert first.status_code == 200
    assert first.json()["choices"][0]["message"] == {
        "role": "assistant",
        "content": expected_answer(MESSAGES),
    }
    assert first.json()["usage"] == {
        "prompt_tokens": 2,
        "completion_tokens": 2,
        "total_tokens": 4,
    }
    assert first.json() == second.json() | {"created": first.json()["created"]}
    assert [
        (c["model"], c["max_tokens"], c["status"]) for c in fake_openai.calls()
    ] == [
        ("m", 7, 200),
        ("m", 7, 200),
    ]


def test_a_request_without_a_key_is_refused(
    fake_openai: FakeOpenAI, api: httpx.Client
) -> None:
    response = _ask(api, key=None)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert fake_openai.calls() == []


@pytest.mark.parametrize(
    ("kind", "status", "code", "retry_after"),
    [
        ("500", 500, None, None),
        ("429", 429, "rate_limit_exceeded", "2"),
        ("quota", 429, "insufficient_quota", None),
        ("400", 400, None, None),
    ],
)
def test_failures_use_the_error_envelope(
    fake_openai: FakeOpenAI,
    api: httpx.Client,
    kind: str,
    status: int,
    code: str | None,
    retry_after: str | None,
) -> None:
    fake_openai.control(fail_rate=1, fail_kind=kind, retry_after=2)

    response = _ask(api)

    assert response.status_code == status
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert response.json()["error"]["code"] == code
    assert response.headers.get("retry-after") == retry_after


def test_malformed_answers_200_with_a_body_that_is_not_json(
    fake_openai: FakeOpenAI, api: httpx.Client
) -> None:
    fake_openai.control(fail_rate=1, fail_kind="malformed")

    response = _ask(api)

    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_hang_holds_until_the_client_gives_up(
    fake_openai: FakeOpenAI, api: httpx.Client
) -> None:
    fake_openai.control(fail_rate=1, fail_kind="hang")

    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        _ask(api, timeout=0.5)

    assert time.monotonic() - started >= 0.45
    assert [call["status"] for call in fake_openai.calls()] == [0]


def test_fail_next_fails_only_that_many(
    fake_openai: FakeOpenAI, api: httpx.Client
) -> None:
    fake_openai.control(fail_next=2, fail_kind="500")

    statuses = [_ask(api).status_code for _ in range(3)]

    assert statuses == [500, 500, 200]


def test_latency_delays_the_answer(fake_openai: FakeOpenAI, api: httpx.Client) -> None:
    fake_openai.control(latency_ms=[300, 300])

    started = time.monotonic()
    response = _ask(api)

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.29


def test_hold_keeps_requests_until_release(
    fake_openai: FakeOpenAI, api: httpx.Client
) -> None:
    fake_openai.control(hold=True)

    with pytest.raises(httpx.ReadTimeout):
        _ask(api, timeout=0.3)
    with (
        httpx.Client(base_url=fake_openai.url) as other,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        pending = pool.submit(_ask, other)
        _wait_for_held(fake_openai, 2)
        fake_openai.release()
        response = pending.result(timeout=10)
    after = _ask(api, timeout=5)

    assert (response.status_code, after.status_code) == (200, 200)
    assert [call["status"] for call in fake_openai.calls()] == [0, 200, 200]
    assert fake_openai.control()["hold"] is False


def _wait_for_held(fake_openai: FakeOpenAI, count: int) -> None:
    ends = time.monotonic() + 10
    while len(fake_openai.calls()) < count:
        assert time.monotonic() < ends
        time.sleep(0.01)


def test_control_rejects_unknown_or_bad_values(fake_openai: FakeOpenAI) -> None:
    before = fake_openai.control()
    with httpx.Client(base_url=fake_openai.url) as client:
        statuses = [
            client.post("/_control", json=body).status_code
            for body in (
                {"fail_kind": "teapot"},
                {"fail_rate": 2},
                {"latency_ms": [5, 1]},
                {"colour": "red"},
            )
        ]

    assert statuses == [400, 400, 400, 400]
    assert fake_openai.control() == before


def test_delete_calls_forgets_them(fake_openai: FakeOpenAI, api: httpx.Client) -> None:
    _ask(api)

    fake_openai.clear_calls()

    assert fake_openai.calls() == []


def test_command_line_sets_the_initial_behaviour() -> None:
    process, url = start_fake_openai_subprocess(
        "--latency-ms", "100-200", "--fail-rate", "1", "--fail-kind", "quota"
    )
    try:
        with httpx.Client(base_url=url) as client:
            control = client.get("/_control").json()
            response = _ask(client)
    finally:
        stop_subprocess(process)

    assert control["latency_ms"] == [100, 200]
    assert (control["fail_rate"], control["fail_kind"]) == (1.0, "quota")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "insufficient_quota"
