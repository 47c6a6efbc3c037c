"""A throwaway PostgreSQL cluster on a free port, for tests that stop, start
or freeze the database server. The shared server is never touched.

The cluster lives in its own temporary directory (data, log and Unix socket)
and is removed, stopped first even when frozen, when ``pg_cluster`` exits.
initdb refuses to run as root, so as root every server command runs as the
``postgres`` user through ``runuser``.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg

SERVER_USER = "postgres"
START_SECONDS = 30
STOP_SECONDS = 30
# A throwaway cluster needs no durability; these make initdb, migrations and
# restarts several times faster on a busy machine.
_FAST_OPTIONS = (
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    " -c max_connections=60 -c shared_buffers=32MB"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _version(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.parent.name))


def server_bindir() -> Path:
    """Return the directory of the newest installed server binaries."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=_version)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL server binaries (initdb) are not installed.")

    return Path(initdb).parent


class PgCluster:
    """One cluster in ``root``, listening on 127.0.0.1:``port``."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.data = root / "data"
        self.log = root / "server.log"
        self.bindir = server_bindir()

    def url(self, dbname: str) -> str:
        return f"postgres://{SERVER_USER}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        result = subprocess.run(
            command,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{args[0]} failed ({result.returncode}): {result.stderr.strip()}\n"
                f"{self.log_tail()}"
            )

    def log_tail(self, lines: int = 20) -> str:
        with suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def init(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            SERVER_USER,
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            + _FAST_OPTIONS
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            str(START_SECONDS),
            "-o",
            options,
            "start",
            timeout=START_SECONDS + 10,
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-m",
            mode,
            "-w",
            "-t",
            str(STOP_SECONDS),
            "stop",
            timeout=STOP_SECONDS + 10,
        )

    def postmaster_pid(self) -> int | None:
        try:
            first_line = (self.data / "postmaster.pid").read_text().split("\n", 1)[0]
        except OSError:
            return None

        return int(first_line) if first_line.strip().isdigit() else None

    def pids(self) -> list[int]:
        """Return the postmaster's pid, then those of its children."""
        postmaster = self.postmaster_pid()
        if postmaster is None:
            return []
        children = subprocess.run(
            ["pgrep", "-P", str(postmaster)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()

        return [postmaster, *(int(pid) for pid in children)]

    def _signal(self, signum: int, pids: list[int]) -> None:
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signum)

    def freeze(self) -> list[int]:
        """SIGSTOP every process of the cluster; return their pids.

        The postmaster stops first so that it forks no child after the list
        of children is read.
        """
        postmaster = self.postmaster_pid()
        if postmaster is None:
            raise RuntimeError("The cluster is not running.")
        self._signal(signal.SIGSTOP, [postmaster])
        pids = self.pids()
        self._signal(signal.SIGSTOP, pids)

        return pids

    def thaw(self) -> None:
        """SIGCONT every process of the cluster (children first)."""
        pids = self.pids()
        self._signal(signal.SIGCONT, pids[1:] + pids[:1])

    def create_database(self, name: str) -> None:
        with psycopg.connect(
            self.url("postgres"), autocommit=True, connect_timeout=10
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def destroy(self) -> None:
        """Stop the server whatever its state, then remove its directory."""
        pids = self.pids()
        self._signal(signal.SIGCONT, pids)
        if pids:
            try:
                self.stop("immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                self._signal(signal.SIGKILL, pids)
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def pg_cluster() -> Iterator[PgCluster]:
    """Run a fresh cluster for the duration of the block."""
    root = Path(tempfile.mkdtemp(prefix="botfactory-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, user=SERVER_USER)
    cluster = PgCluster(root, free_port())
    try:
        cluster.init()
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                cluster.start()
                break
            except RuntimeError:
                # Another process may have taken the port meanwhile.
                if time.monotonic() > deadline:
                    raise
                cluster.port = free_port()
        yield cluster
    finally:
        cluster.destroy()
