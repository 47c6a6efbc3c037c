"""Bots' own SQL on PostgreSQL: one schema and one login role per bot.

A bot's statements run on a connection logged in as its own role, never on
the runtime's connection behind ``SET ROLE`` (which that session could
undo). The role is NOSUPERUSER NOINHERIT and a member of no role, so it
cannot change role, run server-side programs or read server files; it may
use its schema, read its tables, and write them only when the bot allows
writes. The runtime's own connection owns the schema and runs the DDL.
"""

import datetime
import functools
import hashlib
import secrets
from collections.abc import Generator
from typing import Any, LiteralString, cast

import psycopg
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.types.json import Json

from bots.models import Bot
from bots.sql.connections import ConnectionCache
from bots.sql.outcome import SqlOutcome, SqlRunError, SqlSchemaError, rows_to_json
from bots.sql.statements import statement_render

APPLIED_TABLE = "bf_applied_update"
ROLE_ATTRIBUTES = (
    "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT"
)
_ERROR_CODES = {
    "57014": "timeout",
    "55P03": "timeout",
    "42501": "permission_denied",
    "42601": "syntax_error",
    "25006": "read_only",
    "40001": "conflict",
    "40P01": "conflict",
    "0A000": "unsupported_statement",
}
_ERROR_CLASSES = {
    "08": "unavailable",
    "53": "unavailable",
    "57": "unavailable",
    "22": "invalid_data",
    "23": "constraint_violation",
    "42": "invalid_statement",
}

Connection = psycopg.Connection[tuple[Any, ...]]
_cache: ConnectionCache[Connection] = ConnectionCache()


def role_name(bot_id: int) -> str:
    """Name the bot's role; roles are cluster-wide, so it carries the database."""
    database = str(settings.DATABASES["default"]["NAME"])
    digest = hashlib.sha256(database.encode()).hexdigest()[:8]

    return f"bf_{digest}_bot_{bot_id}"


def schema_name(bot_id: int) -> str:
    return f"bot_{bot_id}"


def _owner_execute(cursor: Any, *templates: LiteralString, **parts: Any) -> None:
    """Run trusted DDL on the runtime's connection in one round trip."""
    query = sql.SQL("; ".join(templates)).format(**parts)
    cursor.execute(query.as_string(connection.connection))


def _owner_lock(cursor: Any, role: str) -> None:
    # Two processes provisioning one bot would both try CREATE ROLE.
    key = int.from_bytes(hashlib.sha256(role.encode()).digest()[:8], "big", signed=True)
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _role_exists(cursor: Any, role: str) -> bool:
    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])

    return cursor.fetchone() is not None


def _grants_apply(cursor: Any, *, role: str, schema: str, writes: bool) -> None:
    templates: list[LiteralString] = [
        "REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}",
        "REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {role}",
        "REVOKE ALL ON SCHEMA {schema} FROM {role}",
        "GRANT USAGE ON SCHEMA {schema} TO {role}",
        "GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}",
    ]
    if writes:
        templates += [
            "GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
            "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
        ]
    # The applied-update records are the runtime's: the role only adds them.
    # TODO: a write node's own statement can read and add records too (of its
    # own bot only); a schema off the search path would not hide them.
    templates.append("REVOKE ALL ON {applied} FROM {role}")
    if writes:
        templates.append("GRANT SELECT, INSERT ON {applied} TO {role}")
    _owner_execute(
        cursor,
        *templates,
        schema=sql.Identifier(schema),
        role=sql.Identifier(role),
        applied=sql.Identifier(schema, APPLIED_TABLE),
    )


def _memberships_revoke(cursor: Any, role: str) -> None:
    cursor.execute(
        "SELECT granted.rolname FROM pg_auth_members AS m"
        " JOIN pg_roles AS granted ON granted.oid = m.roleid"
        " JOIN pg_roles AS member ON member.oid = m.member"
        " WHERE member.rolname = %s",
        [role],
    )
    for (granted,) in cursor.fetchall():
        _owner_execute(
            cursor,
            "REVOKE {granted} FROM {role}",
            granted=sql.Identifier(granted),
            role=sql.Identifier(role),
        )


def provision(*, bot: Bot) -> None:
    role, schema = role_name(bot.pk), schema_name(bot.pk)
    password = bot.sql_password or secrets.token_urlsafe(32)

    with transaction.atomic(), connection.cursor() as cursor:
        _owner_lock(cursor, role)
        verb = "ALTER" if _role_exists(cursor, role) else "CREATE"
        # Sent as a SCRAM verifier, so the server log never holds the password.
        verifier = connection.connection.pgconn.encrypt_password(
            password.encode(), role.encode(), b"scram-sha-256"
        )
        _owner_execute(
            cursor,
            "{verb} ROLE {role} WITH {attributes} PASSWORD {verifier}",
            verb=sql.SQL(verb),
            role=sql.Identifier(role),
            attributes=sql.SQL(ROLE_ATTRIBUTES),
            verifier=sql.Literal(verifier.decode()),
        )
        _memberships_revoke(cursor, role)
        # Every role may create temporary tables and functions by default; a
        # bot's role needs neither, and they would outlive its node in the
        # cached session.
        _owner_execute(
            cursor,
            "REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC",
            database=sql.Identifier(str(connection.settings_dict["NAME"])),
        )

        # Records older than the dedup records are pruned (applied_prune).
        _owner_execute(
            cursor,
            "CREATE SCHEMA IF NOT EXISTS {schema}",
            "REVOKE ALL ON SCHEMA {schema} FROM PUBLIC",
            "CREATE TABLE IF NOT EXISTS {applied} ("
            " update_id bigint NOT NULL,"
            " node_id text NOT NULL,"
            " rows json NOT NULL,"
            " truncated boolean NOT NULL,"
            " created_at timestamptz NOT NULL DEFAULT now(),"
            " PRIMARY KEY (update_id, node_id))",
            schema=sql.Identifier(schema),
            applied=sql.Identifier(schema, APPLIED_TABLE),
        )
        _grants_apply(cursor, role=role, schema=schema, writes=bot.allows_sql_writes)

        if password != bot.sql_password:
            bot.sql_password = password
            bot.save(update_fields=["sql_password"])


def _schema_error(exc: DatabaseError) -> SqlSchemaError:
    cause = exc.__cause__ or exc
    diag = getattr(cause, "diag", None)
    # The server's own words (never values: DDL holds none from chats).
    detail = (diag.message_primary if diag is not None else None) or str(cause)
    position = diag.statement_position if diag is not None else None
    if position:
        detail = f"{detail} (at character {position})"

    return SqlSchemaError(
        f"The bot's SQL schema could not be applied: {detail}",
        code="sql_schema_invalid",
        extra={"error_class": type(cause).__name__, "sql_error": detail},
    )


def schema_apply(*, bot: Bot, statements: str, check: bool = False) -> None:
    role, schema = role_name(bot.pk), schema_name(bot.pk)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            # Restored below: inside an outer transaction a LOCAL setting
            # would otherwise outlive this block and hide the catalogue.
            cursor.execute("SELECT current_setting('search_path')")
            previous = cursor.fetchone()[0]
            if check:
                _owner_execute(
                    cursor,
                    "CREATE SCHEMA IF NOT EXISTS {schema}",
                    schema=sql.Identifier(schema),
                )
            _owner_execute(
                cursor,
                "SET LOCAL search_path TO {schema}, pg_temp",
                schema=sql.Identifier(schema),
            )
            cursor.execute(statements)
            cursor.execute("SELECT set_config('search_path', %s, true)", [previous])
            if check:
                transaction.set_rollback(True)
            else:
                _grants_apply(
                    cursor, role=role, schema=schema, writes=bot.allows_sql_writes
                )
    except DatabaseError as exc:
        raise _schema_error(exc) from exc


def deprovision(*, bot: Bot) -> None:
    role, schema = role_name(bot.pk), schema_name(bot.pk)
    _cache.close_key(role)

    with transaction.atomic(), connection.cursor() as cursor:
        _owner_lock(cursor, role)
        _owner_execute(
            cursor,
            "DROP SCHEMA IF EXISTS {schema} CASCADE",
            schema=sql.Identifier(schema),
        )
        if _role_exists(cursor, role):
            _owner_execute(
                cursor,
                "REASSIGN OWNED BY {role} TO CURRENT_USER",
                "DROP OWNED BY {role}",
                "DROP ROLE {role}",
                role=sql.Identifier(role),
            )


def _applied_exists(cursor: Any, applied: sql.Identifier) -> bool:
    # A bot that was never provisioned (an imported one) has no table.
    cursor.execute("SELECT to_regclass(%s)", [applied.as_string(connection.connection)])
    row = cursor.fetchone()

    return row is not None and row[0] is not None


def applied_forget(*, bot: Bot, update_id: int, node_id: str) -> None:
    # On the runtime's connection: the bot's role may only add records.
    applied = sql.Identifier(schema_name(bot.pk), APPLIED_TABLE)
    query = sql.SQL(
        "DELETE FROM {applied} WHERE update_id = %s AND node_id = %s"
    ).format(applied=applied)
    with connection.cursor() as cursor:
        if not _applied_exists(cursor, applied):
            return
        cursor.execute(query.as_string(connection.connection), [update_id, node_id])


def applied_prune(*, bot: Bot, before: datetime.datetime, batch: int) -> int:
    applied = sql.Identifier(schema_name(bot.pk), APPLIED_TABLE)
    query = sql.SQL(
        "DELETE FROM {applied} WHERE ctid = ANY(ARRAY("
        "SELECT ctid FROM {applied} WHERE created_at < %s LIMIT %s))"
    ).format(applied=applied)
    deleted = 0
    with connection.cursor() as cursor:
        if not _applied_exists(cursor, applied):
            return 0
        while True:
            with transaction.atomic():
                cursor.execute(query.as_string(connection.connection), [before, batch])
                count = cursor.rowcount
            deleted += count
            if count < batch:
                return deleted


def connections_close() -> None:
    _cache.close_all()


def _connect(bot: Bot) -> Connection:
    database = settings.DATABASES["default"]
    return psycopg.connect(
        dbname=database["NAME"],
        host=database.get("HOST") or None,
        port=database.get("PORT") or None,
        user=role_name(bot.pk),
        password=bot.sql_password,
        connect_timeout=settings.DATABASE_CONNECT_TIMEOUT,
        application_name="botfactory-bot-sql",
        # The timeout bounds the runtime's bookkeeping outside a node's
        # transaction; UTC makes timestamps read the same in every process.
        options=(
            f"-c statement_timeout={settings.DATABASE_STATEMENT_TIMEOUT_MS}"
            " -c TimeZone=UTC"
        ),
        autocommit=True,
        # Server-side prepared statements would outlive DDL and leak per bot.
        prepare_threshold=None,
    )


def _begin(conn: Connection, *, schema: str, write: bool, timeout_ms: int) -> None:
    # One round trip. The settings are local to the transaction, so whatever
    # a statement changes for the session is set again next time; the SELECT
    # takes the transaction's snapshot, after which the statement can no
    # longer switch it to READ WRITE.
    search_path = f"{sql.Identifier(schema).as_string(conn)}, pg_temp"
    conn.execute(
        sql.SQL(
            "BEGIN; SET TRANSACTION {mode};"
            " SELECT set_config('search_path', {search_path}, true),"
            " set_config('statement_timeout', {timeout}, true),"
            " set_config('lock_timeout', {timeout}, true)"
        ).format(
            mode=sql.SQL("READ WRITE" if write else "READ ONLY"),
            search_path=sql.Literal(search_path),
            timeout=sql.Literal(str(timeout_ms)),
        )
    )


def _session_open(bot: Bot, *, write: bool, timeout_ms: int) -> tuple[Connection, int]:
    """Return a connection as the bot's role, inside a configured transaction."""
    role, schema = role_name(bot.pk), schema_name(bot.pk)
    conn, generation = _cache.take(role)
    if conn is not None:
        try:
            _begin(conn, schema=schema, write=write, timeout_ms=timeout_ms)
        except psycopg.Error:
            stale = conn.broken
            conn.close()
            # A cached session the server has since dropped: nothing ran.
            if not stale:
                raise
        else:
            return conn, generation

    conn = _connect(bot)
    try:
        _begin(conn, schema=schema, write=write, timeout_ms=timeout_ms)
    except psycopg.Error:
        conn.close()
        raise

    return conn, generation


def _session_end(bot: Bot, conn: Connection, generation: int, *, healthy: bool) -> None:
    idle = conn.info.transaction_status == TransactionStatus.IDLE
    if healthy and idle and not conn.closed:
        _cache.give(role_name(bot.pk), conn, generation)
    else:
        conn.close()


def _rollback(conn: Connection) -> None:
    open_statuses = (TransactionStatus.INTRANS, TransactionStatus.INERROR)
    if not conn.broken and conn.info.transaction_status in open_statuses:
        conn.rollback()


def _stream(
    conn: Connection, query: str, params: dict[str, Any], *, cap: int, drain: bool
) -> tuple[list[str], list[tuple[Any, ...]], bool]:
    """Run the statement; keep at most ``cap`` rows.

    ``stream()`` always uses the extended query protocol, which takes exactly
    one statement (the simple protocol would run ``a; b``), and receives rows
    in chunks instead of the whole result. Without ``drain`` it stops after
    ``cap + 1`` rows, cancelling the rest (and so the transaction).
    """
    columns: list[str] = []
    rows: list[tuple[Any, ...]] = []
    truncated = stopped = False
    with conn.cursor() as cursor:
        stream = cast(
            Generator[tuple[Any, ...], None, None],
            cursor.stream(query, params, size=cap + 1),
        )
        try:
            for row in stream:
                if not columns:
                    columns = [column.name for column in cursor.description or ()]
                if len(rows) < cap:
                    rows.append(row)
                    continue
                truncated = True
                if not drain:
                    stopped = True
                    break
        except psycopg.ProgrammingError as exc:
            # The parameters were checked beforehand, so an error raised by
            # psycopg itself means the statement ran but gave no result set
            # (an INSERT without RETURNING), or started a COPY.
            if exc.sqlstate is not None:
                raise
        finally:
            stream.close()

    if not stopped and conn.info.transaction_status != TransactionStatus.INTRANS:
        # COMMIT, ROLLBACK or COPY ... TO STDOUT: the session is no longer in
        # the transaction this node owns.
        raise SqlRunError("unsupported_statement", cause="TransactionLeft")

    return columns, rows, truncated


def _applied_get(
    conn: Connection, *, schema: str, update_id: int, node_id: str
) -> SqlOutcome | None:
    query = sql.SQL(
        "SELECT rows, truncated FROM {applied} WHERE update_id = %s AND node_id = %s"
    ).format(applied=sql.Identifier(schema, APPLIED_TABLE))
    row = conn.execute(query, (update_id, node_id)).fetchone()
    if row is None:
        return None

    return SqlOutcome(rows=row[0], truncated=row[1], replayed=True)


def _read(
    conn: Connection, *, query: str, params: dict[str, Any], cap: int
) -> SqlOutcome:
    try:
        columns, rows, truncated = _stream(conn, query, params, cap=cap, drain=False)
    finally:
        _rollback(conn)

    return SqlOutcome(rows=rows_to_json(columns, rows), truncated=truncated)


def _write(
    conn: Connection,
    *,
    schema: str,
    query: str,
    params: dict[str, Any],
    cap: int,
    update_id: int,
    node_id: str,
) -> SqlOutcome:
    stored_get = functools.partial(
        _applied_get, conn, schema=schema, update_id=update_id, node_id=node_id
    )
    try:
        stored = stored_get()
        if stored is not None:
            return stored

        # Drained, so that every row the statement writes is written.
        columns, raw_rows, truncated = _stream(conn, query, params, cap=cap, drain=True)
        rows = rows_to_json(columns, raw_rows)

        insert = sql.SQL(
            "INSERT INTO {applied} (update_id, node_id, rows, truncated)"
            " VALUES (%s, %s, %s, %s)"
        ).format(applied=sql.Identifier(schema, APPLIED_TABLE))
        try:
            conn.execute(insert, (update_id, node_id, Json(rows), truncated))
        except psycopg.errors.UniqueViolation:
            # Another process applied the same update meanwhile and committed
            # first: this write is rolled back and its stored rows returned.
            conn.rollback()
            stored = stored_get()
            if stored is None:
                raise
            return stored

        conn.execute("COMMIT")
    finally:
        _rollback(conn)

    return SqlOutcome(rows=rows, truncated=truncated)


def _run_error(exc: psycopg.Error) -> SqlRunError:
    state = exc.sqlstate or ""
    if state:
        code = _ERROR_CODES.get(state, _ERROR_CLASSES.get(state[:2], "database_error"))
    elif isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        code = "unavailable"
    else:
        code = "database_error"

    return SqlRunError(code, cause=type(exc).__name__)


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
    if not bot.sql_password:
        raise SqlRunError("not_provisioned", cause="NoRole")
    query = statement_render(statement, "pyformat")

    try:
        conn, generation = _session_open(bot, write=write, timeout_ms=timeout_ms)
    except psycopg.Error as exc:
        raise _run_error(exc) from exc

    healthy = False
    try:
        if write:
            outcome = _write(
                conn,
                schema=schema_name(bot.pk),
                query=query,
                params=params,
                cap=cap,
                update_id=update_id,
                node_id=node_id,
            )
        else:
            outcome = _read(conn, query=query, params=params, cap=cap)
        healthy = True
    except psycopg.Error as exc:
        raise _run_error(exc) from exc
    finally:
        # After any failure the connection is replaced: whatever state the
        # failed statement left in the session goes with it.
        _session_end(bot, conn, generation, healthy=healthy)

    return outcome
