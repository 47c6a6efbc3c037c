"""Run one write node in a fresh interpreter, for the duplicate-update tests.

``python -m tests.bots.sql.racer <backend> <bot_id> <update_id> [data_dir]``
prints ``ready``, waits for a line on stdin (so that several racers start
together), runs the node and prints its outcome as one line of JSON.
"""

import dataclasses
import json
import os
import sys
from pathlib import Path

import django

STATEMENTS = {
    # The sleep keeps both racers inside their transactions at once.
    "postgresql": (
        "INSERT INTO orders (user_id, chat_id, drink)"
        " SELECT :user_id, :chat_id, :drink FROM pg_sleep(0.5) RETURNING id, drink"
    ),
    "sqlite": (
        "INSERT INTO orders (user_id, chat_id, drink)"
        " VALUES (:user_id, :chat_id, :drink) RETURNING id, drink"
    ),
}


def main(argv: list[str]) -> None:
    backend, bot_id, update_id = argv[1], int(argv[2]), int(argv[3])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "botfactory.settings")
    django.setup()
    # Models and services can only be imported once Django is set up.
    from django.conf import settings

    from bots.models import Bot
    from bots.sql import sql_run

    if backend == "sqlite":
        settings.IS_POSTGRESQL = False
        settings.DATA_DIR = Path(argv[4])
    bot = Bot.objects.get(pk=bot_id)

    print("ready", flush=True)
    sys.stdin.readline()
    outcome = sql_run(
        bot=bot,
        node_id="order_save",
        statement=STATEMENTS[backend],
        params={"user_id": 7, "chat_id": 7, "drink": "latte"},
        mode="write",
        timeout_ms=10_000,
        max_rows=10,
        update_id=update_id,
    )
    print(json.dumps(dataclasses.asdict(outcome)), flush=True)


if __name__ == "__main__":
    main(sys.argv)
