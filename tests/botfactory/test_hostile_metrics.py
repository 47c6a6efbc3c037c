"""``GET /metrics`` under hostile requests: forged client addresses,
malformed credentials and Accept headers, other methods.

Each refusal is checked to leak no sample; the forged-address checks also
run through gunicorn, which sets the peer address the view trusts.
"""

import base64
from typing import Any

import httpx
import pytest
from django.test import Client

from tests.bots.hostile_server import gunicorn

CREDENTIALS = "scraper:s3cret-Pa55"
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
FORGED_HEADERS = {
    "X-Forwarded-For": "10.1.0.1",
    "X-Real-IP": "10.1.0.1",
    "Forwarded": "for=10.1.0.1",
    "X-Client-IP": "10.1.0.1",
}


def _basic(credentials: bytes) -> str:
    return "Basic " + base64.b64encode(credentials).decode()


@pytest.mark.parametrize(
    "accept",
    [
        "application/openmetrics-text; version=abc",
        "application/openmetrics-text; version=1.x.0",
        "text/plain; version=abc",
        "text/plain; version=1.0.beta",
    ],
)
def test_an_accept_header_with_a_malformed_version_gets_the_text_format(
    accept: str,
) -> None:
    # when a scraper asks with a version prometheus_client cannot compare
    response = Client(raise_request_exception=False).get("/metrics", HTTP_ACCEPT=accept)

    # then it gets the classic text format, not a 500
    assert response.status_code == 200
    assert response["Content-Type"] == TEXT_FORMAT
    assert b"# TYPE botfactory_webhook_duration_seconds histogram" in response.content


def test_an_ipv4_peer_on_a_dual_stack_socket_matches_its_ipv4_block(
    settings: Any,
) -> None:
    # given an allow list of IPv4 blocks and one IPv6 block
    settings.METRICS_ALLOWED_IPS = ["10.1.0.0/16", "2001:db8::/32"]
    client = Client()

    # when peers arrive as IPv4-mapped IPv6 addresses (a listener on [::])
    statuses = {
        address: client.get("/metrics", REMOTE_ADDR=address).status_code
        for address in ("::ffff:10.1.2.3", "::ffff:10.2.0.1", "2001:db8::5")
    }

    # then the mapped address counts as the IPv4 one, and only inside its block
    assert statuses == {
        "::ffff:10.1.2.3": 200,
        "::ffff:10.2.0.1": 403,
        "2001:db8::5": 200,
    }


@pytest.mark.parametrize(
    "remote_addr",
    ["203.0.113.9", "", "not-an-address", "10.1.0.1, 10.1.0.2", "10.1.0.1:443"],
)
def test_forged_or_garbled_client_addresses_are_refused(
    settings: Any, remote_addr: str
) -> None:
    # given an allow list the peer is not in
    settings.METRICS_ALLOWED_IPS = ["10.1.0.0/16"]
    # when it claims a listed address in every forwarding header there is
    response = Client().get("/metrics", headers=FORGED_HEADERS, REMOTE_ADDR=remote_addr)

    # then only the connecting address counts
    assert response.status_code == 403
    assert response.content == b"Forbidden.\n"


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic",
        "Basic ",
        "Basic ÿþ",
        "Basic " + "A" * 65_536,
        _basic(CREDENTIALS.encode()) + "\x00",
        _basic(CREDENTIALS.encode() + b"\x00"),
        _basic(CREDENTIALS.upper().encode()),
        _basic(b"scraper"),
        _basic(b":" + CREDENTIALS.encode()),
        "Digest " + base64.b64encode(CREDENTIALS.encode()).decode(),
        "Token " + CREDENTIALS,
        base64.b64encode(CREDENTIALS.encode()).decode(),
    ],
)
def test_malformed_or_wrong_credentials_get_a_401_and_no_samples(
    settings: Any, authorization: str
) -> None:
    settings.METRICS_BASIC_AUTH = CREDENTIALS

    response = Client(raise_request_exception=False).get(
        "/metrics", HTTP_AUTHORIZATION=authorization
    )

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Basic realm="metrics", charset="UTF-8"'
    assert response.content == b"Authentication required.\n"


def test_credentials_in_any_scheme_case_and_padding_of_spaces_are_accepted(
    settings: Any,
) -> None:
    settings.METRICS_BASIC_AUTH = "scraper:пароль"
    encoded = base64.b64encode("scraper:пароль".encode()).decode()

    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"bAsIc   {encoded}  ")

    assert response.status_code == 200
    assert b"botfactory_webhook_rejected_total" in response.content


@pytest.mark.parametrize("method", ["put", "patch", "delete", "options", "trace"])
def test_other_methods_are_405_without_samples_even_when_protected(
    settings: Any, method: str
) -> None:
    settings.METRICS_BASIC_AUTH = CREDENTIALS

    response = getattr(Client(), method)(
        "/metrics", HTTP_AUTHORIZATION=_basic(CREDENTIALS.encode())
    )

    assert (response.status_code, response["Allow"]) == (405, "GET, HEAD")
    assert b"botfactory_" not in response.content


def test_head_without_credentials_is_refused(settings: Any) -> None:
    settings.METRICS_BASIC_AUTH = CREDENTIALS

    response = Client().head("/metrics")

    assert response.status_code == 401


def _scrape(url: str) -> list[int]:
    forged = httpx.get(f"{url}/metrics", headers=FORGED_HEADERS, timeout=10.0)
    plain = httpx.get(f"{url}/metrics", timeout=10.0)

    return [forged.status_code, plain.status_code]


def test_gunicorn_keeps_the_peer_address_whatever_the_forwarding_headers_say() -> None:
    # given the real server, first with loopback outside the allow list
    with gunicorn(workers=1, env={"METRICS_ALLOWED_IPS": "10.1.0.0/16"}) as url:
        outside = _scrape(url)
    # and then with loopback inside it
    with gunicorn(workers=1, env={"METRICS_ALLOWED_IPS": "127.0.0.0/8"}) as url:
        inside = _scrape(url)

    # then forged headers neither admit the outsider nor lock out the insider
    assert outside == [403, 403]
    assert inside == [200, 200]
