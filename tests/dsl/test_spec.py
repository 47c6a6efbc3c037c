import json
from pathlib import Path
from typing import Any

import pytest

from dsl import SpecErrorItem, SpecInvalidError, spec_json_schema, spec_validate

DEMO_SPEC = Path(__file__).resolve().parents[2] / "bots" / "demo" / "spec.json"


def _errors(source):
    with pytest.raises(SpecInvalidError) as caught:
        spec_validate(source)
    return caught.value.errors


def test_every_error_is_reported_with_its_path():
    # given a spec with many mistakes in many places
    source = {
        "start": "missing",
        "default_locale": "de",
        "locales": ["en", "en", "EN"],
        "commands": {
            "help": {"node": "help"},
            "start": {"node": "main"},
            "Bad": {"node": "main"},
            "orders": {},
        },
        "nodes": {
            "main": {
                "type": "menu.v1",
                "text": "main.text",
                "rows": [[{"label": "a", "goto": "order"}, {"label": "b"}], []],
                "page_size": 0,
            },
            "order": {
                "type": "wizard.v1",
                "next": "main",
                "steps": [
                    {"name": "q", "type": "integer", "prompt": "p", "min": 5, "max": 2},
                    {"name": "user_id", "type": "text", "prompt": "p", "pattern": "("},
                    {"name": "d", "type": "date", "prompt": "p", "max": "2024-13-01"},
                    {"name": "x", "type": "colour", "prompt": "p"},
                    {
                        "name": "c",
                        "type": "choice",
                        "prompt": "p",
                        "options": [
                            {"value": "a", "label": "l"},
                            {"value": "a", "label": "l"},
                        ],
                    },
                ],
            },
            "Bad-Id": {
                "type": "menu.v1",
                "text": "t",
                "rows": [[{"label": "x", "goto": "main"}]],
            },
            "weird": {"type": "menu.v9"},
            "notype": {"text": "x"},
            "sql": {
                "type": "sql_exec.v1",
                "statement": "SELECT 1; DROP TABLE t",
                "next": "main",
                "timeout_ms": 99999,
                "extra": 1,
            },
            "tpl": {"type": "reply_template.v1", "template": "{% if %}"},
        },
    }

    # when it is validated
    errors = _errors(source)

    # then every error is reported, each at its JSON path
    known = "'llm.v1', 'menu.v1', 'reply_template.v1', 'sql_exec.v1', 'wizard.v1'"
    steps = "'text', 'integer', 'number', 'choice', 'phone', 'email', 'date', 'yes_no'"
    assert [(e.path, e.code, e.message) for e in errors] == [
        (
            "locales[2]",
            "invalid_locale",
            "Use a lowercase BCP 47 tag such as uk or pt-br",
        ),
        (
            "commands.Bad",
            "invalid_command",
            "Use 1 to 32 lowercase letters, digits or underscores",
        ),
        ("nodes.main.rows[0][1]", "button_purpose", "A button needs goto, set or url"),
        (
            "nodes.main.rows[1]",
            "too_short",
            "List should have at least 1 item after validation, not 0",
        ),
        (
            "nodes.main.page_size",
            "greater_than_equal",
            "Input should be greater than or equal to 1",
        ),
        (
            "nodes.order.steps[0].max",
            "bounds_order",
            "max must not be less than the minimum",
        ),
        (
            "nodes.order.steps[1].name",
            "reserved_variable",
            "user_id is a built-in variable and cannot be assigned",
        ),
        (
            "nodes.order.steps[1].pattern",
            "invalid_pattern",
            "Not a regular expression: "
            "missing ), unterminated subpattern at position 0",
        ),
        (
            "nodes.order.steps[2].max",
            "date_from_datetime_parsing",
            "Input should be a valid date or datetime, month value is outside expected "
            "range of 1-12",
        ),
        (
            "nodes.order.steps[3].type",
            "unknown_type",
            f"Unknown type 'colour'; expected one of: {steps}",
        ),
        (
            "nodes.order.steps[4].options",
            "duplicate_value",
            "Option values must be unique: a",
        ),
        (
            "nodes.Bad-Id",
            "invalid_node_id",
            "Use 1 to 32 lowercase letters, digits or underscores, "
            "starting with a letter",
        ),
        (
            "nodes.weird.type",
            "unknown_type",
            f"Unknown type 'menu.v9'; expected one of: {known}",
        ),
        ("nodes.notype.type", "missing", f"Field required; expected one of: {known}"),
        (
            "nodes.sql.statement",
            "invalid_sql",
            "The statement holds more than one statement.",
        ),
        (
            "nodes.sql.timeout_ms",
            "less_than_equal",
            "Input should be less than or equal to 30000",
        ),
        ("nodes.sql.extra", "extra_forbidden", "Extra inputs are not permitted"),
        (
            "nodes.tpl.template",
            "invalid_template",
            "line 1: Expected an expression, got 'end of statement block'",
        ),
        ("start", "unknown_node", "There is no node 'missing'."),
        (
            "default_locale",
            "unknown_locale",
            "The default locale must be one of locales.",
        ),
        ("locales[1]", "duplicate_locale", "Duplicate locale."),
        (
            "commands.start.node",
            "builtin_command",
            "/start is built in and cannot be routed to a node.",
        ),
        ("commands.orders.node", "missing", "Field required"),
    ]


def test_missing_required_fields_are_reported_at_their_own_path():
    errors = _errors(
        {
            "nodes": {
                "a": {"type": "menu.v1", "rows": [[{"label": "x", "set": {"v": [1]}}]]}
            }
        }
    )

    assert errors == [
        SpecErrorItem("start", "Field required", "missing"),
        SpecErrorItem("default_locale", "Field required", "missing"),
        SpecErrorItem("locales", "Field required", "missing"),
        SpecErrorItem("nodes.a.text", "Field required", "missing"),
        SpecErrorItem(
            "nodes.a.rows[0][0].set.v",
            "Use a string, a number, true, false or null",
            "scalar_type",
        ),
    ]


def test_a_spec_that_is_not_an_object_is_refused():
    assert _errors(["not", "a", "spec"]) == [
        SpecErrorItem("", "The spec must be a JSON object.", "model_type")
    ]


def test_the_demo_spec_is_valid_and_round_trips_through_its_canonical_json():
    # given the demo spec
    source = json.loads(DEMO_SPEC.read_text(encoding="utf-8"))

    # when validated, dumped and validated again
    spec = spec_validate(source)
    again = spec_validate(spec.as_json())

    # then nothing is lost, and defaults are written out
    assert again == spec
    assert again.as_json() == spec.as_json()
    assert spec.as_json()["nodes"]["my_orders"]["timeout_ms"] == 2000
    assert json.loads(json.dumps(spec.as_json())) == spec.as_json()


def test_command_list_gives_described_commands_by_position():
    spec = spec_validate(json.loads(DEMO_SPEC.read_text(encoding="utf-8")))

    assert spec.command_list() == [
        ("start", "cmd.start"),
        ("order", "cmd.order"),
        ("orders", "cmd.orders"),
        ("help", "cmd.help"),
        ("ask", "cmd.ask"),
        ("cancel", "cmd.cancel"),
    ]


def test_commands_without_a_position_follow_by_name_in_any_key_order():
    # given commands whose keys are in an order no menu should follow
    source = json.loads(DEMO_SPEC.read_text(encoding="utf-8"))
    source["commands"] = {
        "zeta": {"node": "help", "description": "cmd.help"},
        "hidden": {"node": "help"},
        "alpha": {"node": "help", "description": "cmd.help"},
        "order": {"node": "order", "description": "cmd.order", "position": 2},
        "start": {"description": "cmd.start", "position": 1},
    }

    # when listed from the spec and from its stored form with keys reversed
    spec = spec_validate(source)
    stored = spec.as_json()
    stored["commands"] = dict(reversed(list(stored["commands"].items())))

    # then positions come first, the rest by name, undescribed ones left out
    expected = [
        ("start", "cmd.start"),
        ("order", "cmd.order"),
        ("alpha", "cmd.help"),
        ("zeta", "cmd.help"),
    ]
    assert spec.command_list() == expected
    assert spec_validate(stored).command_list() == expected
    # and the canonical JSON holds a position only where one was given
    assert stored["commands"]["alpha"] == {"node": "help", "description": "cmd.help"}
    assert stored["commands"]["start"] == {
        "node": None,
        "description": "cmd.start",
        "position": 1,
    }
    command_schema = spec_json_schema()["$defs"]["Command"]["properties"]
    assert sorted(command_schema) == ["description", "node", "position"]


@pytest.mark.parametrize("position", [0, 101, "first"])
def test_a_command_position_outside_the_menu_is_an_error_at_its_path(
    position: Any,
) -> None:
    source = json.loads(DEMO_SPEC.read_text(encoding="utf-8"))
    source["commands"]["help"]["position"] = position

    with pytest.raises(SpecInvalidError) as caught:
        spec_validate(source)

    assert [error.path for error in caught.value.errors] == ["commands.help.position"]


def test_json_schema_describes_nodes_by_type():
    # when the schema is built
    schema = spec_json_schema()

    # then nodes are a union told apart by their type
    pattern = "^[a-z][a-z0-9_]{0,31}$"
    nodes = schema["properties"]["nodes"]["patternProperties"][pattern]
    assert sorted(nodes["discriminator"]["mapping"]) == [
        "llm.v1",
        "menu.v1",
        "reply_template.v1",
        "sql_exec.v1",
        "wizard.v1",
    ]
    assert schema["required"] == ["start", "default_locale", "locales", "nodes"]
    assert schema["properties"]["start"]["pattern"] == pattern
    assert (
        schema["$defs"]["SqlExecNode"]["properties"]["timeout_ms"]["maximum"] == 30000
    )
