"""Run a fake API (a module of this package) in a subprocess of its own."""

import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from tests.fakes.http_base import LISTENING_PREFIX

PROJECT_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 5.0


def _forward_lines(stream: IO[str], lines: "queue.Queue[str]") -> None:
    for line in stream:
        lines.put(line)
    # An empty string tells the reader the process closed its output.
    lines.put("")


def fake_subprocess_start(
    module: str,
    *args: str,
    what: str,
    error: type[RuntimeError],
    timeout: float = START_TIMEOUT_SECONDS,
) -> tuple["subprocess.Popen[str]", str]:
    """Run ``python -m module --port 0 *args``; return the process and its URL.

    ``what`` names the fake in the message of ``error``, which is raised if
    the process exits or does not say where it listens within ``timeout``.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--port", "0", *args],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=_forward_lines, args=(process.stdout, lines), daemon=True
    ).start()

    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0))
        except queue.Empty:
            fake_subprocess_stop(process)
            raise error(f"{what} did not start within {timeout} seconds.") from None
        if not line:
            process.wait()
            raise error(f"{what} exited with code {process.returncode}.")
        if line.startswith(LISTENING_PREFIX):
            return process, line.removeprefix(LISTENING_PREFIX).strip()


def fake_subprocess_stop(
    process: "subprocess.Popen[str]", *, timeout: float = STOP_TIMEOUT_SECONDS
) -> int:
    """Terminate the fake, killing it if it lingers; return its exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()

    return process.returncode
