"""Bots' own SQL on SQLite (the embedded default): one file per bot.

A read node runs on a connection that opened the file read-only, so SQLite
itself refuses a write. An authorizer lets a node's statement read, write
rows and call functions, nothing else: no ATTACH (another bot's file, the
catalogue), no PRAGMA, no DDL, no transaction control, no
``load_extension``. A progress handler ends a statement at its deadline.
"""

import contextlib
import datetime
import functools
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from django.conf import settings

from bots.models import Bot
from bots.sql.connections import ConnectionCache
from bots.sql.outcome import SqlOutcome, SqlRunError, SqlSchemaError, rows_to_json
from bots.sql.statements import statement_render

APPLIED_TABLE = "bf_applied_update"
_APPLIED_DDL = (
    f"CREATE TABLE IF NOT EXISTS {APPLIED_TABLE} ("
    " update_id INTEGER NOT NULL,"
    " node_id TEXT NOT NULL,"
    " rows TEXT NOT NULL,"
    " truncated INTEGER NOT NULL,"
    " created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,"
    " PRIMARY KEY (update_id, node_id)) STRICT"
)
# Virtual machine steps between two looks at the clock.
_PROGRESS_STEPS = 1000
_ALLOWED_ACTIONS = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_INSERT,
    sqlite3.SQLITE_UPDATE,
    sqlite3.SQLITE_DELETE,
    sqlite3.SQLITE_FUNCTION,
    sqlite3.SQLITE_RECURSIVE,
}
_TABLE_ACTIONS = {
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_INSERT,
    sqlite3.SQLITE_UPDATE,
    sqlite3.SQLITE_DELETE,
}
# readfile/writefile/edit exist only in the sqlite3 shell; denied in case an
# extension ever provides them.
_DENIED_FUNCTIONS = {
    "load_extension",
    "fts3_tokenizer",
    "readfile",
    "writefile",
    "edit",
}
_ERROR_CODES = {
    sqlite3.SQLITE_AUTH: "permission_denied",
    sqlite3.SQLITE_READONLY: "read_only",
    sqlite3.SQLITE_INTERRUPT: "timeout",
    sqlite3.SQLITE_BUSY: "timeout",
    sqlite3.SQLITE_LOCKED: "timeout",
    sqlite3.SQLITE_CONSTRAINT: "constraint_violation",
    sqlite3.SQLITE_MISMATCH: "invalid_data",
    sqlite3.SQLITE_TOOBIG: "invalid_data",
    sqlite3.SQLITE_RANGE: "invalid_data",
    sqlite3.SQLITE_ERROR: "invalid_statement",
    sqlite3.SQLITE_CANTOPEN: "unavailable",
    sqlite3.SQLITE_IOERR: "unavailable",
    sqlite3.SQLITE_CORRUPT: "unavailable",
    sqlite3.SQLITE_NOTADB: "unavailable",
    sqlite3.SQLITE_FULL: "unavailable",
}

_cache: ConnectionCache[sqlite3.Connection] = ConnectionCache()


def database_path(bot_id: int) -> Path:
    return Path(settings.DATA_DIR) / "bots" / f"{bot_id}.sqlite3"


def _connect(path: Path, mode: str) -> sqlite3.Connection:
    conn = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode={mode}",
        uri=True,
        isolation_level=None,
        # A cached connection serves one thread at a time, not always the same.
        check_same_thread=False,
    )
    # Functions called from the schema (views, triggers) run only if harmless.
    conn.execute("PRAGMA trusted_schema = OFF")
    conn.execute("PRAGMA foreign_keys = ON")

    return conn


def provision(*, bot: Bot) -> None:
    path = database_path(bot.pk)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)

    # Records older than the dedup records are pruned (applied_prune).
    with contextlib.closing(_connect(path, "rwc")) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(_APPLIED_DDL)
    path.chmod(0o600)


def _schema_error(detail: str, error_class: str) -> SqlSchemaError:
    return SqlSchemaError(
        f"The bot's SQL schema could not be applied: {detail}",
        code="sql_schema_invalid",
        extra={"error_class": error_class, "sql_error": detail},
    )


def schema_apply(*, bot: Bot, statements: str, check: bool = False) -> None:
    path = database_path(bot.pk)
    if check and not path.exists():
        opened = sqlite3.connect(":memory:", isolation_level=None)
    elif path.exists():
        opened = _connect(path, "rw")
    else:
        raise SqlSchemaError(
            "The bot's database is not set up.", code="sql_not_provisioned"
        )

    end = "ROLLBACK" if check else "COMMIT"
    with contextlib.closing(opened) as conn:
        try:
            conn.executescript(f"BEGIN;\n{statements}\n;{end};")
        except sqlite3.Error as exc:
            raise _schema_error(str(exc), type(exc).__name__) from exc
        # An unterminated comment at the end would swallow the COMMIT.
        if conn.in_transaction:
            conn.rollback()
            raise _schema_error("the statements do not end", "Unterminated")


def deprovision(*, bot: Bot) -> None:
    path = database_path(bot.pk)
    for mode in ("ro", "rw"):
        _cache.close_key((str(path), mode))
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def applied_forget(*, bot: Bot, update_id: int, node_id: str) -> None:
    path = database_path(bot.pk)
    if not path.exists():
        return

    with contextlib.closing(_connect(path, "rw")) as conn:
        conn.execute(
            f"DELETE FROM {APPLIED_TABLE} WHERE update_id = ? AND node_id = ?",
            (update_id, node_id),
        )


def applied_prune(*, bot: Bot, before: datetime.datetime, batch: int) -> int:
    path = database_path(bot.pk)
    if not path.exists():
        return 0

    # CURRENT_TIMESTAMP writes UTC as "YYYY-MM-DD HH:MM:SS".
    cutoff = before.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
    deleted = 0
    with contextlib.closing(_connect(path, "rw")) as conn:
        while True:
            cursor = conn.execute(
                f"DELETE FROM {APPLIED_TABLE} WHERE rowid IN (SELECT rowid FROM"
                f" {APPLIED_TABLE} WHERE created_at < ? LIMIT ?)",
                (cutoff, batch),
            )
            deleted += cursor.rowcount
            if cursor.rowcount < batch:
                return deleted


def connections_close() -> None:
    _cache.close_all()


def _authorize(
    denials: list[int],
    action: int,
    first: str | None,
    second: str | None,
    database: str | None,
    source: str | None,
) -> int:
    allowed = action in _ALLOWED_ACTIONS
    if action == sqlite3.SQLITE_FUNCTION:
        allowed = (second or "").lower() not in _DENIED_FUNCTIONS
    elif action in _TABLE_ACTIONS:
        # sqlite_master itself is asked about too (table-valued functions),
        # and SQLite refuses to change it without the writable_schema PRAGMA.
        allowed = first != APPLIED_TABLE
    if allowed:
        return sqlite3.SQLITE_OK

    denials.append(action)
    return sqlite3.SQLITE_DENY


@contextlib.contextmanager
def _guarded(conn: sqlite3.Connection, *, timeout_ms: int, denials: list[int]) -> Any:
    """Run the node's own statement under the authorizer and a deadline."""
    deadline = time.monotonic() + timeout_ms / 1000
    conn.set_authorizer(functools.partial(_authorize, denials))
    conn.set_progress_handler(lambda: time.monotonic() > deadline, _PROGRESS_STEPS)
    try:
        yield
    finally:
        conn.set_progress_handler(None, _PROGRESS_STEPS)
        conn.set_authorizer(None)


def _applied_get(
    conn: sqlite3.Connection, *, update_id: int, node_id: str
) -> SqlOutcome | None:
    row = conn.execute(
        f"SELECT rows, truncated FROM {APPLIED_TABLE}"
        " WHERE update_id = ? AND node_id = ?",
        (update_id, node_id),
    ).fetchone()
    if row is None:
        return None

    return SqlOutcome(rows=json.loads(row[0]), truncated=bool(row[1]), replayed=True)


def _read(
    conn: sqlite3.Connection,
    *,
    query: str,
    params: dict[str, Any],
    cap: int,
    timeout_ms: int,
    denials: list[int],
) -> SqlOutcome:
    with _guarded(conn, timeout_ms=timeout_ms, denials=denials):
        cursor = conn.execute(query, params)
        try:
            rows = cursor.fetchmany(cap + 1)
            columns = [column[0] for column in cursor.description or ()]
        finally:
            cursor.close()

    return SqlOutcome(rows=rows_to_json(columns, rows[:cap]), truncated=len(rows) > cap)


def _write(
    conn: sqlite3.Connection,
    *,
    query: str,
    params: dict[str, Any],
    cap: int,
    timeout_ms: int,
    denials: list[int],
    update_id: int,
    node_id: str,
) -> SqlOutcome:
    # IMMEDIATE takes the write lock first: a duplicate of this update in
    # another process waits here, then finds the record.
    conn.execute("BEGIN IMMEDIATE")
    try:
        stored = _applied_get(conn, update_id=update_id, node_id=node_id)
        if stored is not None:
            return stored

        raw_rows: list[Any] = []
        truncated = False
        with _guarded(conn, timeout_ms=timeout_ms, denials=denials):
            cursor = conn.execute(query, params)
            columns = [column[0] for column in cursor.description or ()]
            # Drained, so that every row the statement writes is written.
            for row in cursor:
                if len(raw_rows) < cap:
                    raw_rows.append(row)
                else:
                    truncated = True
        rows = rows_to_json(columns, raw_rows)

        conn.execute(
            f"INSERT INTO {APPLIED_TABLE} (update_id, node_id, rows, truncated)"
            " VALUES (?, ?, ?, ?)",
            (update_id, node_id, json.dumps(rows), int(truncated)),
        )
        conn.execute("COMMIT")
    finally:
        if conn.in_transaction:
            conn.rollback()

    return SqlOutcome(rows=rows, truncated=truncated)


def _run_error(exc: sqlite3.Error, denials: list[int]) -> SqlRunError:
    cause = type(exc).__name__
    if denials:
        # A denied function fails with a plain SQLITE_ERROR, not SQLITE_AUTH.
        return SqlRunError("permission_denied", cause=cause)
    if isinstance(exc, sqlite3.ProgrammingError):
        # Raised before running anything, for several statements in one.
        return SqlRunError("syntax_error", cause=cause)
    primary = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF

    return SqlRunError(_ERROR_CODES.get(primary, "database_error"), cause=cause)


def run(
    *,
    bot: Bot,
    node_id: str,
    statement: str,
    params: dict[str, Any],
    write: bool,
    timeout_ms: int,
    cap: int,
    update_id: int,
) -> SqlOutcome:
    path = database_path(bot.pk)
    if not path.exists():
        raise SqlRunError("not_provisioned", cause="NoFile")
    query = statement_render(statement, "named")
    key = (str(path), "rw" if write else "ro")
    denials: list[int] = []

    conn, generation = _cache.take(key)
    healthy = False
    try:
        if conn is None:
            conn = _connect(path, key[1])
        conn.execute(f"PRAGMA busy_timeout = {int(timeout_ms)}")
        if write:
            outcome = _write(
                conn,
                query=query,
                params=params,
                cap=cap,
                timeout_ms=timeout_ms,
                denials=denials,
                update_id=update_id,
                node_id=node_id,
            )
        else:
            outcome = _read(
                conn,
                query=query,
                params=params,
                cap=cap,
                timeout_ms=timeout_ms,
                denials=denials,
            )
        healthy = True
    except sqlite3.Error as exc:
        raise _run_error(exc, denials) from exc
    finally:
        if conn is not None and healthy and not conn.in_transaction:
            _cache.give(key, conn, generation)
        elif conn is not None:
            conn.close()

    return outcome
