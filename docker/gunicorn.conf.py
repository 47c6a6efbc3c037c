"""gunicorn settings for production: ``gunicorn -c docker/gunicorn.conf.py``.

Every value comes from the environment. The Prometheus multiprocess
directory is put into the environment here, in the master, because
prometheus_client decides at its first import whether samples go to files
that every worker can read; the application is imported only in the workers
(never ``preload_app``: the database pool must open after the fork).
"""

import multiprocessing
import os
import tempfile
from pathlib import Path
from typing import Any


def _env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer; got {raw!r}.") from None
    if value < minimum:
        raise SystemExit(f"{name} must be at least {minimum}; got {value}.")

    return value


def _multiproc_dir() -> Path:
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    path = Path(given) if given else Path(tempfile.mkdtemp(prefix="botfactory-web-"))
    path.mkdir(parents=True, exist_ok=True)

    return path


def _wipe(path: Path) -> None:
    # Files of an earlier run would add its totals to this one's. Only the
    # files are removed: the directory may be a mounted volume.
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


# Kept across a configuration reload (SIGHUP), which runs this file again.
_METRICS_DIR = _multiproc_dir()
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_METRICS_DIR)

wsgi_app = "botfactory.wsgi:application"
bind = [os.environ.get("GUNICORN_BIND", "").strip() or "0.0.0.0:8000"]
# Each worker holds up to DATABASE_POOL_MAX_SIZE database connections.
workers = _env_int("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1, 1)
threads = _env_int("GUNICORN_THREADS", 1, 1)
worker_class = "gthread" if threads > 1 else "sync"
# Telegram gives a webhook call 60 s; a worker stuck for longer is replaced.
timeout = _env_int("GUNICORN_TIMEOUT", 30, 1)
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 30, 1)
keepalive = _env_int("GUNICORN_KEEPALIVE", 5, 0)
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 0, 0)
max_requests_jitter = _env_int("GUNICORN_MAX_REQUESTS_JITTER", 0, 0)
preload_app = False
# One gunicorn per container; several on one machine would share its path.
control_socket_disable = True
# The application logs JSON lines itself; gunicorn adds only its own errors.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "").strip() or "info"
# A container's /tmp may be on an overlay disk; heartbeats belong in memory.
worker_tmp_dir = "/dev/shm" if Path("/dev/shm").is_dir() else None


def on_starting(server: Any) -> None:
    """Start from empty metrics files, once per master (not on a reload)."""
    _wipe(_METRICS_DIR)


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges; its counters stay in the totals."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, path=str(_METRICS_DIR))
