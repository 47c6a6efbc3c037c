"""CPU per update of the webhook and of the outbox, in one process.

Where the full benchmark (``bench.webhook_bench``) measures the stack under
load, this measures the product's own code with nothing competing for the
CPU: a fresh PostgreSQL database with the demo bot, updates posted through
Django's whole middleware chain (the test client, no HTTP server), the send
tasks published to the real Redis broker, then each chat's outbox drained
against the fake Bot API. It prints CPU milliseconds per update for each
phase and, with ``--profile``, the functions that cost the most.

    .venv/bin/python -m bench.webhook_cpu --updates 600 --profile webhook
"""

import argparse
import cProfile
import io
import json
import os
import pstats
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from cryptography.fernet import Fernet
from psycopg import sql

from tests.fakes.control import start_fake_telegram_subprocess

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CHAT_ID_BASE = 900000000
# Menu buttons and commands alternate, as in the café flow's busiest steps.
_CHATS = 20


def _environment(database_url: str, telegram_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
        "CACHE_KEY_PREFIX": f"bench-cpu-{uuid.uuid4().hex[:8]}",
        "DEBUG": "0",
        "LOG_FORMAT": "json",
        "DOTENV_PATH": os.devnull,
        "SECRET_KEY": secrets.token_hex(32),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0",
        "TELEGRAM_API_URL": telegram_url,
        # Telegram's limits would hold most replies of one bot's chats taking
        # many updates a second; this measures what sending costs.
        "OUTBOX_CHAT_BURST": "1000000",
        "OUTBOX_BOT_PER_SECOND": "1000000",
        "DJANGO_SETTINGS_MODULE": "botfactory.settings",
    }


def _updates(count: int, help_token: str) -> list[dict[str, Any]]:
    from dsl.callback import callback_encode

    updates = []
    for n in range(count):
        chat_id = CHAT_ID_BASE + n % _CHATS
        user = {
            "id": chat_id,
            "is_bot": False,
            "first_name": "G",
            "language_code": "en",
        }
        chat = {"id": chat_id, "type": "private"}
        if (n // _CHATS) % 2 == 0:
            updates.append(
                {
                    "update_id": n + 1,
                    "message": {
                        "message_id": n + 1,
                        "date": 1700000000,
                        "from": user,
                        "chat": chat,
                        "text": "/start",
                        "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
                    },
                }
            )
            continue
        generation = (n // (2 * _CHATS)) * 2 + 1
        data = callback_encode(
            generation=generation, node_id="main", step=0, token=help_token
        )
        updates.append(
            {
                "update_id": n + 1,
                "callback_query": {
                    "id": f"{chat_id}:{n}",
                    "from": user,
                    "chat_instance": str(chat_id),
                    "data": data,
                    "message": {
                        "message_id": n,
                        "date": 1700000000,
                        "chat": chat,
                        "text": "menu",
                    },
                },
            }
        )

    return updates


def _profiled(enabled: bool) -> cProfile.Profile | None:
    if not enabled:
        return None
    profile = cProfile.Profile(time.process_time)
    profile.enable()

    return profile


def _report(profile: cProfile.Profile | None, top: int) -> None:
    if profile is None:
        return
    profile.disable()
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out).sort_stats("cumulative")
    stats.print_stats(top)
    if os.environ.get("BENCH_CALLEES"):
        stats.print_callees(os.environ["BENCH_CALLEES"])
    print(out.getvalue())


def _measure(args: argparse.Namespace) -> dict[str, float]:
    import django

    django.setup()
    from django.test import Client

    from bench.webhook_report import menu_tokens
    from bots.models import OutboundMessage
    from bots.services.bots import demo_bot_load
    from bots.services.outbox import outbox_chat_drain
    from bots.webhook import SECRET_HEADER

    secret = secrets.token_urlsafe(24)
    bot = demo_bot_load(
        token=f"123456:BENCH{secrets.token_hex(12)}", webhook_secret=secret
    )
    _order, _orders, help_token = menu_tokens()
    updates = _updates(args.updates, help_token)
    client = Client()
    path = f"/telegram/{bot.pk}/webhook"
    headers = {SECRET_HEADER: secret}
    bodies = [json.dumps(update) for update in updates]

    # Warm-up: imports, caches and the pool, as a worker has after its first
    # requests.
    for body in bodies[: _CHATS * 2]:
        client.post(path, body, content_type="application/json", headers=headers)
    chats = {CHAT_ID_BASE + n for n in range(_CHATS)}
    for chat_id in chats:
        outbox_chat_drain(bot_id=bot.pk, chat_id=chat_id)

    profile = _profiled(args.profile == "webhook")
    started = time.process_time()
    for body in bodies[_CHATS * 2 :]:
        response = client.post(
            path, body, content_type="application/json", headers=headers
        )
        assert response.status_code == 200, response.content
    webhook = time.process_time() - started
    _report(profile, args.top)

    measured = len(bodies) - _CHATS * 2
    profile = _profiled(args.profile == "outbox")
    started = time.process_time()
    messages = sum(
        outbox_chat_drain(bot_id=bot.pk, chat_id=chat_id) for chat_id in chats
    )
    outbox = time.process_time() - started
    assert not OutboundMessage.objects.exclude(status="sent").exists()
    _report(profile, args.top)

    return {
        "updates": measured,
        "messages": messages,
        "webhook_ms_per_update": 1000 * webhook / measured,
        "outbox_ms_per_update": 1000 * outbox / measured,
        "outbox_ms_per_message": 1000 * outbox / max(messages, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=600)
    parser.add_argument("--profile", choices=["webhook", "outbox"], default=None)
    parser.add_argument("--top", type=int, default=45)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES_URL")
        or "postgres://postgres@127.0.0.1:5432",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print("BENCH_JSON " + json.dumps(_measure(args)))
        return 0

    name = f"bench_cpu_{uuid.uuid4().hex[:10]}"
    admin = f"{args.postgres.rstrip('/')}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    telegram, telegram_url = start_fake_telegram_subprocess()
    try:
        env = {
            **os.environ,
            **_environment(f"{args.postgres.rstrip('/')}/{name}", telegram_url),
        }
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
            cwd=PROJECT_ROOT,
            env=env,
            check=True,
        )
        child = [
            sys.executable,
            "-m",
            "bench.webhook_cpu",
            "--child",
            *(argv or sys.argv[1:]),
        ]
        done = subprocess.run(
            child,
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        print(done.stdout.rsplit("BENCH_JSON ", 1)[0])
        if done.returncode != 0:
            print(done.stderr[-4000:], file=sys.stderr)
            return done.returncode
        result = json.loads(done.stdout.rsplit("BENCH_JSON ", 1)[1])
        print("| phase | CPU ms |\n| --- | ---: |")
        for key in (
            "webhook_ms_per_update",
            "outbox_ms_per_update",
            "outbox_ms_per_message",
        ):
            print(f"| {key} | {result[key]:.2f} |")
        print(f"updates {result['updates']}, messages {result['messages']}")
    finally:
        telegram.terminate()
        telegram.wait(timeout=10)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)
                )
            )

    return 0


if __name__ == "__main__":
    sys.exit(main())
