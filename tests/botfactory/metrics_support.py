"""Real processes for the metrics tests: gunicorn with the production config
and Celery workers with their exporter, and a reader of their pages."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings as django_settings
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.bots.hostile_server import database_url, free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
GUNICORN_CONFIG = PROJECT_ROOT / "docker" / "gunicorn.conf.py"
ALERT_RULES = PROJECT_ROOT / "docker" / "prometheus" / "alerts.yml"
START_SECONDS = 60.0
STOP_SECONDS = 30.0

Samples = list[tuple[str, dict[str, str], float]]


def samples_parse(text: str) -> Samples:
    """Return every sample of an exposition page as (name, labels, value)."""
    return [
        (sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum the samples of ``name`` whose labels include ``labels``."""
    return sum(
        value
        for sample_name, sample_labels, value in samples
        if sample_name == name
        and all(sample_labels.get(key) == wanted for key, wanted in labels.items())
    )


def scrape(url: str, **kwargs: Any) -> Samples:
    response = httpx.get(url, timeout=10.0, **kwargs)
    assert response.status_code == 200, response.text

    return samples_parse(response.text)


def per_process(path: Path, prefix: str = "counter") -> dict[int, Samples]:
    """Read each process's own file of ``path`` apart, keyed by its pid."""
    found: dict[int, Samples] = {}
    for file in sorted(path.glob(f"{prefix}_*.db")):
        pid = int(file.stem.rpartition("_")[2])
        with tempfile.TemporaryDirectory() as alone:
            shutil.copy(file, Path(alone) / file.name)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=alone)
            found[pid] = [
                (sample.name, dict(sample.labels), float(sample.value))
                for family in registry.collect()
                for sample in family.samples
            ]

    return found


def alert_metric_names() -> set[str]:
    """Return the ``botfactory_*`` series that the alert rules refer to."""
    return set(re.findall(r"\bbotfactory_[a-z0-9_]+", ALERT_RULES.read_text()))


def wait_for(check: Callable[[], Any], *, within: float, what: str) -> Any:
    """Call ``check`` until it returns something truthy; fail after ``within``."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def server_env(database: dict[str, Any], **extra: str) -> dict[str, str]:
    """The environment of a server process on the test database."""
    return {
        "DATABASE_URL": database_url(database),
        "DOTENV_PATH": os.devnull,
        "LOG_LEVEL": "warning",
        **extra,
    }


def stale_counts_leave(path: Path, program: str) -> None:
    """Run ``program`` in a fresh interpreter that counts into ``path``, as a
    process of an earlier run would have."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-c", program],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(path)},
        check=True,
        timeout=60,
    )


def broker_env(*, prefix: str, telegram_url: str, **extra: str) -> dict[str, str]:
    """The environment of a web or worker process on this run's broker, whose
    replies go to the fake Telegram API at ``telegram_url``."""
    return server_env(
        django_settings.DATABASES["default"],
        REDIS_URL=str(django_settings.REDIS_URL),
        CACHE_KEY_PREFIX=prefix,
        TELEGRAM_API_URL=telegram_url,
        TELEGRAM_TIMEOUT_SECONDS="5",
        **extra,
    )


def _stop(process: "subprocess.Popen[bytes]") -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Gunicorn:
    url: str
    process: "subprocess.Popen[bytes]"
    metrics_dir: Path

    def worker_pids(self) -> list[int]:
        children = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()

        return sorted(int(pid) for pid in children)


@contextmanager
def gunicorn_served(
    *, workers: int, env: dict[str, str], metrics_dir: Path
) -> Iterator[Gunicorn]:
    """Serve the project with docker/gunicorn.conf.py and ``workers`` workers."""
    port = free_port()
    log = (metrics_dir.parent / f"gunicorn-{port}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONFIG)],
        cwd=PROJECT_ROOT,
        env={
            **os.environ,
            **env,
            "GUNICORN_BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": str(workers),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        },
        stdout=log,
        stderr=log,
    )
    server = Gunicorn(f"http://127.0.0.1:{port}", process, metrics_dir)
    try:

        def ready() -> bool:
            assert process.poll() is None, Path(log.name).read_text()[-3000:]
            try:
                httpx.get(f"{server.url}/health", timeout=1.0)
            except httpx.TransportError:
                return False
            # Every worker has imported the application (and its metrics).
            return len(list(metrics_dir.glob("counter_*.db"))) >= workers

        wait_for(ready, within=START_SECONDS, what="gunicorn")
        yield server
    finally:
        _stop(process)
        log.close()


@dataclass
class CeleryWorker:
    url: str
    process: "subprocess.Popen[bytes]"
    hostname: str


@contextmanager
def celery_worker(
    *,
    env: dict[str, str],
    hostname: str,
    queues: str = "celery",
    exclude: str | None = None,
    pool: str = "prefork",
    concurrency: int = 2,
) -> Iterator[CeleryWorker]:
    """Run ``celery worker`` with its exporter on a free loopback port."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "botfactory",
        "worker",
        "--pool",
        pool,
        "--concurrency",
        str(concurrency),
        "-Q",
        queues,
        "-n",
        hostname,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel",
        "warning",
    ]
    if exclude:
        command += ["-X", exclude]
    process = subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env={
            **os.environ,
            "METRICS_MONITOR_INTERVAL_SECONDS": "0.5",
            **env,
            "WORKER_METRICS_PORT": str(port),
            "WORKER_METRICS_ADDRESS": "127.0.0.1",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = CeleryWorker(f"http://127.0.0.1:{port}/metrics", process, hostname)
    try:

        def ready() -> bool:
            assert process.poll() is None, f"worker exited: {process.returncode}"
            try:
                response = httpx.get(worker.url, timeout=1.0)
            except httpx.TransportError:
                return False
            # The monitor's first sample is in.
            return "botfactory_dependency_up{" in response.text

        wait_for(ready, within=START_SECONDS, what="the Celery worker")
        yield worker
    finally:
        _stop(process)
