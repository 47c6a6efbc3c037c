"""The spec of a bot and its validation.

A spec names its start node, locales, commands, deep links and nodes; each
node is an instance of a registered component type, told apart by its
``type``. Validation reports every error at once, each at the JSON path
staff see in the editor (``nodes.order.steps[2].max``).
"""

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
)
from pydantic_core import ErrorDetails, PydanticCustomError

import dsl.components  # noqa: F401  (registers every component type)
from dsl.components.base import NodeBase
from dsl.errors import SpecErrorItem, SpecInvalidError, SqlParseError
from dsl.fields import (
    AssignableVar,
    CommandName,
    LocaleCode,
    NodeId,
    TranslationKey,
)
from dsl.paths import path_from_loc, path_join
from dsl.registry import component_types, node_union
from dsl.sql import sql_parse

# Commands the executor itself understands; a spec may describe them for
# the command menu but not route them to a node.
BUILTIN_COMMANDS = ("start", "cancel", "back", "skip")
# Telegram allows this many commands in a bot's command menu.
MAX_COMMANDS = 100
# Telegram limits a deep-link payload to 64 characters of this alphabet.
DEEP_LINK_PATTERN = r"^[A-Za-z0-9_-]{0,64}$"
_DEEP_LINK_RE = re.compile(DEEP_LINK_PATTERN)
# The one parameter a privacy statement is given: whose data it is.
PRIVACY_PARAM = "telegram_user_id"
# Shortest idle expiry a spec may set; anything shorter would end a wizard
# while the user is still typing.
IDLE_EXPIRY_MIN_SECONDS = 60

if TYPE_CHECKING:
    Node = NodeBase
else:
    Node = node_union()


class Command(BaseModel):
    """A command: the node it opens and its description in the command menu.

    ``node`` is required except for the built-in commands; a command without
    ``description`` works but is not listed in the menu. The menu lists
    commands by ``position``, then by name: a stored spec keeps no key order.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    node: NodeId | None = None
    description: TranslationKey | None = None
    position: int | None = Field(
        default=None,
        ge=1,
        le=MAX_COMMANDS,
        description=(
            "Where the command stands in Telegram's command menu, 1 first; "
            "commands without one follow, by name."
        ),
    )

    @model_serializer(mode="wrap")
    def _without_unset_position(
        self, handler: SerializerFunctionWrapHandler
    ) -> dict[str, Any]:
        # Left out when unset, so specs written before it keep their
        # canonical JSON (and compare equal to their published versions).
        data: dict[str, Any] = handler(self)
        if data.get("position") is None:
            data.pop("position", None)

        return data


class DeepLink(BaseModel):
    """``/start <payload>`` routing: the first link whose prefix matches wins.

    The payload without the prefix is stored into ``into``; an empty prefix
    matches every payload.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = Field(default="", pattern=r"^[A-Za-z0-9_-]{0,63}$")
    node: NodeId
    into: AssignableVar | None = None


class Privacy(BaseModel):
    """The bot's own SQL that exports and deletes one Telegram user's rows.

    Each statement is one SQL statement whose only parameter is
    ``:telegram_user_id``. ``export`` returns the user's rows (read mode);
    ``delete`` removes them (write mode, so the bot must allow SQL writes)
    and should return one row per deleted row (``RETURNING``), which is
    what the runtime counts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    export: str | None = Field(default=None, min_length=1, max_length=10_000)
    delete: str | None = Field(default=None, min_length=1, max_length=10_000)

    @field_validator("export", "delete")
    @classmethod
    def _one_statement(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            names = sql_parse(value).param_names
        except SqlParseError as exc:
            raise PydanticCustomError("invalid_sql", str(exc)) from None
        others = sorted(set(names) - {PRIVACY_PARAM})
        if others:
            raise PydanticCustomError(
                "unknown_parameter",
                "Only :{allowed} is provided; not {names}",
                {"allowed": PRIVACY_PARAM, "names": ", ".join(others)},
            )

        return value


class Spec(BaseModel):
    """A validated bot spec; immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: NodeId
    default_locale: LocaleCode
    locales: list[LocaleCode] = Field(min_length=1)
    commands: dict[CommandName, Command] = Field(
        default_factory=dict, max_length=MAX_COMMANDS
    )
    deep_links: list[DeepLink] = Field(default_factory=list)
    nodes: dict[NodeId, Node] = Field(min_length=1)
    # Seconds without an update after which a conversation starts over at
    # the start node; None leaves it to the runtime's setting.
    idle_expiry_seconds: int | None = Field(
        default=None, ge=IDLE_EXPIRY_MIN_SECONDS, le=366 * 86_400
    )
    privacy: Privacy | None = None

    def as_json(self) -> dict[str, Any]:
        """Return the canonical JSON of the spec, defaults written out.

        Never raises.
        """
        return self.model_dump(mode="json")

    def command_list(self) -> list[tuple[str, str]]:
        """Return (command, description key) of the command menu, in order.

        Ordered by position, then by name. Never raises.
        """
        listed = sorted(
            (command.position or MAX_COMMANDS + 1, name, command.description)
            for name, command in self.commands.items()
            if command.description is not None
        )

        return [(name, description) for _position, name, description in listed]

    def deep_link_match(self, payload: str) -> tuple[DeepLink, str] | None:
        """Return the deep link a ``/start`` payload opens and its value.

        Never raises.
        """
        if not payload or _DEEP_LINK_RE.match(payload) is None:
            return None
        for link in self.deep_links:
            if payload.startswith(link.prefix):
                return link, payload[len(link.prefix) :]

        return None


def _error_item(error: ErrorDetails, source: Any) -> SpecErrorItem:
    path = path_from_loc(error["loc"], source)
    code = error["type"]
    message = error["msg"]
    ctx = error.get("ctx") or {}
    if code == "union_tag_invalid":
        path = path_join(path, "type")
        code = "unknown_type"
        expected = ctx.get("expected_tags")
        message = f"Unknown type {ctx.get('tag')!r}; expected one of: {expected}"
    elif code == "union_tag_not_found":
        path = path_join(path, "type")
        code = "missing"
        message = "Field required"
        if len(error["loc"]) == 2 and error["loc"][0] == "nodes":
            known = ", ".join(repr(name) for name in component_types())
            message = f"Field required; expected one of: {known}"
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")

    return SpecErrorItem(path=path, message=message, code=code)


def _reference_errors(source: Mapping[str, Any]) -> list[SpecErrorItem]:
    """Return the errors that relate two parts of the spec.

    They are checked on the input rather than in a model validator, which
    pydantic runs only when every field is valid and reports without a path.
    """
    errors: list[SpecErrorItem] = []
    nodes = source.get("nodes")
    start = source.get("start")
    if (
        isinstance(nodes, dict)
        and isinstance(start, str)
        and nodes
        and start not in nodes
    ):
        errors.append(
            SpecErrorItem("start", f"There is no node {start!r}.", "unknown_node")
        )

    locales = source.get("locales")
    default = source.get("default_locale")
    if (
        isinstance(locales, list)
        and isinstance(default, str)
        and default not in locales
    ):
        errors.append(
            SpecErrorItem(
                "default_locale",
                "The default locale must be one of locales.",
                "unknown_locale",
            )
        )
    if isinstance(locales, list):
        seen: set[str] = set()
        for index, locale in enumerate(locales):
            # Anything but text is reported by the schema, and may be a list
            # or an object, which a set cannot hold.
            if not isinstance(locale, str):
                continue
            if locale in seen:
                errors.append(
                    SpecErrorItem(
                        path_join("locales", index),
                        "Duplicate locale.",
                        "duplicate_locale",
                    )
                )
            seen.add(locale)

    commands = source.get("commands")
    for name, command in commands.items() if isinstance(commands, dict) else ():
        if not isinstance(command, dict):
            continue
        if name in BUILTIN_COMMANDS and command.get("node") is not None:
            errors.append(
                SpecErrorItem(
                    path_join("commands", name, "node"),
                    f"/{name} is built in and cannot be routed to a node.",
                    "builtin_command",
                )
            )
        if name not in BUILTIN_COMMANDS and command.get("node") is None:
            errors.append(
                SpecErrorItem(
                    path_join("commands", name, "node"), "Field required", "missing"
                )
            )

    return errors


def spec_validate(source: Mapping[str, Any]) -> Spec:
    """Validate a spec's JSON and return the spec.

    Raises SpecInvalidError listing every error found, each with its path.
    """
    if not isinstance(source, Mapping):
        raise SpecInvalidError(
            [SpecErrorItem("", "The spec must be a JSON object.", "model_type")]
        )
    data = dict(source)

    errors: list[SpecErrorItem] = []
    spec: Spec | None = None
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        errors = [_error_item(error, data) for error in exc.errors()]
    errors += _reference_errors(data)
    if errors or spec is None:
        raise SpecInvalidError(list(dict.fromkeys(errors)))

    return spec


def spec_json_schema() -> dict[str, Any]:
    """Return the JSON Schema of a spec, for editors; never raise."""
    return Spec.model_json_schema()
