"""The database command deadline: no wait for the server lasts forever."""

import inspect
import logging
from typing import Any, TypeVar

import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from psycopg.abc import PQGen

from botfactory.errors import DatabaseDeadlineError

logger = logging.getLogger(__name__)

# DeadlineConnection overrides this internal method of psycopg (3.2 and
# later); a release that changes it must fail at start-up, not silently.
_WAIT_PARAMETERS = ["self", "gen", "interval", "timeout"]

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
        if pool is not None:
            pool.connection_class = DeadlineConnection
