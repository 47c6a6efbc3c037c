import re
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from botfactory import health, metrics_views
from botfactory.context import context_scope, new_trace_id
from botfactory.database import database_pool_install
from botfactory.errors import db_unavailable_response, is_database_unavailable

_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_HEALTH_VIEWS: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/health": health.health,
    "/health/db": health.health_db,
    # Prometheus scrapes by IP address too, and /metrics reads no database.
    "/metrics": metrics_views.metrics_page,
}


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


class HealthCheckMiddleware:
    """Answer ``/health``, ``/health/db`` and ``/metrics`` before the host is
    validated.

    Load balancers, orchestrators and Prometheus call by IP address, which
    ``ALLOWED_HOSTS`` would turn into a 400. These pages build no URL from
    the Host header, so answering them whatever it says is safe.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = _HEALTH_VIEWS.get(request.path_info)
        if view is not None:
            return view(request)

        return self.get_response(request)


class DatabaseUnavailableMiddleware:
    """Turn a database that cannot be reached into 503 ``db_unavailable``.

    It also bounds how long a command may wait for the server (see
    ``database_pool_install``), so a frozen server ends in a 503 too.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        database_pool_install(settings.DATABASE_COMMAND_TIMEOUT)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(
        self, request: HttpRequest, exception: Exception
    ) -> HttpResponse | None:
        if is_database_unavailable(exception):
            return db_unavailable_response()

        return None
