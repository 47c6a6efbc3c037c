from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from psycopg import sql

from bots.models import Bot
from bots.sql import (
    sql_connections_close,
    sql_deprovision,
    sql_provision,
    sql_schema_apply,
)
from bots.sql.postgresql import role_name
from tests.bots.sql.helpers import DEMO_DIR, BotMake, bot_create


@pytest.fixture(autouse=True)
def _sql_connections_closed() -> Iterator[None]:
    yield
    sql_connections_close()


@pytest.fixture(scope="session")
def bot_roles_dropped(django_db_setup: None) -> Iterator[None]:
    """Drop the roles of this test database that a failed test left behind.

    Roles are cluster-wide and outlive the test database.
    """
    yield
    database = settings.DATABASES["default"]
    prefix = role_name(0).removesuffix("0")
    with psycopg.connect(
        dbname=database["NAME"],
        host=database["HOST"],
        port=database["PORT"],
        user=database["USER"],
        password=database["PASSWORD"] or None,
        autocommit=True,
    ) as conn:
        roles = conn.execute(
            "SELECT rolname FROM pg_roles WHERE left(rolname, %s) = %s",
            [len(prefix), prefix],
        ).fetchall()
        for (role,) in roles:
            conn.execute(
                sql.SQL("DROP OWNED BY {role}; DROP ROLE {role}").format(
                    role=sql.Identifier(role)
                )
            )


@pytest.fixture
def pg_bot_make(transactional_db: None, bot_roles_dropped: None) -> Iterator[BotMake]:
    """Make provisioned bots with the demo's ``orders`` table on PostgreSQL."""
    made: list[Bot] = []

    def make(*, allows_sql_writes: bool = False) -> Bot:
        bot = bot_create(allows_sql_writes=allows_sql_writes)
        sql_provision(bot=bot)
        schema = (DEMO_DIR / "schema_postgresql.sql").read_text(encoding="utf-8")
        sql_schema_apply(bot=bot, statements=schema)
        made.append(bot)
        return bot

    yield make

    for bot in made:
        sql_deprovision(bot=bot)


@pytest.fixture
def sqlite_backend(settings: Any, tmp_path: Path) -> Iterator[Path]:
    """Select the embedded default's backend: one SQLite file per bot."""
    settings.IS_POSTGRESQL = False
    settings.DATA_DIR = tmp_path
    yield tmp_path
    sql_connections_close()


@pytest.fixture
def sqlite_bot_make(db: None, sqlite_backend: Path) -> BotMake:
    """Make provisioned bots with the demo's ``orders`` table on SQLite."""

    def make(*, allows_sql_writes: bool = False) -> Bot:
        bot = bot_create(allows_sql_writes=allows_sql_writes)
        sql_provision(bot=bot)
        schema = (DEMO_DIR / "schema_sqlite.sql").read_text(encoding="utf-8")
        sql_schema_apply(bot=bot, statements=schema)
        return bot

    return make
