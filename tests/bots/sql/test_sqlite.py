import contextlib
import logging
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from bots.models import Bot
from bots.sql import (
    SqlOutcome,
    SqlSchemaError,
    sql_deprovision,
    sql_provision,
    sql_schema_apply,
)
from bots.sql.sqlite import database_path
from tests.bots.sql.helpers import BotMake, bot_create, order_insert, racers_run, run


def _owner_fetch(bot: Bot, query: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(database_path(bot.pk))) as conn:
        return conn.execute(query).fetchall()


def _orders_count(bot: Bot) -> int:
    return int(_owner_fetch(bot, "SELECT count(*) FROM orders")[0][0])


def _applied_count(bot: Bot) -> int:
    return int(_owner_fetch(bot, "SELECT count(*) FROM bf_applied_update")[0][0])


def _tables(bot: Bot) -> list[str]:
    rows = _owner_fetch(
        bot, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
    )
    return [name for (name,) in rows]


# --- provisioning --------------------------------------------------------------


def test_provision_creates_a_private_file_with_the_applied_table(
    sqlite_backend: Path, db: None
) -> None:
    bot = bot_create()

    sql_provision(bot=bot)
    sql_provision(bot=bot)

    path = sqlite_backend / "bots" / f"{bot.pk}.sqlite3"
    assert database_path(bot.pk) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _tables(bot) == ["bf_applied_update"]
    assert _owner_fetch(bot, "PRAGMA journal_mode") == [("wal",)]
    assert Bot.objects.get(pk=bot.pk).sql_password == ""


def test_schema_apply_is_idempotent(sqlite_bot_make: BotMake) -> None:
    bot = sqlite_bot_make()
    order_schema = (
        Path(__file__).resolve().parents[3] / "bots/demo/schema_sqlite.sql"
    ).read_text(encoding="utf-8")

    sql_schema_apply(bot=bot, statements=order_schema)

    assert _tables(bot) == ["bf_applied_update", "orders"]


@pytest.mark.parametrize(
    "statements",
    [
        "CREATE TABLE first (a INTEGER); CREATE TABLE broken (",
        "CREATE TABLE first (a INTEGER); /* unterminated",
    ],
)
def test_schema_apply_failure_applies_nothing(
    sqlite_bot_make: BotMake, statements: str
) -> None:
    bot = sqlite_bot_make()

    with pytest.raises(SqlSchemaError) as caught:
        sql_schema_apply(bot=bot, statements=statements)

    assert caught.value.code == "sql_schema_invalid"
    assert _tables(bot) == ["bf_applied_update", "orders"]


def test_deprovision_removes_the_files(sqlite_bot_make: BotMake) -> None:
    bot = sqlite_bot_make(allows_sql_writes=True)
    order_insert(bot)
    folder = database_path(bot.pk).parent

    sql_deprovision(bot=bot)

    assert sorted(path.name for path in folder.iterdir()) == []
    assert run(bot, "SELECT 1 AS one").error_code == "not_provisioned"


# --- read and write modes ----------------------------------------------------------


def test_read_returns_rows_as_dicts(sqlite_bot_make: BotMake) -> None:
    bot = sqlite_bot_make(allows_sql_writes=True)
    order_insert(bot, "flat white")

    outcome = run(
        bot,
        "SELECT id, drink, quantity, 1.5 AS ratio, NULL AS empty, :name AS name"
        " FROM orders WHERE user_id = :user_id",
        {"user_id": 7, "name": "Ann"},
    )

    assert outcome == SqlOutcome(
        rows=[
            {
                "id": 1,
                "drink": "flat white",
                "quantity": 1,
                "ratio": 1.5,
                "empty": None,
                "name": "Ann",
            }
        ]
    )


def test_bytes_are_refused(sqlite_bot_make: BotMake) -> None:
    bot = sqlite_bot_make()

    outcome = run(bot, "SELECT x'00ff' AS raw")

    assert (outcome.rows, outcome.error_code) == ([], "unsupported_value")


def test_write_in_read_mode_is_refused_by_sqlite(sqlite_bot_make: BotMake) -> None:
    bot = sqlite_bot_make(allows_sql_writes=True)

    outcome = run(
        bot,
        "INSERT INTO orders (user_id, chat_id, drink) VALUES (1, 1, 'x')",
        mode="read",
    )

    assert outcome == SqlOutcome(
        error="The statement tried to write in read mode.", error_code="read_only"
    )
    assert _orders_count(bot) == 0


def test_write_node_on_a_bot_without_writes_is_refused_untouched(
    sqlite_bot_make: BotMake,
) -> None:
    bot = sqlite_bot_make(allows_sql_writes=False)
    before = database_path(bot.pk).read_bytes()

    outcome = order_insert(bot)

    assert outcome == SqlOutcome(
        error="This bot does not allow SQL writes.", error_code="writes_not_allowed"
    )
    assert database_path(bot.pk).read_bytes() == before
    assert _orders_count(bot) == 0


def test_write_returns_rows_and_records_the_update(sqlite_bot_make: BotMake) -> None:
    bot = sqlite_bot_make(allows_sql_writes=True)

    outcome = order_insert(bot, update_id=41)

    assert outcome == SqlOutcome(rows=[{"id": 1, "drink": "latte"}])
    assert _owner_fetch(
        bot, "SELECT update_id, node_id, rows, truncated FROM bf_applied_update"
    ) == [(41, "node", '[{"id": 1, "drink": "latte"}]', 0)]


# --- what a statement can reach --------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "PRAGMA query_only = OFF",
        "PRAGMA writable_schema = ON",
        "SELECT load_extension('evil')",
        "CREATE TABLE stolen (a INTEGER)",
        "DROP TABLE orders",
        "ALTER TABLE orders ADD COLUMN extra TEXT",
        "CREATE TEMP TABLE scratch (a INTEGER)",
        "BEGIN",
        "COMMIT",
        "SAVEPOINT s",
        "SELECT rows FROM bf_applied_update",
        "DELETE FROM bf_applied_update",
        "INSERT INTO bf_applied_update (update_id, node_id, rows, truncated)"
        " VALUES (1, 'node', '[]', 0)",
    ],
)
def test_statements_beyond_rows_and_functions_are_refused(
    sqlite_bot_make: BotMake, statement: str
) -> None:
    bot = sqlite_bot_make(allows_sql_writes=True)

    outcome = run(bot, statement, mode="write", update_id=5)

    assert outcome == SqlOutcome(
        error="The statement is not permitted.", error_code="permission_denied"
    )
    assert _tables(bot) == ["bf_applied_update", "orders"]
    assert _applied_count(bot) == 0


def test_vacuum_into_another_file_is_refused(
    sqlite_bot_make: BotMake, sqlite_backend: Path
) -> None:
    bot = sqlite_bot_make()
    copy = sqlite_backend / "copy.sqlite3"

    outcome = run(bot, f"VACUUM INTO '{copy}'")

    assert outcome.error_code == "permission_denied"
    assert not copy.exists()


@pytest.mark.parametrize("mode", ["read", "write"])
def test_other_bots_file_and_catalogue_are_unreachable(
    sqlite_bot_make: BotMake, sqlite_backend: Path, mode: str
) -> None:
    intruder = sqlite_bot_make(allows_sql_writes=True)
    victim = sqlite_bot_make(allows_sql_writes=True)
    order_insert(victim)
    catalogue = sqlite_backend / "botfactory.sqlite3"
    sqlite3.connect(catalogue).close()

    attach_victim = run(
        intruder, f"ATTACH DATABASE '{database_path(victim.pk)}' AS victim", mode=mode
    )
    attach_catalogue = run(intruder, f"ATTACH DATABASE '{catalogue}' AS c", mode=mode)
    bots_table = run(intruder, "SELECT count(*) FROM bots_bot", mode=mode)

    assert attach_victim.error_code == "permission_denied"
    assert attach_catalogue.error_code == "permission_denied"
    assert bots_table.error_code == "invalid_statement"
    assert _orders_count(victim) == 1


@pytest.mark.parametrize("mode", ["read", "write"])
def test_several_statements_are_refused(sqlite_bot_make: BotMake, mode: str) -> None:
    bot = sqlite_bot_make(allows_sql_writes=True)

    outcome = run(bot, "SELECT 1; DROP TABLE orders", mode=mode)

    assert outcome == SqlOutcome(
        error="The statement is not exactly one valid SQL statement.",
        error_code="syntax_error",
    )
    assert _tables(bot) == ["bf_applied_update", "orders"]
    assert _applied_count(bot) == 0


@pytest.mark.parametrize(
    "value",
    [
        "x'); DROP TABLE orders; --",
        "1; DELETE FROM orders",
        "' OR '1'='1",
        "/* */ :drink %(drink)s ? $drink @drink",
    ],
)
def test_injection_attempts_stay_data(sqlite_bot_make: BotMake, value: str) -> None:
    bot = sqlite_bot_make(allows_sql_writes=True)

    written = order_insert(bot, drink=value)
    found = run(bot, "SELECT drink FROM orders WHERE drink = :drink", {"drink": value})

    assert written.rows == [{"id": 1, "drink": value}]
    assert found == SqlOutcome(rows=[{"drink": value}])
    assert _orders_count(bot) == 1


def test_wrong_type_is_refused_by_the_strict_table(sqlite_bot_make: BotMake) -> None:
    bot = sqlite_bot_make(allows_sql_writes=True)

    outcome = run(
        bot,
        "INSERT INTO orders (user_id, chat_id, drink) VALUES (:user_id, 1, 'tea')",
        {"user_id": "seven"},
        mode="write",
    )

    assert outcome.error_code == "constraint_violation"
    assert _orders_count(bot) == 0


# --- limits ------------------------------------------------------------------------


def test_timeout_stops_a_long_statement(sqlite_bot_make: BotMake) -> None:
    bot = sqlite_bot_make()

    started = time.monotonic()
    outcome = run(
        bot,
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)"
        " SELECT count(*) AS n FROM c",
        timeout_ms=200,
    )
    elapsed = time.monotonic() - started

    assert outcome == SqlOutcome(
        error="The statement took too long.", error_code="timeout"
    )
    assert elapsed < 2.0


def test_busy_timeout_stops_a_blocked_write(sqlite_bot_make: BotMake) -> None:
    bot = sqlite_bot_make(allows_sql_writes=True)

    with contextlib.closing(
        sqlite3.connect(database_path(bot.pk), isolation_level=None)
    ) as holder:
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        outcome = run(
            bot,
            "INSERT INTO orders (user_id, chat_id, drink) VALUES (1, 1, 'tea')",
            mode="write",
            timeout_ms=200,
        )
        elapsed = time.monotonic() - started
        holder.execute("ROLLBACK")

    assert outcome.error_code == "timeout"
    assert 0.2 <= elapsed < 2.0
    assert _orders_count(bot) == 0


def test_row_cap_truncates(sqlite_bot_make: BotMake) -> None:
    bot = sqlite_bot_make()
    series = (
        "WITH RECURSIVE g(n) AS"
        " (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :last)"
        " SELECT n FROM g"
    )

    capped = run(bot, series, {"last": 5000}, max_rows=3)
    exact = run(bot, series, {"last": 3}, max_rows=3)

    assert capped == SqlOutcome(rows=[{"n": 1}, {"n": 2}, {"n": 3}], truncated=True)
    assert exact == SqlOutcome(rows=[{"n": 1}, {"n": 2}, {"n": 3}], truncated=False)


def test_capped_write_still_writes_every_row(sqlite_bot_make: BotMake) -> None:
    bot = sqlite_bot_make(allows_sql_writes=True)

    outcome = run(
        bot,
        "INSERT INTO orders (user_id, chat_id, drink)"
        " SELECT value, value, 'tea' FROM json_each('[1, 2, 3, 4, 5]')"
        " RETURNING user_id",
        mode="write",
        max_rows=2,
    )

    assert outcome == SqlOutcome(rows=[{"user_id": 1}, {"user_id": 2}], truncated=True)
    assert _orders_count(bot) == 5


# --- re-delivered updates -----------------------------------------------------------


def test_replayed_update_returns_the_stored_rows_without_writing(
    sqlite_bot_make: BotMake,
) -> None:
    bot = sqlite_bot_make(allows_sql_writes=True)

    first = order_insert(bot, update_id=7)
    again = order_insert(bot, update_id=7)

    assert first == SqlOutcome(rows=[{"id": 1, "drink": "latte"}])
    assert again == SqlOutcome(rows=[{"id": 1, "drink": "latte"}], replayed=True)
    assert _orders_count(bot) == 1


def test_failed_write_records_nothing(sqlite_bot_make: BotMake) -> None:
    bot = sqlite_bot_make(allows_sql_writes=True)

    outcome = run(
        bot,
        "INSERT INTO orders (user_id, chat_id, drink, quantity)"
        " VALUES (1, 1, 'tea', 0)",
        mode="write",
    )

    assert outcome.error_code == "constraint_violation"
    assert (_orders_count(bot), _applied_count(bot)) == (0, 0)


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicates_write_once(
    sqlite_bot_make: BotMake, sqlite_backend: Path
) -> None:
    bot = sqlite_bot_make(allows_sql_writes=True)

    outcomes = racers_run("sqlite", bot, update_id=99, data_dir=sqlite_backend)

    assert sorted(outcome["replayed"] for outcome in outcomes) == [False, True]
    assert [outcome["rows"] for outcome in outcomes] == [
        [{"id": 1, "drink": "latte"}]
    ] * 2
    assert (_orders_count(bot), _applied_count(bot)) == (1, 1)


def test_errors_are_logged_without_parameter_values(
    sqlite_bot_make: BotMake, caplog: pytest.LogCaptureFixture
) -> None:
    bot = sqlite_bot_make()

    with caplog.at_level(logging.WARNING, logger="bots.sql"):
        outcome = run(
            bot, "SELECT :v FROM missing_table", {"v": "secret-4711"}, node_id="ask"
        )

    assert outcome.error_code == "invalid_statement"
    assert [record.getMessage() for record in caplog.records] == [
        f"SQL node ask of bot {bot.pk} failed: invalid_statement (OperationalError)"
    ]
    assert "secret-4711" not in caplog.text
