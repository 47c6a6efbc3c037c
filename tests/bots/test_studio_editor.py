import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.staticfiles import finders
from django.core.management import CommandError, call_command
from django.test import Client
from jsonschema import Draft202012Validator

from bots.models import AuditEntry, Bot, BotAccess, SpecVersion
from i18n.models import Translation
from tests.bots.test_admin import SMALL_SPEC as SPEC
from tests.factories import BotFactory

pytestmark = pytest.mark.django_db

STATIC = Path(settings.BASE_DIR) / "bots" / "static"
DEMO_SPEC = Path(settings.BASE_DIR) / "bots" / "demo" / "spec.json"
NODE_TYPES = ["llm.v1", "menu.v1", "reply_template.v1", "sql_exec.v1", "wizard.v1"]


def _spec(**nodes: Any) -> dict[str, Any]:
    spec = json.loads(json.dumps(SPEC))
    spec["nodes"].update(nodes)

    return spec


def _translated_bot(**fields: Any) -> Bot:
    bot = BotFactory.create(**fields)
    for key in ("main.text", "main.again", "lonely.text"):
        Translation.objects.create(
            bot=bot, locale="en", key=key, forms={"other": key.title()}
        )

    return bot


def _check_url(bot: Bot) -> str:
    return f"/admin/bots/bot/{bot.pk}/studio/check/"


def _post(client: Client, url: str, text: str) -> Any:
    return client.post(url, data=text, content_type="application/json")


def _staff(username: str, *, bot: Bot | None = None, level: int = 0) -> Any:
    user = get_user_model().objects.create_user(
        username=username, password="x", is_staff=True
    )
    if bot is not None and level:
        BotAccess.objects.create(bot=bot, user=user, level=level)

    return user


def _client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)

    return client


def _snapshot(bot: Bot) -> tuple[Any, ...]:
    fresh = Bot.objects.get(pk=bot.pk)

    return (
        fresh.draft_spec,
        fresh.live_version_id,
        fresh.cache_revision,
        SpecVersion.objects.filter(bot=bot).count(),
        AuditEntry.objects.count(),
    )


def _node_union(schema: dict[str, Any]) -> dict[str, Any]:
    union: dict[str, Any] = schema["properties"]["nodes"]["patternProperties"][
        "^[a-z][a-z0-9_]{0,31}$"
    ]

    return union


def test_spec_schema_is_served_without_a_token_with_the_node_types() -> None:
    response = Client().get("/api/spec-schema")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    schema = response.json()
    assert sorted(schema) == [
        "$defs",
        "additionalProperties",
        "description",
        "properties",
        "required",
        "title",
        "type",
    ]
    assert schema["required"] == ["start", "default_locale", "locales", "nodes"]
    assert _node_union(schema)["properties"] == {
        "type": {"enum": NODE_TYPES, "type": "string"}
    }
    assert sorted(_node_union(schema)["discriminator"]["mapping"]) == NODE_TYPES


def test_spec_schema_lists_the_step_types_of_a_wizard() -> None:
    schema = Client().get("/api/spec-schema").json()

    steps = schema["$defs"]["WizardNode"]["properties"]["steps"]["items"]

    assert steps["properties"]["type"]["enum"] == [
        "choice",
        "date",
        "email",
        "integer",
        "number",
        "phone",
        "text",
        "yes_no",
    ]


def test_spec_schema_accepts_the_demo_spec_and_refuses_an_unknown_node_type() -> None:
    schema = Client().get("/api/spec-schema").json()
    validator = Draft202012Validator(schema)
    demo = json.loads(DEMO_SPEC.read_text(encoding="utf-8"))
    broken = json.loads(json.dumps(demo))
    broken["nodes"]["main"]["type"] = "menu.v9"

    Draft202012Validator.check_schema(schema)
    assert list(validator.iter_errors(demo)) == []
    assert sorted(
        (list(error.absolute_path), error.validator)
        for error in validator.iter_errors(broken)
    ) == [(["nodes", "main"], "oneOf"), (["nodes", "main", "type"], "enum")]


def test_spec_schema_ignores_a_bad_token() -> None:
    response = Client().get(
        "/api/spec-schema", headers={"Authorization": "Token not-a-token"}
    )

    assert response.status_code == 200
    assert response.json()["title"] == "Spec"


def test_spec_schema_is_documented_as_public_in_the_openapi_schema() -> None:
    document = Client().get("/api/schema", {"format": "json"}).json()

    operation = document["paths"]["/api/spec-schema"]["get"]
    assert operation["operationId"] == "spec_schema"
    assert "security" not in operation
    assert list(operation["responses"]) == ["200"]
    assert list(operation["responses"]["200"]["content"]) == ["application/json"]


def test_spec_schema_command_writes_the_api_body_to_stdout() -> None:
    body = Client().get("/api/spec-schema").content.decode()
    out = StringIO()

    call_command("spec_schema", stdout=out)

    assert out.getvalue() == body
    assert body.endswith("}\n")
    assert json.loads(body) == json.loads(json.dumps(json.loads(body), sort_keys=True))
    assert list(json.loads(body)) == sorted(json.loads(body))


def test_spec_schema_command_writes_a_file_and_says_so(tmp_path: Path) -> None:
    body = Client().get("/api/spec-schema").content.decode()
    target = tmp_path / "spec.schema.json"
    out = StringIO()

    call_command("spec_schema", "--output", str(target), stdout=out)

    assert target.read_text(encoding="utf-8") == body
    assert out.getvalue() == (
        f"Wrote the spec schema to {target} ({len(body)} characters).\n"
    )


def test_spec_schema_command_refuses_an_unwritable_file(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "spec.schema.json"

    with pytest.raises(CommandError) as raised:
        call_command("spec_schema", "--output", str(target), stdout=StringIO())

    assert str(raised.value) == f"Cannot write {target}: No such file or directory."
    assert not target.parent.exists()


def test_check_of_a_valid_draft_finds_no_problems(admin_client: Client) -> None:
    bot = _translated_bot(draft_spec={})
    before = _snapshot(bot)

    response = _post(admin_client, _check_url(bot), json.dumps(SPEC, indent=2))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"errors": [], "warnings": []}
    assert _snapshot(bot) == before


def test_check_of_an_empty_draft_finds_no_problems(admin_client: Client) -> None:
    bot = BotFactory.create()

    blank = _post(admin_client, _check_url(bot), "  \n")
    empty = _post(admin_client, _check_url(bot), "{}")

    assert blank.json() == empty.json() == {"errors": [], "warnings": []}


def test_check_gives_an_invalid_node_its_exact_path_and_message(
    admin_client: Client,
) -> None:
    bot = BotFactory.create(draft_spec=SPEC)
    before = _snapshot(bot)
    spec = _spec(main={**SPEC["nodes"]["main"], "page_size": 99})
    spec["nodes"]["main"]["rows"][0][0]["goto"] = "main"

    response = _post(admin_client, _check_url(bot), json.dumps(spec))

    assert response.status_code == 200
    assert response.json() == {
        "errors": [
            {
                "path": "nodes.main.page_size",
                "message": "Input should be less than or equal to 20",
                "code": "spec_invalid",
            }
        ],
        "warnings": [],
    }
    assert _snapshot(bot) == before


def test_check_lists_an_unknown_node_type_and_a_missing_field(
    admin_client: Client,
) -> None:
    bot = BotFactory.create()
    spec = _spec(other={"type": "menu.v9", "text": "x"})
    del spec["locales"]

    response = _post(admin_client, _check_url(bot), json.dumps(spec))

    assert response.json()["errors"] == [
        {"path": "locales", "message": "Field required", "code": "spec_invalid"},
        {
            "path": "nodes.other.type",
            "message": "Unknown type 'menu.v9'; expected one of: 'llm.v1', "
            "'menu.v1', 'reply_template.v1', 'sql_exec.v1', 'wizard.v1'",
            "code": "spec_invalid",
        },
    ]


def test_check_gives_a_lint_error_its_path(admin_client: Client) -> None:
    bot = BotFactory.create()
    spec = _spec()
    spec["nodes"]["main"]["rows"][0][0]["goto"] = "nowhere"

    response = _post(admin_client, _check_url(bot), json.dumps(spec))

    assert response.json() == {
        "errors": [
            {
                "path": "nodes.main.rows[0][0].goto",
                "message": "There is no node 'nowhere'.",
                "code": "spec_invalid",
            }
        ],
        "warnings": [],
    }


def test_check_lists_warnings_with_their_path_and_code(admin_client: Client) -> None:
    bot = _translated_bot()
    lonely = {
        "type": "menu.v1",
        "text": "lonely.text",
        "rows": [[{"label": "main.again", "goto": "main"}]],
    }

    response = _post(admin_client, _check_url(bot), json.dumps(_spec(lonely=lonely)))

    assert response.json() == {
        "errors": [],
        "warnings": [
            {
                "path": "nodes.lonely",
                "message": "No command, link or node leads here.",
                "code": "unreachable_node",
            }
        ],
    }


def test_check_warns_of_translations_the_bot_lacks(admin_client: Client) -> None:
    bot = BotFactory.create()

    response = _post(admin_client, _check_url(bot), json.dumps(SPEC))

    assert response.json() == {
        "errors": [],
        "warnings": [
            {
                "path": "nodes.main.rows[0][0].label",
                "message": "The translation 'main.again' is missing in: en.",
                "code": "missing_translation",
            },
            {
                "path": "nodes.main.text",
                "message": "The translation 'main.text' is missing in: en.",
                "code": "missing_translation",
            },
        ],
    }


def test_check_of_broken_json_answers_at_the_root_with_its_position(
    admin_client: Client,
) -> None:
    bot = BotFactory.create(draft_spec=SPEC)
    before = _snapshot(bot)
    text = '{\n  "start": "main",\n  "nodes": {,\n}'

    response = _post(admin_client, _check_url(bot), text)

    assert response.status_code == 200
    assert response.json() == {
        "errors": [
            {
                "path": "",
                "message": "Not valid JSON: Expecting property name enclosed in "
                "double quotes at line 3, column 13.",
                "code": "json_invalid",
                "line": 3,
                "column": 13,
            }
        ],
        "warnings": [],
    }
    assert _snapshot(bot) == before


def test_check_of_a_list_says_the_spec_must_be_an_object(
    admin_client: Client,
) -> None:
    bot = BotFactory.create()

    response = _post(admin_client, _check_url(bot), "[1, 2]")

    assert response.json() == {
        "errors": [
            {
                "path": "",
                "message": "The spec must be a JSON object.",
                "code": "spec_invalid",
            }
        ],
        "warnings": [],
    }


def test_check_refuses_a_value_the_database_cannot_store(
    admin_client: Client,
) -> None:
    bot = BotFactory.create()
    text = json.dumps(SPEC).replace('"main.text"', '"main\\u0000text"')

    response = _post(admin_client, _check_url(bot), text)

    assert response.json()["errors"] == [
        {
            "path": "nodes.main.text",
            "message": "A NUL character, a lone surrogate or a number out of "
            "range cannot be stored.",
            "code": "unstorable",
        }
    ]


def test_check_refuses_a_body_that_is_not_utf8(admin_client: Client) -> None:
    bot = BotFactory.create()

    response = admin_client.post(
        _check_url(bot), data=b'{"start": "\xff"}', content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json() == {
        "detail": "The draft must be UTF-8 text.",
        "code": "encoding_invalid",
    }


def test_check_refuses_a_body_over_the_upload_limit(
    admin_client: Client, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    bot = BotFactory.create()

    response = _post(admin_client, _check_url(bot), json.dumps({"x": "y" * 2000}))

    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_check_needs_edit_access_and_changes_nothing_when_refused() -> None:
    bot = BotFactory.create(draft_spec=SPEC)
    viewer = _client_for(_staff("viewer", bot=bot, level=BotAccess.Level.VIEW))
    stranger = _client_for(_staff("stranger"))
    before = _snapshot(bot)

    responses = [
        _post(client, _check_url(bot), json.dumps(_spec()))
        for client in (viewer, stranger)
    ]

    assert [response.status_code for response in responses] == [403, 403]
    assert [response.json() for response in responses] == [
        {"detail": "You may not edit this bot.", "code": "permission_denied"}
    ] * 2
    assert _snapshot(bot) == before


def test_check_is_open_to_an_editor_of_the_bot() -> None:
    bot = _translated_bot()
    editor = _client_for(_staff("editor", bot=bot, level=BotAccess.Level.EDIT))

    response = _post(editor, _check_url(bot), json.dumps(SPEC))

    assert (response.status_code, response.json()) == (
        200,
        {"errors": [], "warnings": []},
    )


def test_check_of_an_unknown_bot_is_a_json_404(admin_client: Client) -> None:
    response = _post(admin_client, "/admin/bots/bot/999999/studio/check/", "{}")

    assert response.status_code == 404
    assert response.json() == {"detail": "There is no such bot.", "code": "not_found"}


def test_check_answers_get_with_405(admin_client: Client) -> None:
    bot = BotFactory.create()

    responses = [
        admin_client.get(_check_url(bot)),
        admin_client.get("/admin/bots/bot/studio/check/"),
    ]

    for response in responses:
        assert response.status_code == 405
        assert response["Allow"] == "POST"
        assert response.json() == {
            "detail": "Send the draft with POST.",
            "code": "method_not_allowed",
        }


def test_check_sends_anonymous_visitors_to_the_login_page() -> None:
    bot = BotFactory.create()

    response = _post(Client(), _check_url(bot), json.dumps(SPEC))

    assert response.status_code == 302
    assert response["Location"] == (
        f"/admin/login/?next=/admin/bots/bot/{bot.pk}/studio/check/"
    )


def test_check_keeps_csrf_protection() -> None:
    bot = _translated_bot()
    admin = get_user_model().objects.create_superuser("root", password="x")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)

    refused = _post(client, _check_url(bot), json.dumps(SPEC))
    client.get(f"/admin/bots/bot/{bot.pk}/change/")
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    accepted = client.post(
        _check_url(bot),
        data=json.dumps(SPEC),
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )

    assert refused.status_code == 403
    assert (accepted.status_code, accepted.json()) == (
        200,
        {"errors": [], "warnings": []},
    )


def test_check_of_a_new_bot_needs_the_add_permission() -> None:
    user = _staff("newcomer")
    client = _client_for(user)
    before = Bot.objects.count()

    refused = _post(client, "/admin/bots/bot/studio/check/", json.dumps(SPEC))
    user.user_permissions.add(Permission.objects.get(codename="add_bot"))
    allowed = _post(
        _client_for(get_user_model().objects.get(pk=user.pk)),
        "/admin/bots/bot/studio/check/",
        json.dumps(_spec(main={"type": "menu.v1", "text": "t", "rows": []})),
    )

    assert (refused.status_code, refused.json()) == (
        403,
        {"detail": "You may not add bots.", "code": "permission_denied"},
    )
    assert allowed.status_code == 200
    assert allowed.json()["errors"] == [
        {
            "path": "nodes.main",
            "message": "A menu needs rows or items",
            "code": "spec_invalid",
        }
    ]
    assert Bot.objects.count() == before


def test_change_and_add_forms_load_the_vendored_editor(admin_client: Client) -> None:
    bot = BotFactory.create(draft_spec=SPEC)

    pages = [
        admin_client.get(f"/admin/bots/bot/{bot.pk}/change/").content.decode(),
        admin_client.get("/admin/bots/bot/add/").content.decode(),
    ]

    for page, check_url in zip(
        pages, [_check_url(bot), "/admin/bots/bot/studio/check/"], strict=True
    ):
        assert (
            '<script src="/static/studio/vendor/jsoneditor/jsoneditor.min.js" defer>'
            "</script>"
        ) in page
        assert '<script src="/static/studio/editor.js" defer' in page
        assert f'data-check-url="{check_url}"' in page
        assert 'data-schema-url="/api/spec-schema"' in page
        assert (
            '<link rel="stylesheet" '
            'href="/static/studio/vendor/jsoneditor/jsoneditor.min.css">'
        ) in page
        assert 'id="id_draft_spec"' in page


def test_the_vendored_editor_and_its_licence_are_static_files() -> None:
    vendor = STATIC / "studio" / "vendor" / "jsoneditor"
    lock = json.loads(
        (Path(settings.BASE_DIR) / "bots/studio/frontend/package-lock.json").read_text()
    )

    script = (vendor / "jsoneditor.min.js").read_text(encoding="utf-8")
    version = lock["packages"]["node_modules/jsoneditor"]["version"]
    assert f"@version {version}" in script
    assert "Apache License" in (vendor / "LICENSE").read_text(encoding="utf-8")
    assert (vendor / "jsoneditor.min.css").stat().st_size > 0
    assert (vendor / "img" / "jsoneditor-icons.svg").stat().st_size > 0
    editor = (STATIC / "studio" / "editor.js").read_text(encoding="utf-8")
    assert "#spec-editor" in editor
    assert "#spec-problems" in editor


def test_the_editor_files_are_found_as_static_files() -> None:
    names = [
        "studio/editor.js",
        "studio/studio.css",
        "studio/vendor/jsoneditor/jsoneditor.min.js",
        "studio/vendor/jsoneditor/jsoneditor.min.css",
    ]

    found = [finders.find(name) for name in names]

    assert found == [str(STATIC / name) for name in names]
