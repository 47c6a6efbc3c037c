"""The processes of one benchmark run, as production runs them.

A throwaway PostgreSQL database (dropped at the end, with the bot roles
named after it), a key prefix of its own on the shared Redis, the fake
Telegram Bot API and the fake OpenAI API, gunicorn with
``docker/gunicorn.conf.py``, an outbox ``celery worker`` (on threads unless
told otherwise: with the default prefork pool of one process per core the
"thinking…" message waited about 300 ms for a free process), an ``llm``
queue worker on threads and ``celery beat``. Every process logs to a file of the
run's work directory; ``Stack.stop`` ends them all, whatever state the run
is in.
"""

import hashlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import psycopg
import redis
from cryptography.fernet import Fernet
from psycopg import sql

from tests.fakes.control import (
    start_fake_telegram_subprocess,
    stop_fake_telegram_subprocess,
)
from tests.fakes.openai_control import start_fake_openai_subprocess, stop_subprocess

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GUNICORN_CONFIG = PROJECT_ROOT / "docker" / "gunicorn.conf.py"
# Fresh interpreters importing Django on two shared cores.
START_SECONDS = 90.0
STOP_SECONDS = 20.0
COMMAND_SECONDS = 300.0
# The fake OpenAI only checks that a key is sent.
API_KEY = "sk-bench-only"


def free_port() -> int:
    """Return a loopback port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(check: Callable[[], bool], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {within:.0f} s waiting for {what}")
        time.sleep(0.2)


def _answers(url: str, needle: str = "") -> bool:
    try:
        response = httpx.get(url, timeout=2.0)
    except httpx.TransportError:
        return False

    return response.status_code == 200 and needle in response.text


@dataclass
class StackOptions:
    """What a run is made of; every process count is stated, none guessed."""

    postgres_url: str
    redis_url: str
    llm_threads: int
    llm_pool_size: int
    latency_ms: str = "200-800"
    openai_seed: int = 0
    web_workers: int | None = None
    # Sending waits on the Bot API, as the LLM worker waits on the model.
    outbox_pool: str = "threads"
    outbox_concurrency: int = 8
    keep_logs: bool = False
    # Telegram lets one bot make about 30 calls a second: conversations are
    # spread over this many copies of the demo bot.
    bots: int = 1


@dataclass
class _Process:
    name: str
    popen: "subprocess.Popen[bytes]"
    log: Path


@dataclass
class Stack:
    """Start with ``start()``; ``stop()`` is safe to call at any point."""

    options: StackOptions
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    def __post_init__(self) -> None:
        self.work_dir = Path(tempfile.mkdtemp(prefix="bench-llm-"))
        self.database = f"bench_llm_{self.run_id}"
        self.cache_prefix = f"bench-llm-{self.run_id}"
        self.webhook_secret = secrets.token_urlsafe(24)
        self.bot_ids: list[int] = []
        self.web_url = ""
        self.telegram_url = ""
        self.openai_url = ""
        self.llm_metrics_url = ""
        self.outbox_metrics_url = ""
        self._processes: list[_Process] = []
        self._telegram: subprocess.Popen[str] | None = None
        self._openai: subprocess.Popen[str] | None = None
        self._database_created = False
        self._env: dict[str, str] = {}

    # Start-up.

    def start(self) -> None:
        """Create the database, start every process and wait until each serves."""
        self._database_create()
        self._telegram, self.telegram_url = start_fake_telegram_subprocess()
        self._openai, self.openai_url = start_fake_openai_subprocess(
            "--latency-ms",
            self.options.latency_ms,
            "--seed",
            str(self.options.openai_seed),
        )
        # One secret key and one encryption key for every process: the web
        # process must decrypt the token that load_demo_bot stored.
        self._env = self._env_build()
        self._manage("migrate", "--no-input")
        loaded = self._manage(
            "load_demo_bot",
            "--token",
            f"123456:BENCH{secrets.token_hex(12)}",
            # A secret may start with "-": given glued to its option.
            f"--webhook-secret={self.webhook_secret}",
        )
        # load_demo_bot prints `bot_id=<id> webhook_path=...`.
        self.bot_ids.append(int(loaded.split()[0].removeprefix("bot_id=")))
        if self.options.bots > 1:
            self._more_bots_load(self.options.bots - 1)

        self._web_start()
        self.outbox_metrics_url = self._worker_start(
            "outbox",
            [
                "-Q",
                "celery",
                "-P",
                self.options.outbox_pool,
                "-c",
                str(self.options.outbox_concurrency),
            ],
            {},
        )
        self.llm_metrics_url = self._worker_start(
            "llm",
            ["-Q", "llm", "-P", "threads", "-c", str(self.options.llm_threads)],
            {"DATABASE_POOL_MAX_SIZE": str(self.options.llm_pool_size)},
        )
        self._spawn(
            "beat",
            [
                "-m",
                "celery",
                "-A",
                "botfactory",
                "beat",
                "--loglevel",
                "WARNING",
                "--schedule",
                str(self.work_dir / "celerybeat-schedule"),
            ],
            {},
        )
        self._check_alive()

    def _database_url(self, name: str) -> str:
        return f"{self.options.postgres_url.rstrip('/')}/{name}"

    def _database_create(self) -> None:
        with psycopg.connect(self._database_url("postgres"), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database))
            )
        self._database_created = True

    def _env_build(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PROMETHEUS_MULTIPROC_DIR", "PYTEST_XDIST_WORKER")
        }
        env.update(
            DATABASE_URL=self._database_url(self.database),
            REDIS_URL=self.options.redis_url,
            CACHE_KEY_PREFIX=self.cache_prefix,
            DEBUG="0",
            LOG_FORMAT="json",
            DOTENV_PATH=os.devnull,
            SECRET_KEY=secrets.token_hex(32),
            FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
            ALLOWED_HOSTS="127.0.0.1,localhost",
            # Plain HTTP on loopback, with no TLS proxy in front.
            SECURE_SSL_REDIRECT="0",
            TELEGRAM_API_URL=self.telegram_url,
            OPENAI_BASE_URL=f"{self.openai_url}/v1",
            OPENAI_API_KEY=API_KEY,
            PYTHONPATH=str(PROJECT_ROOT),
        )

        return env

    def _manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=PROJECT_ROOT,
            env=self._env,
            capture_output=True,
            text=True,
            timeout=COMMAND_SECONDS,
            check=False,
        )
        (self.work_dir / f"manage-{args[0]}.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {args[0]} failed: {done.stderr[-2000:]}")

        return done.stdout.strip()

    def _more_bots_load(self, count: int) -> None:
        # The demo loader makes the bot with the slug "demo": the one before
        # steps aside each time, so that the next is a new bot. One Django
        # start-up for all of them.
        tokens = [f"12345{n}:BENCH{secrets.token_hex(12)}" for n in range(count)]
        program = (
            "from bots.models import Bot\n"
            "from bots.services.bots import demo_bot_load\n"
            f"for n, token in enumerate({tokens!r}):\n"
            "    Bot.objects.filter(slug='demo').update(slug=f'bench-{n}')\n"
            "    bot = demo_bot_load(\n"
            f"        token=token, webhook_secret={self.webhook_secret!r}\n"
            "    )\n"
            "    print(bot.pk)\n"
        )
        loaded = self._manage("shell", "-c", program)
        # Django's shell may print a line of its own first.
        ids = [int(line) for line in loaded.splitlines() if line.strip().isdigit()]
        if len(ids) != count:
            raise RuntimeError(f"expected {count} more bots, got {len(ids)}")
        self.bot_ids += ids

    def _spawn(
        self,
        name: str,
        args: list[str],
        extra: dict[str, str],
        *,
        python: str = sys.executable,
    ) -> _Process:
        log = self.work_dir / f"{name}.log"
        handle: IO[bytes] = log.open("wb")
        popen = subprocess.Popen(
            [python, *args],
            cwd=PROJECT_ROOT,
            env={**self._env, **extra},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()
        process = _Process(name, popen, log)
        self._processes.append(process)

        return process

    def _web_start(self) -> None:
        port = free_port()
        metrics_dir = self.work_dir / "web-metrics"
        metrics_dir.mkdir()
        extra = {
            "GUNICORN_BIND": f"127.0.0.1:{port}",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        }
        if self.options.web_workers:
            extra["WEB_CONCURRENCY"] = str(self.options.web_workers)
        process = self._spawn(
            "gunicorn", ["-m", "gunicorn", "-c", str(GUNICORN_CONFIG)], extra
        )
        self.web_url = f"http://127.0.0.1:{port}"
        _wait_for(
            lambda: self._alive(process) and _answers(f"{self.web_url}/health"),
            within=START_SECONDS,
            what="gunicorn",
        )

    def gunicorn_start(
        self,
        *,
        name: str,
        app: str,
        python: str = sys.executable,
        args: tuple[str, ...] = (),
        extra: dict[str, str] | None = None,
    ) -> str:
        """Serve another application with the same gunicorn configuration.

        Started after ``start()``, stopped with the rest; ``args`` go before
        the application (a worker class, say). Return its base URL once its
        ``/health`` answers.
        """
        port = free_port()
        metrics_dir = self.work_dir / f"{name}-metrics"
        metrics_dir.mkdir()
        env = {
            "GUNICORN_BIND": f"127.0.0.1:{port}",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            **(extra or {}),
        }
        if self.options.web_workers:
            env["WEB_CONCURRENCY"] = str(self.options.web_workers)
        command = ["-m", "gunicorn", "-c", str(GUNICORN_CONFIG), *args, app]
        process = self._spawn(name, command, env, python=python)
        url = f"http://127.0.0.1:{port}"
        _wait_for(
            lambda: self._alive(process) and _answers(f"{url}/health"),
            within=START_SECONDS,
            what=name,
        )

        return url

    def database_url(self) -> str:
        """Return the URL of the run's own database."""
        return self._database_url(self.database)

    def _worker_start(
        self, name: str, pool_args: list[str], extra: dict[str, str]
    ) -> str:
        port = free_port()
        metrics_dir = self.work_dir / f"{name}-metrics"
        metrics_dir.mkdir()
        process = self._spawn(
            f"worker-{name}",
            [
                "-m",
                "celery",
                "-A",
                "botfactory",
                "worker",
                *pool_args,
                "-n",
                f"bench-{name}-{self.run_id}@%h",
                "--loglevel",
                "WARNING",
            ],
            {
                **extra,
                "WORKER_METRICS_PORT": str(port),
                "WORKER_METRICS_ADDRESS": "127.0.0.1",
                "WORKER_METRICS_DIR": str(metrics_dir),
                "METRICS_MONITOR_INTERVAL_SECONDS": "5",
            },
        )
        url = f"http://127.0.0.1:{port}/metrics"
        # The monitor's first sample means the worker has booted.
        _wait_for(
            lambda: self._alive(process) and _answers(url, "botfactory_dependency_up{"),
            within=START_SECONDS,
            what=f"the {name} worker",
        )

        return url

    def _alive(self, process: _Process) -> bool:
        if process.popen.poll() is not None:
            tail = process.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{process.name} exited: {tail}")
        return True

    def pids(self) -> dict[str, int]:
        """Return the process id of each started process, by name."""
        return {process.name: process.popen.pid for process in self._processes}

    def _check_alive(self) -> None:
        for process in self._processes:
            self._alive(process)

    def cpu_seconds(self) -> dict[str, float]:
        """Return the CPU time (user and system) each process and its children used."""
        ticks = os.sysconf("SC_CLK_TCK")
        stats: dict[int, tuple[int, float]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # After the command name: ppid is field 2, utime and stime 12, 13.
            stats[int(entry.name)] = (
                int(fields[1]),
                (int(fields[11]) + int(fields[12])) / ticks,
            )
        used = {}
        for process in self._processes:
            pid = process.popen.pid
            own = stats.get(pid, (0, 0.0))[1]
            children = sum(cpu for ppid, cpu in stats.values() if ppid == pid)
            used[process.name] = round(own + children, 2)
        fakes = (("fake-telegram", self._telegram), ("fake-openai", self._openai))
        for name, fake in fakes:
            if fake is not None:
                used[name] = round(stats.get(fake.pid, (0, 0.0))[1], 2)

        return used

    def stage_times_ms(self) -> list[tuple[float, float]]:
        """Return, per finished LLM request, (request to answer written,
        answer written to sent), both in milliseconds, from the database."""
        with psycopg.connect(self._database_url(self.database)) as conn:
            rows = conn.execute(
                """
                SELECT
                    EXTRACT(EPOCH FROM r.finished_at - r.created_at) * 1000,
                    EXTRACT(EPOCH FROM (
                        SELECT max(o.sent_at) FROM bots_outboundmessage o
                        WHERE o.bot_id = r.bot_id AND o.update_id = r.update_id
                        AND o.method IN ('sendMessage', 'editMessageText')
                    ) - r.finished_at) * 1000
                FROM bots_llmrequest r
                WHERE r.finished_at IS NOT NULL
                """
            ).fetchall()

        return [(float(llm), float(sent)) for llm, sent in rows if sent is not None]

    def fake_openai_calls(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.openai_url}/_calls", timeout=30.0)
        response.raise_for_status()

        return list(response.json()["calls"])

    def logged_errors(self) -> dict[str, int]:
        """Count the JSON log lines at error level or worse, per process."""
        counts = {}
        for process in self._processes:
            lines = process.log.read_text(errors="replace").splitlines()
            counts[process.name] = sum(
                1
                for line in lines
                if '"level": "ERROR"' in line or '"level": "CRITICAL"' in line
            )

        return counts

    # Shut-down.

    def stop(self) -> None:
        """End every process, drop the database and roles, forget the keys."""
        for process in self._processes:
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for process in self._processes:
            try:
                process.popen.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                # The whole session: a prefork worker's children too.
                os.killpg(process.popen.pid, signal.SIGKILL)
                process.popen.wait()
        if self._telegram is not None:
            stop_fake_telegram_subprocess(self._telegram)
        if self._openai is not None:
            stop_subprocess(self._openai)
        try:
            self._database_drop()
        finally:
            self._redis_forget()
            if not self.options.keep_logs:
                shutil.rmtree(self.work_dir, ignore_errors=True)

    def _database_drop(self) -> None:
        if not self._database_created:
            return
        # Named as bots.sql.postgresql.role_name names them.
        digest = hashlib.sha256(self.database.encode()).hexdigest()[:8]
        with psycopg.connect(self._database_url("postgres"), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.database)
                )
            )
            roles = conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE %s",
                [f"bf\\_{digest}\\_bot\\_%"],
            ).fetchall()
            for (role,) in roles:
                conn.execute(
                    sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role))
                )
        self._database_created = False

    def _redis_forget(self) -> None:
        client = redis.Redis.from_url(self.options.redis_url)
        try:
            for key in client.scan_iter(match=f"{self.cache_prefix}:*", count=1000):
                client.delete(key)
        finally:
            client.close()
