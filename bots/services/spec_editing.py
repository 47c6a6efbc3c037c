"""What an editor needs beside a spec: its JSON Schema, and the problems of a
draft checked as it is typed, each at the path the editor marks."""

import json
from dataclasses import asdict, dataclass
from typing import Any

from botfactory.parsers import json_unstorable_path
from bots.models import Bot
from bots.services.specs import SpecRejectedError, spec_check
from dsl import spec_json_schema

# spec_check files problems of the document itself under "$"; an editor's
# path of the document is "".
_ROOT_PATHS = ("$", "")


@dataclass(frozen=True)
class SpecProblem:
    """One error or warning of a draft; ``line``/``column`` only for JSON."""

    path: str
    message: str
    code: str
    line: int | None = None
    column: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


def _with_type_enums(schema: Any) -> Any:
    # A union told apart by "type" (the nodes, a wizard's steps) gets the
    # list of its type values as an enum, so that editors offer them.
    if isinstance(schema, list):
        return [_with_type_enums(item) for item in schema]
    if not isinstance(schema, dict):
        return schema

    result = {key: _with_type_enums(value) for key, value in schema.items()}
    discriminator = schema.get("discriminator")
    if isinstance(discriminator, dict) and isinstance(
        discriminator.get("mapping"), dict
    ):
        name = discriminator.get("propertyName", "type")
        result["properties"] = {
            **result.get("properties", {}),
            name: {"enum": sorted(discriminator["mapping"]), "type": "string"},
        }

    return result


def spec_schema_get() -> dict[str, Any]:
    """Return the spec's JSON Schema, each union's type values as an enum.

    Never raises.
    """
    return _with_type_enums(spec_json_schema())


def spec_schema_text() -> str:
    """Return the spec's JSON Schema as JSON text: sorted keys, a final newline.

    Never raises.
    """
    return json.dumps(spec_schema_get(), indent=2, sort_keys=True) + "\n"


def _parse_error(exc: json.JSONDecodeError) -> SpecProblem:
    return SpecProblem(
        path="",
        message=(
            f"Not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ),
        code="json_invalid",
        line=exc.lineno,
        column=exc.colno,
    )


def spec_draft_check(
    *, bot: Bot | None, text: str
) -> tuple[list[SpecProblem], list[SpecProblem]]:
    """Check a draft spec as typed; return its errors and its warnings.

    Finds what saving the change form would refuse, with the same messages:
    malformed JSON (at path "", with its line and column), values the
    database cannot store, validation and lint errors. An empty draft has no
    problems, as on the form. Never raises.
    """
    if not text.strip():
        return [], []
    try:
        source = json.loads(text)
    except json.JSONDecodeError as exc:
        return [_parse_error(exc)], []
    except RecursionError:
        message = "Not valid JSON: the document nests too deep."
        return [SpecProblem(path="", message=message, code="json_invalid")], []

    if source == {}:
        return [], []
    unstorable = json_unstorable_path(source)
    if unstorable is not None:
        message = (
            "A NUL character, a lone surrogate or a number out of range "
            "cannot be stored."
        )
        return [SpecProblem(path=unstorable, message=message, code="unstorable")], []

    try:
        _spec, warnings = spec_check(bot=bot, source=source)
    except SpecRejectedError as exc:
        errors = [
            SpecProblem(
                path="" if path in _ROOT_PATHS else path,
                message=message,
                code="spec_invalid",
            )
            for path, messages in exc.fields.items()
            for message in messages
        ]
        return errors, []

    return [], [
        SpecProblem(
            path="" if issue.path in _ROOT_PATHS else issue.path,
            message=issue.message,
            code=issue.code,
        )
        for issue in warnings
    ]
