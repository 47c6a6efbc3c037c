"""Start the project under gunicorn, several worker processes, for hostile tests."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg

PROJECT_ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url(database: dict[str, object]) -> str:
    """Return a postgres:// URL for Django's database settings."""
    user = quote(str(database.get("USER") or ""))
    password = database.get("PASSWORD") or ""
    credentials = f"{user}:{quote(str(password))}@" if password else f"{user}@"
    host = database.get("HOST") or "127.0.0.1"
    port = database.get("PORT") or 5432

    return f"postgres://{credentials}{host}:{port}/{database['NAME']}"


@contextmanager
def locked_elsewhere(lock_sql: str) -> Iterator[None]:
    """Within the block, another session holds what ``lock_sql`` locks, and
    Django's connection gives up on a lock after 100 ms."""
    from django.db import connection

    with (
        psycopg.connect(
            database_url(connection.settings_dict), autocommit=True
        ) as other,
        other.transaction(),
    ):
        other.execute(lock_sql)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '100ms'")
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")


def demo_server_env(
    *, database: dict[str, object], telegram_url: str
) -> dict[str, str]:
    """Return the environment of a server for the test database and fake API."""
    return {
        "DATABASE_URL": database_url(database),
        "TELEGRAM_API_URL": telegram_url,
        "TELEGRAM_TIMEOUT_SECONDS": "3",
        "DOTENV_PATH": "/dev/null",
        "LOG_LEVEL": "warning",
        "REDIS_URL": "",
        # Bursts here test ordering, not Telegram's per-chat limit, which has
        # tests of its own; in-process tasks would hold its excess until the
        # next sweep.
        "OUTBOX_CHAT_BURST": "1000",
    }


@contextmanager
def gunicorn(*, workers: int, env: dict[str, str], timeout: int = 60) -> Iterator[str]:
    """Serve botfactory.wsgi with ``workers`` processes; yield its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "botfactory.wsgi",
            "--workers",
            str(workers),
            "--bind",
            f"127.0.0.1:{port}",
            "--timeout",
            str(timeout),
        ],
        cwd=PROJECT_ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {process.returncode}")
            try:
                httpx.get(f"{url}/health", timeout=1.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("gunicorn did not start in time") from None
                time.sleep(0.2)
        # Every worker must be up before a test fires at "all of them".
        time.sleep(1.0)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
