"""The project's commands in fresh interpreters on the embedded default:
SQLite, local-memory cache, tasks run in-process and the echo LLM provider."""

import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# What a bare machine does not have: any database, Redis or LLM setting.
_CONFIGURED = ("DATABASE_", "REDIS_", "OPENAI_", "LLM_")
_UNSET = ("CACHE_KEY_PREFIX", "LOG_FORMAT")


def embedded_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """Return this process's environment as a bare machine would have it."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_CONFIGURED) and key not in _UNSET
    }
    env.update(DEBUG="1", DATA_DIR=str(data_dir), DOTENV_PATH="/dev/null", **extra)

    return env


def manage(
    env: dict[str, str], *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py *args`` with ``stdin``; return what it did."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
