"""The base application error and the API's JSON error rendering."""

import logging
from typing import Any

import psycopg
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

from botfactory.metrics import DB_UNAVAILABLE

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    """An expected failure with a stable machine-readable code."""

    status_code = 400

    def __init__(
        self, message: str, *, code: str, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.extra = extra or {}


class DatabaseUnavailableError(ApplicationError):
    status_code = 503

    def __init__(self, message: str = "The database is unavailable.") -> None:
        super().__init__(message, code="db_unavailable")


class DatabaseDeadlineError(psycopg.OperationalError):
    """The database server left a command unanswered past its deadline.

    A driver error, so that Django reports it as ``OperationalError`` like
    any other lost connection.
    """


def is_database_unavailable(exc: BaseException) -> bool:
    """Tell whether an exception means the database cannot be reached."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    # psycopg_pool raises PoolTimeout (an OperationalError subclass of psycopg,
    # which Django does not wrap) when no connection can be had in time.
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the embedded default has it too
        return False

    return isinstance(exc, psycopg.OperationalError)


def json_error(
    detail: str, *, code: str, status: int, fields: dict[str, Any] | None = None
) -> JsonResponse:
    """Build the project's JSON error body ``{"detail", "code"[, "fields"]}``."""
    body: dict[str, Any] = {"detail": detail, "code": code}
    if fields:
        body["fields"] = fields

    return JsonResponse(body, status=status)


def db_unavailable_response() -> JsonResponse:
    """Answer 503 ``db_unavailable`` and count it."""
    DB_UNAVAILABLE.inc()

    return json_error(
        "The database is unavailable; try again later.",
        code="db_unavailable",
        status=503,
    )


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render every API error as ``{"detail", "code"}`` plus ``fields``.

    Validation errors carry ``fields``: messages by field. Every 401 has the
    code ``not_authenticated``, whether the token was missing or wrong.
    """
    if isinstance(exc, ApplicationError):
        body: dict[str, Any] = {"detail": exc.message, "code": exc.code}
        body.update(exc.extra)
        return Response(body, status=exc.status_code)
    if isinstance(exc, DatabaseError) and is_database_unavailable(exc):
        DB_UNAVAILABLE.inc()
        return Response(
            {"detail": "The database is unavailable.", "code": "db_unavailable"},
            status=503,
        )
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {"detail": "The body is too large.", "code": "payload_too_large"},
            status=413,
        )

    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, drf_exceptions.ValidationError):
        response.data = {
            "detail": "The input is invalid.",
            "code": "invalid",
            "fields": exc.detail,
        }
        return response
    if isinstance(exc, drf_exceptions.AuthenticationFailed):
        response.data = {"detail": str(exc.detail), "code": "not_authenticated"}
        return response

    detail = getattr(exc, "detail", str(exc))
    code = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
    response.data = {"detail": str(detail), "code": str(code)}

    return response
