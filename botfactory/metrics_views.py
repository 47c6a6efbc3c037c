"""``GET /metrics``: the Prometheus exposition of this process or of all of
them.

Under several gunicorn workers every process writes its samples to files in
``PROMETHEUS_MULTIPROC_DIR`` (see ``docker/gunicorn.conf.py``) and whichever
worker is scraped merges them all. The page reads those files and nothing
else, so it keeps answering while the database is down.
"""

import base64
import binascii
import hmac
import ipaddress
import logging
import os
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe
from django_prometheus import middleware
from django_prometheus.utils import Time
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger(__name__)

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def metrics_registry() -> CollectorRegistry:
    """Return the registry to expose: every process's files, or this process."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return REGISTRY

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)

    return registry


def _client_allowed(request: HttpRequest, networks: list[IpNetwork]) -> bool:
    if not networks:
        return True
    # REMOTE_ADDR is the peer that connected; a forwarded header could be
    # written by anyone, so it is not trusted here.
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    # A dual-stack listener reports an IPv4 peer as ::ffff:a.b.c.d, which no
    # IPv4 block would contain.
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None

    return any(
        address in network or (mapped is not None and mapped in network)
        for network in networks
    )


def _credentials_valid(request: HttpRequest, expected: str) -> bool:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        supplied = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False

    return hmac.compare_digest(supplied, expected.encode("utf-8"))


def _forbidden() -> HttpResponse:
    return HttpResponse(
        "Forbidden.\n", status=403, content_type="text/plain; charset=utf-8"
    )


def _unauthorized() -> HttpResponse:
    response = HttpResponse(
        "Authentication required.\n",
        status=401,
        content_type="text/plain; charset=utf-8",
    )
    response["WWW-Authenticate"] = 'Basic realm="metrics", charset="UTF-8"'

    return response


@lru_cache(maxsize=8)
def _networks(values: tuple[str, ...]) -> list[IpNetwork]:
    # Settings checked these at start-up.
    return [ipaddress.ip_network(value, strict=False) for value in values]


@require_safe
def metrics_page(request: HttpRequest) -> HttpResponse:
    """Answer the Prometheus exposition of every process of this server.

    Served by ``HealthCheckMiddleware`` before the host is validated (a
    scraper calls by IP address) and before anything that could touch the
    database. Open unless ``METRICS_ALLOWED_IPS`` (403 for another client)
    or ``METRICS_BASIC_AUTH`` (401 without the right credentials) is set.
    """
    if not _client_allowed(request, _networks(tuple(settings.METRICS_ALLOWED_IPS))):
        return _forbidden()
    credentials = settings.METRICS_BASIC_AUTH
    if credentials and not _credentials_valid(request, credentials):
        return _unauthorized()

    # The text format Prometheus has always read, or OpenMetrics if asked.
    try:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    except (TypeError, ValueError):
        # prometheus_client compares a version like "abc" with numbers.
        encoder, content_type = choose_encoder("")
    response = HttpResponse(encoder(metrics_registry()), content_type=content_type)
    response["Cache-Control"] = "no-store"

    return response


class PrometheusAfterMiddleware(middleware.PrometheusAfterMiddleware):
    """django-prometheus's own, except that a malformed Content-Length is
    the view's to refuse (400), not a 500 here."""

    def process_request(self, request: HttpRequest) -> None:
        try:
            super().process_request(request)
        except ValueError:
            # Only the body-size sample, taken last, is lost.
            request.prometheus_after_middleware_event = Time()  # type: ignore[attr-defined]
