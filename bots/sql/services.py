"""Provision bots' own databases and run SQL nodes against them.

The backend follows the catalogue's: PostgreSQL when ``IS_POSTGRESQL``
(a schema and a login role per bot), otherwise SQLite (a file per bot under
``DATA_DIR / "bots"``).
"""

import datetime
import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from bots.models import Bot
from bots.sql import postgresql, sqlite
from bots.sql.outcome import SqlOutcome, SqlRunError
from bots.sql.statements import statement_params

logger = logging.getLogger(__name__)

MODE_READ = "read"
MODE_WRITE = "write"
# Half of Telegram's 60 s webhook limit: the update still gets its answer.
TIMEOUT_MAX_MS = 30_000


def sql_provision(*, bot: Bot) -> None:
    """Create or update the bot's database, applied-update table and grants.

    Safe to re-run; after a change of ``bot.allows_sql_writes`` it grants or
    revokes writes. On PostgreSQL it stores a new role password in
    ``bot.sql_password``. Raises django.db.DatabaseError or OSError.
    """
    if settings.IS_POSTGRESQL:
        postgresql.provision(bot=bot)
    else:
        sqlite.provision(bot=bot)


def sql_schema_apply(*, bot: Bot, statements: str) -> None:
    """Run trusted DDL (one or more statements) in the bot's database.

    It runs as the runtime's own connection, never as the bot's role, and
    then grants the bot's role its rights on new tables. Raises
    SqlSchemaError when a statement fails; nothing of it is applied.
    """
    if settings.IS_POSTGRESQL:
        postgresql.schema_apply(bot=bot, statements=statements)
    else:
        sqlite.schema_apply(bot=bot, statements=statements)


def sql_schema_check(*, bot: Bot, statements: str) -> None:
    """Run DDL as ``sql_schema_apply`` would, then roll it back.

    Against the bot's database when it exists, else an empty one. Raises
    SqlSchemaError with the database's message when a statement fails.
    """
    if settings.IS_POSTGRESQL:
        postgresql.schema_apply(bot=bot, statements=statements, check=True)
    else:
        sqlite.schema_apply(bot=bot, statements=statements, check=True)


def sql_deprovision(*, bot: Bot) -> None:
    """Drop the bot's database (schema and role, or file) and its connections.

    Raises django.db.DatabaseError or OSError.
    """
    if settings.IS_POSTGRESQL:
        postgresql.deprovision(bot=bot)
    else:
        sqlite.deprovision(bot=bot)


def sql_applied_forget(*, bot: Bot, update_id: int, node_id: str) -> None:
    """Drop the record of one applied write, with the rows it returned.

    For writes that must leave no copy of what they returned (a user's data
    deleted on request). Raises django.db.DatabaseError or sqlite3.Error.
    """
    if settings.IS_POSTGRESQL:
        postgresql.applied_forget(bot=bot, update_id=update_id, node_id=node_id)
    else:
        sqlite.applied_forget(bot=bot, update_id=update_id, node_id=node_id)


def sql_applied_prune(*, bot: Bot, before: datetime.datetime, batch: int) -> int:
    """Drop the bot's applied-write records made before ``before``; count them.

    At most ``batch`` rows per statement. A bot without a database has
    none. Raises django.db.DatabaseError or sqlite3.Error.
    """
    backend = postgresql if settings.IS_POSTGRESQL else sqlite

    return backend.applied_prune(bot=bot, before=before, batch=batch)


def sql_connections_close() -> None:
    """Close this process's idle connections to bots' databases."""
    postgresql.connections_close()
    sqlite.connections_close()


def sql_run(
    *,
    bot: Bot,
    node_id: str,
    statement: str,
    params: Mapping[str, Any],
    mode: str,
    timeout_ms: int,
    max_rows: int,
    update_id: int,
) -> SqlOutcome:
    """Run one SQL node's statement as the bot and return its rows.

    Read-only unless ``mode`` is ``write`` and the bot allows writes. A write
    is recorded with ``(update_id, node_id)`` in the same transaction, so a
    re-delivered update gets the stored rows back (``replayed``) instead of
    writing again. At most ``min(max_rows, SQL_ROW_CAP)`` rows come back.
    Never raises for a failed statement: the outcome carries an error code.
    """
    try:
        if mode not in (MODE_READ, MODE_WRITE):
            raise SqlRunError("invalid_node", cause="UnknownMode")
        write = mode == MODE_WRITE
        if write and not bot.allows_sql_writes:
            raise SqlRunError("writes_not_allowed", cause="WritesNotAllowed")
        values = statement_params(statement, params)

        run = postgresql.run if settings.IS_POSTGRESQL else sqlite.run
        return run(
            bot=bot,
            node_id=node_id,
            statement=statement,
            params=values,
            write=write,
            timeout_ms=min(max(timeout_ms, 1), TIMEOUT_MAX_MS),
            cap=min(max(max_rows, 0), settings.SQL_ROW_CAP),
            update_id=update_id,
        )
    except SqlRunError as exc:
        # Never the parameter values: they come from the chat.
        logger.warning(
            "SQL node %s of bot %s failed: %s (%s)",
            node_id,
            bot.pk,
            exc.code,
            exc.cause,
            extra={"node_id": node_id, "error_class": exc.cause},
        )
        return SqlOutcome.failure(exc.code)
