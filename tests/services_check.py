"""Stop with one clear line when PostgreSQL or Redis does not answer."""

import os
import sys

import psycopg
import redis
from psycopg.conninfo import make_conninfo


def _check_postgresql(url: str) -> str | None:
    # The suite creates its own test databases, so only the server matters.
    conninfo = make_conninfo(
        url.replace("postgresql://", "postgres://", 1), dbname="postgres"
    )
    try:
        with psycopg.connect(conninfo, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer"
        return f"PostgreSQL does not answer at {_where(url)}: {reason}"

    return None


def _check_redis(url: str) -> str | None:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()
    except redis.RedisError as exc:
        return f"Redis does not answer at {_where(url)}: {exc}"

    return None


def _where(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or ''}".rstrip(":")


def main() -> int:
    problems = [
        problem
        for problem in (
            _check_postgresql(os.environ["DATABASE_URL"]),
            _check_redis(os.environ["REDIS_URL"]),
        )
        if problem
    ]
    for problem in problems:
        print(problem, file=sys.stderr)

    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
