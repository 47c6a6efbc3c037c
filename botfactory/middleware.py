import re
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from botfactory.context import context_scope, new_trace_id
from botfactory.errors import db_unavailable_response, is_database_unavailable

_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")


class RequestContextMiddleware:
    """Give every request a trace id (from ``X-Request-ID`` or a new one)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        supplied = request.headers.get("X-Request-ID", "")
        # fullmatch, since "$" also matches before a final newline.
        trace_id = supplied if _REQUEST_ID_RE.fullmatch(supplied) else new_trace_id()
        with context_scope(trace_id=trace_id):
            response = self.get_response(request)
        response["X-Request-ID"] = trace_id

        return response


class DatabaseUnavailableMiddleware:
    """Turn a database that cannot be reached into 503 ``db_unavailable``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(
        self, request: HttpRequest, exception: Exception
    ) -> HttpResponse | None:
        if is_database_unavailable(exception):
            return db_unavailable_response()

        return None
