import re
from typing import Any

import pytest
import yaml
from django.contrib.staticfiles import finders
from django.test import Client
from drf_spectacular.validation import validate_schema

# Every endpoint of the REST API, as OpenAPI names it.
ENDPOINTS = {
    ("/bots/{id}/reload", "post"),
    ("/bots/{id}/versions", "post"),
    ("/bots/{id}/i18n", "get"),
    ("/bots/{id}/i18n/{locale}/{key}", "put"),
    ("/bots/{id}/i18n/coverage", "get"),
    ("/bots/{id}/users/{telegram_user_id}/data", "get"),
    ("/bots/{id}/users/{telegram_user_id}/data", "delete"),
    ("/api/spec-schema", "get"),
}
# Describes the spec language, nothing of any bot: served without a token.
PUBLIC_ENDPOINTS = {("/api/spec-schema", "get")}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture
def schema(db: None) -> dict[str, Any]:
    response = Client().get("/api/schema", {"format": "json"})
    assert response.status_code == 200
    document: dict[str, Any] = response.json()

    return document


def test_schema_is_a_valid_openapi_3_document(schema: dict[str, Any]) -> None:
    validate_schema(schema)

    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "BotFactory API"


def test_schema_lists_every_endpoint_with_its_method_and_nothing_else(
    schema: dict[str, Any],
) -> None:
    operations = {
        (path, method)
        for path, item in schema["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }

    assert operations == ENDPOINTS


def test_schema_asks_every_endpoint_for_a_token(schema: dict[str, Any]) -> None:
    scheme = schema["components"]["securitySchemes"]["knoxApiToken"]
    securities = [
        operation["security"]
        for item in schema["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and "security" in operation
    ]

    assert (scheme["type"], scheme["in"], scheme["name"]) == (
        "apiKey",
        "header",
        "Authorization",
    )
    assert securities == [[{"knoxApiToken": []}]] * len(ENDPOINTS - PUBLIC_ENDPOINTS)


def test_schema_is_served_as_yaml_too(db: None) -> None:
    response = Client().get("/api/schema")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    document = yaml.safe_load(response.content)
    validate_schema(document)


def test_schema_ignores_a_bad_token(db: None) -> None:
    response = Client().get(
        "/api/schema", {"format": "json"}, headers={"Authorization": "Token bad"}
    )

    assert response.status_code == 200


def test_docs_page_points_at_the_schema(db: None) -> None:
    response = Client().get("/api/docs")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"/api/schema" in response.content


def test_docs_page_loads_its_assets_from_this_server_only(db: None) -> None:
    page = Client().get("/api/docs").content.decode()

    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sorted(assets) == [
        "/static/drf_spectacular_sidecar/swagger-ui-dist/favicon-32x32.png",
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-standalone-preset.js",
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css",
    ]
    assert "cdn" not in page.lower()
    for asset in assets:
        found = finders.find(asset.removeprefix("/static/"))
        assert isinstance(found, str), asset
