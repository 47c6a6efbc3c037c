"""The database connections: a deadline on every wait, a cheap pool check."""

import inspect
import logging
import select
import time
import weakref
from typing import Any, TypeVar

import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from psycopg.abc import PQGen
from psycopg.pq import ConnStatus, TransactionStatus
from psycopg_pool import ConnectionPool

from botfactory.errors import DatabaseDeadlineError

logger = logging.getLogger(__name__)

# DeadlineConnection overrides this internal method of psycopg (3.2 and
# later); a release that changes it must fail at start-up, not silently.
_WAIT_PARAMETERS = ["self", "gen", "interval", "timeout"]

_Result = TypeVar("_Result")

# A pooled connection whose last full check is older than this gets one on
# its next checkout: a link dropped without a word (a NAT's idle timeout, a
# failover) is found before a request uses it.
FULL_CHECK_SECONDS = 10.0
_checked_at: "weakref.WeakKeyDictionary[psycopg.Connection[Any], float]" = (
    weakref.WeakKeyDictionary()
)


def pooled_connection_check(conn: psycopg.Connection[Any]) -> None:
    """Make sure a pooled connection works before it is handed out; raise if not.

    The pool's own check sends an empty query on every checkout, a round trip
    per request. Here, a connection fully checked within the last
    ``FULL_CHECK_SECONDS``, idle, and with nothing to read passes as it is:
    a server that restarted or ended the session has closed the socket or
    written its error to it, and either makes it readable. Anything else gets
    the empty query.
    """
    checked = _checked_at.get(conn)
    now = time.monotonic()
    if (
        checked is not None
        and now - checked < FULL_CHECK_SECONDS
        and conn.pgconn.status == ConnStatus.OK
        and conn.pgconn.transaction_status == TransactionStatus.IDLE
        and not _readable(conn.pgconn.socket)
    ):
        return

    ConnectionPool.check_connection(conn)
    _checked_at[conn] = now


# The checks a pool may hold before (Django's) and after the install.
_POOL_CHECKS = (ConnectionPool.check_connection, pooled_connection_check)


def _readable(fd: int) -> bool:
    # poll, unlike select, takes descriptors past 1024.
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


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
            return super().wait(gen, interval, deadline)
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


def database_pool_install(seconds: float) -> None:
    """Serve ``DeadlineConnection``s with ``seconds`` from every database pool,
    checked at checkout by ``pooled_connection_check``.

    Django creates its pools lazily, so this runs before the first request
    opens one; Django gives a pool no way to name its check, so it is set on
    the pool. Raise ImproperlyConfigured if psycopg's ``Connection.wait`` no
    longer has the signature ``DeadlineConnection`` overrides, or a pool no
    longer keeps its check where this sets it.
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
        if getattr(pool, "_check", None) not in _POOL_CHECKS:
            raise ImproperlyConfigured(
                "The database pool keeps no check where expected (is "
                "CONN_HEALTH_CHECKS on?); the pool check cannot be installed."
            )
        pool._check = pooled_connection_check
