import logging
import os
import time
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.test import Client

from bots.models import Bot
from bots.sql import (
    SqlOutcome,
    SqlSchemaError,
    sql_deprovision,
    sql_provision,
    sql_schema_apply,
)
from bots.sql.postgresql import role_name, schema_name
from tests.bots.sql.helpers import (
    DEMO_DIR,
    BotMake,
    bot_create,
    order_insert,
    owner_fetch,
    owner_value,
    racers_run,
    run,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _orders_count(bot: Bot) -> int:
    return int(owner_value(f"SELECT count(*) FROM {schema_name(bot.pk)}.orders"))


def _applied_count(bot: Bot) -> int:
    return int(
        owner_value(f"SELECT count(*) FROM {schema_name(bot.pk)}.bf_applied_update")
    )


def _privileges(bot: Bot, table: str) -> list[str]:
    role = role_name(bot.pk)
    relation = f"{schema_name(bot.pk)}.{table}"
    return [
        privilege
        for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
        if owner_value(
            "SELECT has_table_privilege(%s, %s, %s)", [role, relation, privilege]
        )
    ]


def _role_sessions(bot: Bot) -> int:
    return int(
        owner_value(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s",
            [role_name(bot.pk)],
        )
    )


def _backend_pid(bot: Bot) -> int:
    return int(run(bot, "SELECT pg_backend_pid() AS pid").rows[0]["pid"])


# --- provisioning --------------------------------------------------------------


def test_provision_creates_a_login_role_with_no_powers(pg_bot_make: BotMake) -> None:
    bot = pg_bot_make()

    attributes = owner_fetch(
        "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication,"
        " rolbypassrls, rolinherit FROM pg_roles WHERE rolname = %s",
        [role_name(bot.pk)],
    )
    memberships = owner_value(
        "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member"
        " WHERE r.rolname = %s",
        [role_name(bot.pk)],
    )
    schema_owner = owner_value(
        "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s",
        [schema_name(bot.pk)],
    )

    assert attributes == [(True, False, False, False, False, False, False)]
    assert memberships == 0
    assert schema_owner == settings.DATABASES["default"]["USER"]


def test_role_name_carries_the_database_and_fits_postgresql() -> None:
    digest = role_name(1).split("_")[1]

    assert role_name(1) == f"bf_{digest}_bot_1"
    assert len(digest) == 8
    assert len(role_name(2**63 - 1)) <= 63


def test_password_is_generated_and_stored_encrypted(pg_bot_make: BotMake) -> None:
    bot = pg_bot_make()

    stored = owner_value("SELECT sql_password FROM bots_bot WHERE id = %s", [bot.pk])

    assert len(bot.sql_password) == 43
    assert Bot.objects.get(pk=bot.pk).sql_password == bot.sql_password
    assert bot.sql_password not in stored


def test_provision_again_keeps_the_password_and_the_data(pg_bot_make: BotMake) -> None:
    bot = pg_bot_make(allows_sql_writes=True)
    order_insert(bot)
    password = bot.sql_password

    sql_provision(bot=bot)

    assert Bot.objects.get(pk=bot.pk).sql_password == password
    assert _orders_count(bot) == 1
    assert run(bot, "SELECT drink FROM orders").rows == [{"drink": "latte"}]


def test_grants_follow_the_writes_flag(pg_bot_make: BotMake) -> None:
    bot = pg_bot_make()
    read_only = (_privileges(bot, "orders"), _privileges(bot, "bf_applied_update"))

    bot.allows_sql_writes = True
    bot.save()
    sql_provision(bot=bot)
    writable = (_privileges(bot, "orders"), _privileges(bot, "bf_applied_update"))

    bot.allows_sql_writes = False
    bot.save()
    sql_provision(bot=bot)
    revoked = (_privileges(bot, "orders"), _privileges(bot, "bf_applied_update"))

    assert read_only == (["SELECT"], [])
    assert writable == (["SELECT", "INSERT", "UPDATE", "DELETE"], ["SELECT", "INSERT"])
    assert revoked == (["SELECT"], [])


def test_role_without_writes_cannot_write_even_in_a_read_write_transaction(
    pg_bot_make: BotMake,
) -> None:
    bot = pg_bot_make()
    database = settings.DATABASES["default"]

    with (
        psycopg.connect(
            dbname=database["NAME"],
            host=database["HOST"],
            port=database["PORT"],
            user=role_name(bot.pk),
            password=bot.sql_password,
        ) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(
            f"INSERT INTO {schema_name(bot.pk)}.orders (user_id, chat_id, drink)"
            " VALUES (1, 1, 'x')"
        )

    assert _orders_count(bot) == 0


def test_schema_apply_is_idempotent_and_grants_new_tables(pg_bot_make: BotMake) -> None:
    bot = pg_bot_make()
    order_schema = (DEMO_DIR / "schema_postgresql.sql").read_text(encoding="utf-8")

    sql_schema_apply(bot=bot, statements=order_schema)
    sql_schema_apply(bot=bot, statements="CREATE TABLE extra (a integer)")

    assert _privileges(bot, "extra") == ["SELECT"]
    assert owner_value("SELECT to_regclass(%s) IS NOT NULL", [f"bot_{bot.pk}.extra"])
    assert owner_value("SELECT to_regclass('public.extra') IS NULL")


def test_schema_apply_failure_applies_nothing(pg_bot_make: BotMake) -> None:
    bot = pg_bot_make()

    with pytest.raises(SqlSchemaError) as caught:
        sql_schema_apply(
            bot=bot, statements="CREATE TABLE first (a integer); CREATE TABLE broken ("
        )

    assert caught.value.code == "sql_schema_invalid"
    assert owner_value("SELECT to_regclass(%s) IS NULL", [f"bot_{bot.pk}.first"])


def test_deprovision_drops_role_schema_and_connections(pg_bot_make: BotMake) -> None:
    bot = bot_create()
    sql_provision(bot=bot)
    _backend_pid(bot)

    sql_deprovision(bot=bot)

    assert (
        owner_value(
            "SELECT count(*) FROM pg_roles WHERE rolname = %s", [role_name(bot.pk)]
        )
        == 0
    )
    assert (
        owner_value(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s",
            [schema_name(bot.pk)],
        )
        == 0
    )
    assert _role_sessions(bot) == 0
    assert run(bot, "SELECT 1 AS one").error_code == "unavailable"


def _bot_database_exists(bot: Bot) -> tuple[bool, bool]:
    roles = owner_value(
        "SELECT count(*) FROM pg_roles WHERE rolname = %s", [role_name(bot.pk)]
    )
    schemas = owner_value(
        "SELECT count(*) FROM pg_namespace WHERE nspname = %s", [schema_name(bot.pk)]
    )

    return roles == 1, schemas == 1


@pytest.mark.parametrize("how", ["delete page", "delete action"])
def test_deleting_a_bot_in_the_admin_drops_its_role_and_schema(
    pg_bot_make: BotMake, admin_client: Client, how: str
) -> None:
    bot = pg_bot_make(allows_sql_writes=True)
    kept = pg_bot_make()
    order_insert(bot)
    before = _bot_database_exists(bot)

    if how == "delete page":
        response = admin_client.post(
            f"/admin/bots/bot/{bot.pk}/delete/", {"post": "yes"}
        )
    else:
        response = admin_client.post(
            "/admin/bots/bot/",
            {"action": "delete_selected", "_selected_action": [bot.pk], "post": "yes"},
        )

    assert before == (True, True)
    assert response.status_code == 302
    assert not Bot.objects.filter(pk=bot.pk).exists()
    assert _bot_database_exists(bot) == (False, False)
    assert _bot_database_exists(kept) == (True, True)


# --- what a statement can reach --------------------------------------------------


def test_statement_runs_as_the_bot_role_in_its_schema(pg_bot_make: BotMake) -> None:
    bot = pg_bot_make()

    outcome = run(
        bot,
        "SELECT current_user AS role, session_user AS login,"
        " current_schemas(false) AS path",
    )

    assert outcome == SqlOutcome(
        rows=[
            {
                "role": role_name(bot.pk),
                "login": role_name(bot.pk),
                "path": [schema_name(bot.pk)],
            }
        ]
    )


def test_other_bots_schema_is_unreachable(pg_bot_make: BotMake) -> None:
    intruder = pg_bot_make(allows_sql_writes=True)
    victim = pg_bot_make(allows_sql_writes=True)
    order_insert(victim)
    other = schema_name(victim.pk)

    read = run(intruder, f"SELECT drink FROM {other}.orders")
    write = run(intruder, f"DELETE FROM {other}.orders", mode="write", update_id=2)

    assert (read.error_code, write.error_code) == (
        "permission_denied",
        "permission_denied",
    )
    assert _orders_count(victim) == 1


@pytest.mark.parametrize(
    ("statement", "code"),
    [
        ("SELECT count(*) FROM public.bots_bot", "permission_denied"),
        ("SELECT sql_password FROM public.bots_bot", "permission_denied"),
        ("SELECT count(*) FROM public.auth_user", "permission_denied"),
        ("SELECT rolpassword FROM pg_catalog.pg_authid", "permission_denied"),
        ("DELETE FROM public.bots_bot", "permission_denied"),
        # Not on the search path at all.
        ("SELECT count(*) FROM bots_bot", "invalid_statement"),
    ],
)
def test_catalogue_tables_are_unreachable(
    pg_bot_make: BotMake, statement: str, code: str
) -> None:
    bot = pg_bot_make(allows_sql_writes=True)
    bots_before = Bot.objects.count()

    outcome = run(bot, statement, mode="write")

    assert (outcome.rows, outcome.error_code) == ([], code)
    assert Bot.objects.count() == bots_before


@pytest.mark.parametrize(
    "statement",
    [
        "SET ROLE postgres",
        "SET ROLE pg_read_server_files",
        "SET ROLE pg_execute_server_program",
        "SET SESSION AUTHORIZATION postgres",
        "COPY (SELECT 1) TO PROGRAM 'true'",
        "SELECT pg_read_file('/etc/hostname')",
        "SELECT pg_ls_dir('.')",
        "COPY orders FROM '/etc/hostname'",
        "SELECT lo_import('/etc/hostname')",
    ],
)
def test_role_changes_and_server_files_are_refused(
    pg_bot_make: BotMake, statement: str
) -> None:
    bot = pg_bot_make(allows_sql_writes=True)

    outcome = run(bot, statement, mode="write")

    assert outcome.error_code == "permission_denied"
    assert _orders_count(bot) == 0
    assert _applied_count(bot) == 0


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE more_orders (a integer)",
        "CREATE TABLE public.more_orders (a integer)",
        "CREATE TEMPORARY TABLE scratch (a integer)",
        "CREATE FUNCTION pg_temp.f() RETURNS integer LANGUAGE sql AS 'SELECT 1'",
        "CREATE FUNCTION f() RETURNS integer LANGUAGE c"
        " AS '/lib/x86_64-linux-gnu/libc.so.6', 'getpid'",
        "CREATE FUNCTION f() RETURNS integer LANGUAGE internal AS 'int4in'",
        "CREATE EXTENSION dblink",
        "CREATE EXTENSION postgres_fdw",
        "CREATE EXTENSION file_fdw",
        "CREATE ROLE helper LOGIN",
        "ALTER ROLE CURRENT_USER SUPERUSER",
        "SELECT set_config('role', 'postgres', false)",
        "SELECT set_config('session_authorization', 'postgres', false)",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE usename <> current_user",
    ],
)
def test_role_cannot_create_objects_nor_run_untrusted_code(
    pg_bot_make: BotMake, statement: str
) -> None:
    bot = pg_bot_make(allows_sql_writes=True)

    outcome = run(bot, statement, mode="write")

    assert outcome.error_code == "permission_denied"
    assert _applied_count(bot) == 0
    assert (
        owner_value(
            "SELECT count(*) FROM pg_proc WHERE proowner = %s::regrole",
            [role_name(bot.pk)],
        )
        == 0
    )
    assert (
        owner_value(
            "SELECT count(*) FROM pg_class WHERE relowner = %s::regrole",
            [role_name(bot.pk)],
        )
        == 0
    )


def test_dblink_is_not_there_to_call(pg_bot_make: BotMake) -> None:
    bot = pg_bot_make(allows_sql_writes=True)

    outcome = run(
        bot, "SELECT dblink_connect('dbname=postgres user=postgres')", mode="write"
    )

    assert outcome.error_code == "invalid_statement"


def test_reset_role_leaves_the_session_as_the_bot_role(pg_bot_make: BotMake) -> None:
    bot = pg_bot_make()

    reset = run(bot, "RESET ROLE")
    after = run(bot, "SELECT current_user AS role")
    catalogue = run(bot, "SELECT count(*) FROM public.bots_bot")

    assert reset == SqlOutcome(rows=[])
    assert after.rows == [{"role": role_name(bot.pk)}]
    assert catalogue.error_code == "permission_denied"


# --- read and write modes ----------------------------------------------------------


def test_read_returns_rows_as_json_safe_dicts(pg_bot_make: BotMake) -> None:
    bot = pg_bot_make()

    outcome = run(
        bot,
        "SELECT 12.50::numeric AS price, 2::int AS n, 1.5::float8 AS ratio,"
        " 'NaN'::float8 AS nan, true AS yes, NULL AS nothing,"
        " '2024-05-01 10:30:00+00'::timestamptz AS at, '2024-05-01'::date AS day,"
        " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS id,"
        """ '{"b": 1, "a": [1, 2.5]}'::json AS doc, ARRAY[1, 2] AS list,"""
        " interval '90 seconds' AS wait, :name::text AS name",
        {"name": "Ann"},
    )

    assert outcome == SqlOutcome(
        rows=[
            {
                "price": "12.50",
                "n": 2,
                "ratio": 1.5,
                "nan": "NaN",
                "yes": True,
                "nothing": None,
                "at": "2024-05-01T10:30:00+00:00",
                "day": "2024-05-01",
                "id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                "doc": {"b": 1, "a": [1, 2.5]},
                "list": [1, 2],
                "wait": 90.0,
                "name": "Ann",
            }
        ]
    )


@pytest.mark.parametrize(
    ("statement", "code"),
    [
        ("SELECT '\\x00ff'::bytea AS raw", "unsupported_value"),
        ("SELECT 1 AS a, 2 AS a", "duplicate_column"),
    ],
)
def test_rows_that_are_not_json_are_refused(
    pg_bot_make: BotMake, statement: str, code: str
) -> None:
    bot = pg_bot_make()

    outcome = run(bot, statement)

    assert (outcome.rows, outcome.error_code) == ([], code)


def test_write_in_read_mode_is_refused_by_the_database(pg_bot_make: BotMake) -> None:
    bot = pg_bot_make(allows_sql_writes=True)

    outcome = run(
        bot,
        "INSERT INTO orders (user_id, chat_id, drink) VALUES (1, 1, 'x')",
        mode="read",
    )

    assert outcome == SqlOutcome(
        error="The statement tried to write in read mode.", error_code="read_only"
    )
    assert _orders_count(bot) == 0


def test_read_write_switch_inside_the_statement_is_refused(
    pg_bot_make: BotMake,
) -> None:
    bot = pg_bot_make(allows_sql_writes=True)

    switch = run(bot, "SET TRANSACTION READ WRITE", mode="read")
    config = run(
        bot, "SELECT set_config('transaction_read_only', 'off', true)", mode="read"
    )

    assert (switch.error_code, config.error_code) == (
        "database_error",
        "database_error",
    )
    assert run(bot, "SHOW transaction_read_only").rows == [
        {"transaction_read_only": "on"}
    ]


def test_write_node_on_a_bot_without_writes_is_refused_untouched(
    pg_bot_make: BotMake,
) -> None:
    bot = pg_bot_make(allows_sql_writes=False)

    outcome = order_insert(bot)

    assert outcome == SqlOutcome(
        error="This bot does not allow SQL writes.", error_code="writes_not_allowed"
    )
    assert _role_sessions(bot) == 0
    assert _orders_count(bot) == 0


def test_write_returns_rows_and_records_the_update(pg_bot_make: BotMake) -> None:
    bot = pg_bot_make(allows_sql_writes=True)

    outcome = order_insert(bot, update_id=41)
    records = owner_fetch(
        f"SELECT update_id, node_id, rows::text, truncated"
        f" FROM {schema_name(bot.pk)}.bf_applied_update"
    )

    order_id = outcome.rows[0]["id"]
    assert outcome == SqlOutcome(rows=[{"id": order_id, "drink": "latte"}])
    assert records == [(41, "node", f'[{{"id": {order_id}, "drink": "latte"}}]', False)]


def test_statement_without_a_result_set_returns_no_rows(pg_bot_make: BotMake) -> None:
    bot = pg_bot_make(allows_sql_writes=True)
    order_insert(bot)

    outcome = run(
        bot, "UPDATE orders SET size = :size", {"size": "L"}, mode="write", update_id=2
    )

    assert outcome == SqlOutcome(rows=[])
    assert owner_value(f"SELECT size FROM {schema_name(bot.pk)}.orders") == "L"


# --- one statement, values as data -------------------------------------------------


@pytest.mark.parametrize("mode", ["read", "write"])
@pytest.mark.parametrize(
    ("statement", "params"),
    [
        ("SELECT 1; DROP TABLE orders", {}),
        ("SELECT :n::int AS n; DROP TABLE orders", {"n": 1}),
        ("DROP TABLE orders; SELECT 1", {}),
    ],
)
def test_several_statements_are_refused(
    pg_bot_make: BotMake, mode: str, statement: str, params: dict[str, Any]
) -> None:
    bot = pg_bot_make(allows_sql_writes=True)

    outcome = run(bot, statement, params, mode=mode)

    assert outcome.error_code == "syntax_error"
    assert owner_value("SELECT to_regclass(%s) IS NOT NULL", [f"bot_{bot.pk}.orders"])
    assert _applied_count(bot) == 0


@pytest.mark.parametrize("mode", ["read", "write"])
@pytest.mark.parametrize("statement", ["COMMIT", "ROLLBACK", "COPY orders TO STDOUT"])
def test_leaving_the_transaction_is_refused(
    pg_bot_make: BotMake, statement: str, mode: str
) -> None:
    bot = pg_bot_make(allows_sql_writes=True)

    outcome = run(bot, statement, mode=mode)
    applied = _applied_count(bot)
    after = order_insert(bot, update_id=2)

    assert outcome == SqlOutcome(
        error="This kind of statement cannot run in a node.",
        error_code="unsupported_statement",
    )
    assert applied == 0
    assert after.error is None


@pytest.mark.parametrize(
    "value",
    [
        "x'); DROP TABLE orders; --",
        "1; DELETE FROM orders",
        "' OR '1'='1",
        "/* */ :drink %(drink)s %s $$ $1",
        'Robert"); DROP TABLE orders;--',
    ],
)
def test_injection_attempts_stay_data(pg_bot_make: BotMake, value: str) -> None:
    bot = pg_bot_make(allows_sql_writes=True)

    written = order_insert(bot, drink=value)
    found = run(bot, "SELECT drink FROM orders WHERE drink = :drink", {"drink": value})

    assert written.rows[0]["drink"] == value
    assert found == SqlOutcome(rows=[{"drink": value}])
    assert _orders_count(bot) == 1


def test_percent_and_casts_in_the_statement_are_sql(pg_bot_make: BotMake) -> None:
    bot = pg_bot_make()

    outcome = run(
        bot,
        "SELECT :n::int + 1 AS next, '50%' AS share, 'a:b' AS text,"
        " $$:n$$ AS quoted -- :comment",
        {"n": "41"},
    )

    assert outcome.rows == [{"next": 42, "share": "50%", "text": "a:b", "quoted": ":n"}]


# --- limits ------------------------------------------------------------------------


def test_timeout_stops_a_long_statement(pg_bot_make: BotMake) -> None:
    bot = pg_bot_make()

    started = time.monotonic()
    outcome = run(bot, "SELECT pg_sleep(5)", timeout_ms=200)
    elapsed = time.monotonic() - started

    assert outcome == SqlOutcome(
        error="The statement took too long.", error_code="timeout"
    )
    assert elapsed < 2.0


def test_lock_timeout_stops_a_blocked_statement(pg_bot_make: BotMake) -> None:
    bot = pg_bot_make()
    database = settings.DATABASES["default"]

    with psycopg.connect(
        dbname=database["NAME"],
        host=database["HOST"],
        port=database["PORT"],
        user=database["USER"],
        password=database["PASSWORD"] or None,
    ) as holder:
        holder.execute(
            f"LOCK TABLE {schema_name(bot.pk)}.orders IN ACCESS EXCLUSIVE MODE"
        )
        started = time.monotonic()
        outcome = run(bot, "SELECT count(*) AS n FROM orders", timeout_ms=200)
        elapsed = time.monotonic() - started

    assert outcome.error_code == "timeout"
    assert elapsed < 2.0


def test_settings_a_statement_changes_last_only_for_its_node(
    pg_bot_make: BotMake,
) -> None:
    bot = pg_bot_make(allows_sql_writes=True)
    pid = _backend_pid(bot)
    changes = [
        "SELECT set_config('statement_timeout', '0', false)",
        "SELECT set_config('lock_timeout', '0', false)",
        "SELECT set_config('search_path', 'public', false)",
    ]

    changed = [
        run(bot, change, mode="write", update_id=number).error
        for number, change in enumerate(changes, start=1)
    ]
    # The same session, so the changes were committed to it.
    seen = run(
        bot,
        "SELECT current_setting('statement_timeout') AS statement,"
        " current_setting('lock_timeout') AS lock, current_schemas(false) AS path,"
        " pg_backend_pid() AS pid",
        timeout_ms=300,
    )
    started = time.monotonic()
    sleeper = run(bot, "SELECT pg_sleep(5)", timeout_ms=200)
    elapsed = time.monotonic() - started

    assert changed == [None, None, None]
    assert seen.rows == [
        {
            "statement": "300ms",
            "lock": "300ms",
            "path": [schema_name(bot.pk)],
            "pid": pid,
        }
    ]
    assert sleeper.error_code == "timeout"
    assert elapsed < 2.0


def test_row_cap_truncates(pg_bot_make: BotMake) -> None:
    bot = pg_bot_make()
    series = "SELECT g AS n FROM generate_series(1, :last) AS g"

    capped = run(bot, series, {"last": 5000}, max_rows=3)
    exact = run(bot, series, {"last": 3}, max_rows=3)

    assert capped == SqlOutcome(rows=[{"n": 1}, {"n": 2}, {"n": 3}], truncated=True)
    assert exact == SqlOutcome(rows=[{"n": 1}, {"n": 2}, {"n": 3}], truncated=False)


def test_row_cap_setting_bounds_max_rows(pg_bot_make: BotMake, settings: Any) -> None:
    bot = pg_bot_make()
    settings.SQL_ROW_CAP = 2

    outcome = run(bot, "SELECT g AS n FROM generate_series(1, 10) AS g", max_rows=100)

    assert outcome == SqlOutcome(rows=[{"n": 1}, {"n": 2}], truncated=True)


def test_capped_write_still_writes_every_row(pg_bot_make: BotMake) -> None:
    bot = pg_bot_make(allows_sql_writes=True)

    outcome = run(
        bot,
        "INSERT INTO orders (user_id, chat_id, drink)"
        " SELECT g, g, 'tea' FROM generate_series(1, 5) AS g RETURNING user_id",
        mode="write",
        max_rows=2,
    )

    assert outcome == SqlOutcome(rows=[{"user_id": 1}, {"user_id": 2}], truncated=True)
    assert _orders_count(bot) == 5


# --- re-delivered updates -----------------------------------------------------------


def test_replayed_update_returns_the_stored_rows_without_writing(
    pg_bot_make: BotMake,
) -> None:
    bot = pg_bot_make(allows_sql_writes=True)

    first = order_insert(bot, update_id=7)
    again = order_insert(bot, update_id=7)
    other_node = run(
        bot,
        "INSERT INTO orders (user_id, chat_id, drink)"
        " VALUES (1, 1, 'tea') RETURNING drink",
        mode="write",
        update_id=7,
        node_id="other",
    )

    assert first.replayed is False
    assert again == SqlOutcome(rows=first.rows, replayed=True)
    assert other_node == SqlOutcome(rows=[{"drink": "tea"}])
    assert _orders_count(bot) == 2


def test_failed_write_records_nothing_and_can_be_retried(pg_bot_make: BotMake) -> None:
    bot = pg_bot_make(allows_sql_writes=True)
    statement = (
        "INSERT INTO orders (user_id, chat_id, drink, quantity)"
        " VALUES (1, 1, 'tea', :quantity) RETURNING quantity"
    )

    failed = run(bot, statement, {"quantity": 0}, mode="write", update_id=9)
    counts = (_orders_count(bot), _applied_count(bot))
    retried = run(bot, statement, {"quantity": 2}, mode="write", update_id=9)

    assert failed.error_code == "constraint_violation"
    assert counts == (0, 0)
    assert retried == SqlOutcome(rows=[{"quantity": 2}])


def test_concurrent_duplicates_write_once(pg_bot_make: BotMake) -> None:
    bot = pg_bot_make(allows_sql_writes=True)

    outcomes = racers_run("postgresql", bot, update_id=99)

    assert sorted(outcome["replayed"] for outcome in outcomes) == [False, True]
    assert outcomes[0]["rows"] == outcomes[1]["rows"]
    assert [outcome["error"] for outcome in outcomes] == [None, None]
    assert _orders_count(bot) == 1
    assert _applied_count(bot) == 1


# --- errors and connections -----------------------------------------------------------


def test_errors_are_logged_without_parameter_values(
    pg_bot_make: BotMake, caplog: pytest.LogCaptureFixture
) -> None:
    bot = pg_bot_make()

    with caplog.at_level(logging.WARNING, logger="bots.sql"):
        outcome = run(bot, "SELECT :v::int AS n", {"v": "secret-4711"}, node_id="ask")

    assert outcome == SqlOutcome(
        error="A value does not fit the statement.", error_code="invalid_data"
    )
    assert [record.getMessage() for record in caplog.records] == [
        f"SQL node ask of bot {bot.pk} failed: invalid_data (InvalidTextRepresentation)"
    ]
    assert "secret-4711" not in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"statement": "SELECT :missing AS m"}, "missing_parameter"),
        (
            {"statement": "SELECT :v AS v", "params": {"v": {"a": 1}}},
            "unsupported_parameter",
        ),
        (
            {"statement": "SELECT :v AS v", "params": {"v": 2**64}},
            "unsupported_parameter",
        ),
        ({"statement": "SELECT 1", "mode": "delete"}, "invalid_node"),
    ],
)
def test_invalid_calls_are_refused_untouched(
    pg_bot_make: BotMake, kwargs: dict[str, Any], code: str
) -> None:
    bot = pg_bot_make(allows_sql_writes=True)
    statement = kwargs.pop("statement")

    outcome = run(bot, statement, **kwargs)

    assert outcome.error_code == code
    assert _role_sessions(bot) == 0


def test_unprovisioned_bot_gets_an_error() -> None:
    bot = bot_create()

    outcome = run(bot, "SELECT 1 AS one")

    assert outcome == SqlOutcome(
        error="The bot's database is not set up.", error_code="not_provisioned"
    )


def test_connection_is_reused_and_replaced_after_a_failure(
    pg_bot_make: BotMake,
) -> None:
    bot = pg_bot_make()

    first = _backend_pid(bot)
    second = _backend_pid(bot)
    owner_value("SELECT pg_terminate_backend(%s)", [second])
    time.sleep(0.1)
    after_kill = _backend_pid(bot)
    failed = run(bot, "SELECT missing_column FROM orders")
    after_failure = _backend_pid(bot)

    assert first == second
    assert after_kill != first
    assert failed.error_code == "invalid_statement"
    assert after_failure != after_kill


def test_forked_child_opens_its_own_connection(pg_bot_make: BotMake) -> None:
    bot = pg_bot_make()
    parent_pid = _backend_pid(bot)
    read_end, write_end = os.pipe()

    child = os.fork()
    if child == 0:
        code = 1
        try:
            os.close(read_end)
            os.write(write_end, str(_backend_pid(bot)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child_pid = int(pipe.read() or 0)
    _pid, status = os.waitpid(child, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert child_pid not in {0, parent_pid}
    assert _backend_pid(bot) == parent_pid
