"""Constrained field types shared by the spec models."""

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

NODE_ID_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
VAR_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
# The same keys the i18n app stores.
TRANSLATION_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$"
TRANSLATION_KEY_MAX_LENGTH = 200
# Telegram's rule for bot command names.
COMMAND_PATTERN = r"^[a-z0-9_]{1,32}$"
LOCALE_PATTERN = r"^[a-z]{2,3}(?:-[a-z0-9]{2,8})*$"

# Variables every conversation has; a spec may read them but never assign
# them, so ``:user_id`` in SQL is always the real sender.
BUILTIN_VARS = ("user_id", "chat_id", "locale", "first_name")


def _matching(pattern: str, code: str, message: str) -> Any:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if compiled.match(value) is None:
            raise PydanticCustomError(code, message)

        return value

    return AfterValidator(check)


def _not_builtin(value: str) -> str:
    if value in BUILTIN_VARS:
        raise PydanticCustomError(
            "reserved_variable",
            "{name} is a built-in variable and cannot be assigned",
            {"name": value},
        )

    return value


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise PydanticCustomError(
        "scalar_type", "Use a string, a number, true, false or null"
    )


NodeId = Annotated[
    str,
    Field(json_schema_extra={"pattern": NODE_ID_PATTERN}),
    _matching(
        NODE_ID_PATTERN,
        "invalid_node_id",
        "Use 1 to 32 lowercase letters, digits or underscores, starting with a letter",
    ),
]
VarName = Annotated[
    str,
    Field(json_schema_extra={"pattern": VAR_NAME_PATTERN}),
    _matching(
        VAR_NAME_PATTERN,
        "invalid_variable",
        "Use up to 64 letters, digits or underscores, not starting with a digit",
    ),
]
AssignableVar = Annotated[VarName, AfterValidator(_not_builtin)]
TranslationKey = Annotated[
    str,
    Field(
        max_length=TRANSLATION_KEY_MAX_LENGTH,
        json_schema_extra={"pattern": TRANSLATION_KEY_PATTERN},
    ),
    _matching(
        TRANSLATION_KEY_PATTERN,
        "invalid_translation_key",
        "Use dot-separated words of letters, digits or underscores, like menu.title",
    ),
]
CommandName = Annotated[
    str,
    Field(json_schema_extra={"pattern": COMMAND_PATTERN}),
    _matching(
        COMMAND_PATTERN,
        "invalid_command",
        "Use 1 to 32 lowercase letters, digits or underscores",
    ),
]
LocaleCode = Annotated[
    str,
    Field(json_schema_extra={"pattern": LOCALE_PATTERN}),
    _matching(
        LOCALE_PATTERN,
        "invalid_locale",
        "Use a lowercase BCP 47 tag such as uk or pt-br",
    ),
]
JsonScalar = Annotated[
    Any,
    Field(json_schema_extra={"type": ["string", "number", "boolean", "null"]}),
    AfterValidator(_scalar),
]
