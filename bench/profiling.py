"""Sample running benchmark processes with py-spy and summarise where time goes.

``profiled(pids, out_dir)`` attaches ``py-spy record`` to each process (and
its children, so gunicorn's workers are included) for as long as the block
runs, writing collapsed stacks (``<name>.txt``: one line per stack, frames
joined by ``;``, then the sample count). ``summary`` reads such a file and
returns the functions holding the most samples, inclusive and on top of the
stack.
"""

import contextlib
import re
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

# Samples a second per process: enough for a 30 s run, light on two cores.
RATE = 97
STOP_SECONDS = 30.0
# Where installed and standard-library modules live, dropped from their paths.
_LIBRARY_PREFIX = re.compile(r"^(.*/)?(site-packages|lib/python3\.\d+)/")


def _py_spy() -> str:
    beside = Path(__file__).parents[1] / ".venv" / "bin" / "py-spy"
    found = shutil.which("py-spy") or str(beside)
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed: run make first")

    return found


@contextlib.contextmanager
def profiled(pids: dict[str, int], out_dir: Path) -> Iterator[dict[str, Path]]:
    """Record every process in ``pids`` until the block ends."""
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = {name: out_dir / f"{name}.txt" for name in pids}
    samplers = [
        subprocess.Popen(
            [
                _py_spy(),
                "record",
                "--pid",
                str(pid),
                "--subprocesses",
                "--rate",
                str(RATE),
                "--format",
                "raw",
                "--output",
                str(outputs[name]),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]
    try:
        yield outputs
    finally:
        for sampler in samplers:
            sampler.send_signal(signal.SIGINT)
        for sampler in samplers:
            try:
                sampler.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                sampler.kill()


def _frame_name(frame: str) -> str:
    # py-spy writes "function (path:line)"; the line number only splits a
    # function's samples.
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    path = _LIBRARY_PREFIX.sub("", path)

    return f"{name} ({path})"


def _heaviest(counts: Counter[str], top: int) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]


def summary(path: Path, *, top: int = 25) -> dict[str, object]:
    """Return the samples and the heaviest functions of one collapsed file.

    py-spy leaves out threads that wait in the kernel, so the samples are
    time spent running (or holding the GIL), not waiting.
    """
    inclusive: Counter[str] = Counter()
    on_top: Counter[str] = Counter()
    busy = 0
    for line in path.read_text(errors="replace").splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        # The first frames name the process (gunicorn's workers are its
        # children), which every sample of the file shares.
        frames = [
            _frame_name(frame)
            for frame in stack_text.split(";")
            if frame and not frame.startswith("process ")
        ]
        if not frames:
            continue
        busy += count
        on_top[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count

    return {
        "samples": busy,
        "inclusive": _heaviest(inclusive, top),
        "self": _heaviest(on_top, top),
    }
