"""Give a Celery worker its own Prometheus multiprocess directory.

prometheus_client decides when it is first imported whether samples live in
memory or in files that every process of the worker (the prefork children
too) writes and the worker's exporter merges. So this module imports no
part of it, and ``botfactory.celery`` calls ``worker_metrics_dir_prepare``
before anything else can.
"""

import os
import tempfile
from pathlib import Path

from botfactory.env import env_int, env_str

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Set in a worker whose directory was created here, so that it is removed
# when the worker stops.
CREATED_ENV = "BOTFACTORY_METRICS_DIR_CREATED"


def is_worker_command(argv: list[str]) -> bool:
    """Tell whether this process is ``celery ... worker`` (not beat, not a shell)."""
    program = Path(argv[0]).name if argv else ""
    running_celery = program == "celery" or (
        program == "__main__.py" and Path(argv[0]).parent.name == "celery"
    )

    return running_celery and "worker" in argv[1:]


def metrics_dir_wipe(path: Path) -> None:
    """Remove the samples files in ``path``, leaving the directory itself.

    Files of an earlier run would add its totals to this one's; the
    directory may be a mounted volume, so it stays.
    """
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


def worker_metrics_dir_prepare(argv: list[str]) -> Path | None:
    """Point this worker's prometheus_client at its own, empty directory.

    ``WORKER_METRICS_DIR`` when set (emptied), else a new temporary one; a
    ``PROMETHEUS_MULTIPROC_DIR`` inherited from the environment is replaced,
    since it may be the web processes' own. Does nothing (returns None) in
    any other process, or when ``WORKER_METRICS_PORT`` is 0. Raises
    ImproperlyConfigured for a malformed port.
    """
    if not is_worker_command(argv) or env_int("WORKER_METRICS_PORT", 9808) == 0:
        return None

    given = env_str("WORKER_METRICS_DIR")
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        metrics_dir_wipe(path)
        os.environ.pop(CREATED_ENV, None)
    else:
        path = Path(tempfile.mkdtemp(prefix="botfactory-worker-"))
        os.environ[CREATED_ENV] = str(path)
    os.environ[MULTIPROC_ENV] = str(path)

    return path
