"""The database command deadline: no wait for the server lasts forever."""

import inspect
import logging
import time
from typing import Any, TypeVar

import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from psycopg.abc import PQGen
from psycopg_pool import ConnectionPool

from botfactory.errors import DatabaseDeadlineError

logger = logging.getLogger(__name__)

# DeadlineConnection overrides this internal method of psycopg (3.2 and
# later); a release that changes it must fail at start-up, not silently.
_WAIT_PARAMETERS = ["self", "gen", "interval", "timeout"]
# The pool checks a connection with an empty query before handing it out, a
# round trip per request. One the server answered this recently is trusted
# as it is (as HikariCP does); after an idle spell, or a restart that took
# longer than this, it is checked as before.
TRUSTED_SECONDS = 1.0

_Result = TypeVar("_Result")


class DeadlineConnection(psycopg.Connection[Any]):
    """A psycopg connection whose every wait for the server has a deadline.

    psycopg has no client-side timeout for a command, and a frozen server
    (SIGSTOP, a paused VM, hung storage) still acknowledges TCP, so neither
    keepalives nor ``tcp_user_timeout`` notice it: a query, commit or pool
    check in flight would hold its worker until the server runs again.
    Past ``command_timeout`` seconds the connection is closed and
    ``DatabaseDeadlineError`` (an ``OperationalError``) raised. A wait that
    psycopg gives its own timeout keeps it.
    """

    command_timeout: float | None = None
    # When the server last answered on this connection (time.monotonic).
    answered_at = 0.0

    def wait(
        self,
        gen: PQGen[_Result],
        interval: float = 0.1,
        timeout: float | None = None,
    ) -> _Result:
        deadline = self.command_timeout
        if timeout is not None or deadline is None:
            return super().wait(gen, interval, timeout)

        try:
            result = super().wait(gen, interval, deadline)
        except psycopg.errors._WaitTimeout:
            # Mid-command the protocol state is unknown, so the connection is
            # done for: closed, the pool discards it, and after a thaw the
            # server ends the session and releases its locks.
            self.close()
            logger.warning(
                "The database did not answer within %s s; connection closed.",
                deadline,
            )
            raise DatabaseDeadlineError(
                f"The database did not answer within {deadline} s."
            ) from None
        self.answered_at = time.monotonic()

        return result


def _check_unless_fresh(conn: psycopg.Connection[Any]) -> None:
    answered_at = getattr(conn, "answered_at", 0.0)
    if time.monotonic() - answered_at < TRUSTED_SECONDS:
        return

    ConnectionPool.check_connection(conn)


def database_deadline_install(seconds: float) -> None:
    """Serve ``DeadlineConnection``s with ``seconds`` from every database pool.

    Django creates its pools lazily, so this runs before the first request
    opens one. Raise ImproperlyConfigured if psycopg's ``Connection.wait`` no
    longer has the signature ``DeadlineConnection`` overrides.
    """
    if list(inspect.signature(psycopg.Connection.wait).parameters) != (
        _WAIT_PARAMETERS
    ):
        raise ImproperlyConfigured(
            "psycopg.Connection.wait changed; the database command deadline "
            "cannot be installed."
        )

    DeadlineConnection.command_timeout = seconds
    for alias in connections:
        pool = getattr(connections[alias], "pool", None)
        if pool is None:
            continue
        pool.connection_class = DeadlineConnection
        # Django gives the pool its check only with CONN_HEALTH_CHECKS.
        if getattr(pool, "_check", None) is ConnectionPool.check_connection:
            pool._check = _check_unless_fresh
