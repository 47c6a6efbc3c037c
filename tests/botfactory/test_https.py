"""HTTPS behind a TLS-ending proxy: redirects, their exemptions, HSTS."""

import json
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from bots.models import Bot, ProcessedUpdate
from tests.botfactory.test_settings import _settings
from tests.bots.conftest import DEMO_SECRET, fixture_update
from tests.docker.conftest import production_env

HSTS = "max-age=31536000; includeSubDomains; preload"


@pytest.fixture
def redirecting(settings: Any) -> Client:
    """A client for the app with the redirect to HTTPS on, as in production."""
    settings.SECURE_SSL_REDIRECT = True

    return Client()


def _over_http(client: Client, method: str, path: str, **kwargs: Any) -> Any:
    """Send a request as the proxy forwards one that arrived by plain HTTP."""
    headers = {"X-Forwarded-Proto": "http", **kwargs.pop("headers", {})}

    return getattr(client, method)(path, headers=headers, **kwargs)


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/admin/", "/admin/login/", "/bots/1/reload"])
def test_plain_http_is_redirected_to_https(redirecting: Client, path: str) -> None:
    response = _over_http(redirecting, "get", path)

    assert response.status_code == 301
    assert response["Location"] == f"https://testserver{path}"


@pytest.mark.django_db
def test_https_through_the_proxy_is_served_with_hsts(redirecting: Client) -> None:
    response = redirecting.get("/admin/login/", headers={"X-Forwarded-Proto": "https"})

    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == HSTS
    assert response.cookies["csrftoken"]["secure"] is True


@pytest.mark.django_db
def test_health_probes_are_answered_over_plain_http(redirecting: Client) -> None:
    health = _over_http(redirecting, "get", "/health")
    health_db = _over_http(redirecting, "get", "/health/db")

    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert health_db.status_code == 200
    assert "Location" not in health_db


@pytest.mark.django_db
def test_metrics_are_answered_over_plain_http(redirecting: Client) -> None:
    response = _over_http(redirecting, "get", "/metrics")

    assert response.status_code == 200
    assert "Location" not in response
    assert b"botfactory_webhook_duration_seconds_bucket" in response.content


def test_the_webhook_is_processed_over_plain_http(demo_bot: Bot, settings: Any) -> None:
    # Given a proxy that (wrongly) forwards Telegram's call as plain HTTP
    settings.SECURE_SSL_REDIRECT = True
    update = fixture_update("private_start")

    # When Telegram posts an update
    response = _over_http(
        Client(),
        "post",
        f"/telegram/{demo_bot.pk}/webhook",
        data=json.dumps(update),
        content_type="application/json",
        headers={"X-Telegram-Bot-Api-Secret-Token": DEMO_SECRET},
    )

    # Then it is processed, not redirected (Telegram does not follow one)
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert list(
        ProcessedUpdate.objects.filter(bot=demo_bot).values_list("update_id", flat=True)
    ) == [update["update_id"]]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, [True, 31536000, True, True, True, True]),
        ({"SECURE_SSL_REDIRECT": "0"}, [False, 31536000, True, True, True, True]),
        (
            {"SECURE_HSTS_SECONDS": "3600", "SECURE_HSTS_PRELOAD": "no"},
            [True, 3600, True, False, True, True],
        ),
        ({"DEBUG": "1"}, [False, 0, True, True, False, False]),
    ],
)
def test_https_settings_follow_debug_and_the_environment(
    tmp_path: Path, extra: dict[str, str], expected: list[Any]
) -> None:
    names = (
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_HSTS_PRELOAD",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
    )

    values = _settings(production_env(tmp_path, **extra), *names)

    assert [values[name] for name in names] == expected
