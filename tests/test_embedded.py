"""The embedded default: SQLite, local-memory cache, tasks run in-process.

Each test runs the project's real commands in fresh interpreters with no
DATABASE_URL or REDIS_URL, as `make run` does on a bare machine.
"""

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.embedded_support import PROJECT_ROOT, embedded_env, manage

_SERVER_START_SECONDS = 30.0

ORDER_IN_ENGLISH = "/start\n#1\n#2\n#3\nmany\n2\nAnn\n#3\n/orders\n"
ORDER_IN_UKRAINIAN = "/start\n#1\n#1\n#2\n5\nОлена\n#1\n"


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = embedded_env(tmp_path_factory.mktemp("embedded"))
    migrate = manage(env, "migrate", "--no-input")
    assert migrate.returncode == 0, migrate.stderr

    return env


def test_load_demo_bot_on_sqlite_prints_only_its_line(embedded: dict[str, str]) -> None:
    first = manage(embedded, "load_demo_bot")
    second = manage(embedded, "load_demo_bot")

    assert first.returncode == second.returncode == 0, first.stderr
    assert (
        first.stdout == second.stdout == "bot_id=1 webhook_path=/telegram/1/webhook\n"
    )


def test_chat_completes_an_order_in_english(embedded: dict[str, str]) -> None:
    manage(embedded, "load_demo_bot")

    result = manage(
        embedded,
        "chat",
        "demo",
        "--locale",
        "en",
        "--user-id",
        "7",
        stdin=ORDER_IN_ENGLISH,
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "bot: Welcome to the Café Bot, Local! What would you like?" in lines
    assert "bot: Please send a whole number from 1 to 10." in lines
    assert "bot: Thank you, Ann! Your order: Cappuccino, Large — 2 cups." in lines
    assert lines[-3:] == [
        "bot: Your last orders:",
        "#1 Cappuccino, Large — 2 cups",
        "chat ended after 9 messages",
    ]


def test_chat_completes_an_order_in_ukrainian(embedded: dict[str, str]) -> None:
    manage(embedded, "load_demo_bot")

    result = manage(
        embedded,
        "chat",
        "demo",
        "--locale",
        "uk",
        "--user-id",
        "8",
        stdin=ORDER_IN_UKRAINIAN,
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:5] == [
        "you: /start",
        "bot: Вітаємо в Café Bot, Local! Що бажаєте?",
        "  [#1] ☕ Замовити напій",
        "  [#2] 🧾 Мої замовлення",
        "  [#3] ❓ Допомога",
    ]
    assert "bot: Дякуємо, Олена! Ваше замовлення: Лате, Середня — 5 чашок." in lines
    assert lines[-1] == "chat ended after 7 messages"


def test_chat_answers_a_question_with_the_local_echo_and_logs_no_task_lines(
    embedded: dict[str, str],
) -> None:
    manage(embedded, "load_demo_bot")

    result = manage(
        embedded,
        "chat",
        "demo",
        "--locale",
        "en",
        "--user-id",
        "9",
        stdin="/ask\nWhat is a flat white?\n",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "you: /ask",
        "bot: What would you like to ask the barista?",
        "  [#1] ✖ Cancel",
        "you: What is a flat white?",
        "bot: Let me think…",
        "bot: (edited) Echo: What is a flat white?",
        "chat ended after 2 messages",
    ]
    # The tasks ran in-process; their per-task lines are not the user's.
    assert result.stderr == ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(embedded: dict[str, str]) -> Iterator[str]:
    manage(embedded, "load_demo_bot", "--webhook-secret", "embedded-secret")
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=PROJECT_ROOT,
        env=embedded,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + _SERVER_START_SECONDS
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/health", timeout=1.0)
            break
        except httpx.TransportError:
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=10)


def test_webhook_answers_after_the_reply_is_delivered_in_process(
    server: str, embedded: dict[str, str]
) -> None:
    update = {
        "update_id": 42,
        "message": {
            "message_id": 1,
            "date": 0,
            "chat": {"id": 31337, "type": "private"},
            "from": {
                "id": 31337,
                "is_bot": False,
                "first_name": "Eve",
                "language_code": "en",
            },
            "text": "/start",
        },
    }

    response = httpx.post(
        f"{server}/telegram/1/webhook",
        content=json.dumps(update),
        headers={
            "Content-Type": "application/json",
            "X-Telegram-Bot-Api-Secret-Token": "embedded-secret",
        },
    )

    assert response.status_code == 200
    assert response.json() == {"ok": True}
    check = manage(
        embedded,
        "shell",
        "-c",
        "from bots.models import OutboundMessage as O; "
        "print(list(O.objects.filter(chat_id=31337).values_list('method', 'status')))",
    )
    assert check.stdout.strip().splitlines()[-1] == "[('sendMessage', 'sent')]"


def test_webhook_answers_503_within_two_seconds_when_the_database_is_unreachable(
    tmp_path: Path,
) -> None:
    env = embedded_env(
        tmp_path, DATABASE_URL="postgres://postgres@127.0.0.1:9/botfactory"
    )
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "botfactory.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + _SERVER_START_SECONDS
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{url}/health", timeout=1.0)
                break
            except httpx.TransportError:
                time.sleep(0.2)

        started = time.monotonic()
        response = httpx.post(
            f"{url}/telegram/1/webhook",
            content=b'{"update_id": 1}',
            headers={
                "Content-Type": "application/json",
                "X-Telegram-Bot-Api-Secret-Token": "x",
            },
            timeout=10.0,
        )
        elapsed = time.monotonic() - started
    finally:
        process.terminate()
        process.wait(timeout=10)

    assert response.status_code == 503
    assert response.json()["code"] == "db_unavailable"
    assert elapsed < 2.0
