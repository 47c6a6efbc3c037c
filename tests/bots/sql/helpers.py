"""Shared steps of the SQL runner tests."""

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.db import connection

from bots.models import Bot
from bots.sql import SqlOutcome, sql_run
from tests.factories import BotFactory

DEMO_DIR = Path(__file__).resolve().parents[3] / "bots" / "demo"

BotMake = Callable[..., Bot]


def bot_create(**fields: Any) -> Bot:
    bot = BotFactory.create(**fields)
    assert isinstance(bot, Bot)
    return bot


def owner_fetch(query: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Run a query on the runtime's own connection (the schemas' owner)."""
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return list(cursor.fetchall())


def owner_value(query: str, params: list[Any] | None = None) -> Any:
    return owner_fetch(query, params)[0][0]


def run(
    bot: Bot,
    statement: str,
    params: Mapping[str, Any] | None = None,
    *,
    mode: str = "read",
    timeout_ms: int = 5000,
    max_rows: int = 100,
    update_id: int = 1,
    node_id: str = "node",
) -> SqlOutcome:
    return sql_run(
        bot=bot,
        node_id=node_id,
        statement=statement,
        params=params or {},
        mode=mode,
        timeout_ms=timeout_ms,
        max_rows=max_rows,
        update_id=update_id,
    )


def order_insert(bot: Bot, drink: str = "latte", *, update_id: int = 1) -> SqlOutcome:
    return run(
        bot,
        "INSERT INTO orders (user_id, chat_id, drink, quantity)"
        " VALUES (:user_id, :chat_id, :drink, :quantity) RETURNING id, drink",
        {"user_id": 7, "chat_id": 70, "drink": drink, "quantity": 1},
        mode="write",
        update_id=update_id,
    )


def _database_url() -> str:
    database = settings.DATABASES["default"]
    user = quote(database["USER"] or "", safe="")
    password = quote(database["PASSWORD"] or "", safe="")
    credentials = f"{user}:{password}" if password else user
    host = database["HOST"] or "localhost"

    return (
        f"postgres://{credentials}@{host}:{database['PORT'] or 5432}/{database['NAME']}"
    )


def racers_run(
    backend: str, bot: Bot, *, update_id: int, data_dir: Path | None = None
) -> list[dict[str, Any]]:
    """Run the same write node in two fresh interpreters at once."""
    command = [sys.executable, "-m", "tests.bots.sql.racer", backend, str(bot.pk)]
    command += [str(update_id)] + ([str(data_dir)] if data_dir else [])
    env = {**os.environ, "DATABASE_URL": _database_url()}
    racers = [
        subprocess.Popen(
            command,
            cwd=settings.BASE_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for racer in racers:
        assert racer.stdout is not None
        assert racer.stdout.readline().strip() == "ready"
    for racer in racers:
        assert racer.stdin is not None
        racer.stdin.write("go\n")
        racer.stdin.flush()

    outputs = [racer.communicate(timeout=60)[0] for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0]

    return [json.loads(output.strip().splitlines()[-1]) for output in outputs]
