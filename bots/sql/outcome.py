"""What a SQL node gives back: rows as JSON-safe dicts, or a safe error code.

Values cross into conversation state and chat messages, so each one becomes
JSON: ``Decimal`` becomes a string (``"12.50"``: exact, never rounded through
a float), ``datetime``/``date``/``time`` an ISO 8601 string, ``UUID`` and IP
addresses a string, ``timedelta`` its length in seconds (a float), a
non-finite float the strings ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``,
JSON and arrays their elements converted the same way. Bytes and any other
type are refused: a node that returns them fails with ``unsupported_value``.
"""

import datetime
import ipaddress
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from botfactory.errors import ApplicationError

# Short, fixed texts: a driver's own message can quote a parameter value.
ERROR_MESSAGES = {
    "invalid_node": "The SQL node is misconfigured.",
    "writes_not_allowed": "This bot does not allow SQL writes.",
    "missing_parameter": "A parameter of the statement has no value.",
    "unsupported_parameter": "A parameter value cannot be sent to the database.",
    "not_provisioned": "The bot's database is not set up.",
    "unavailable": "The bot's database is unavailable.",
    "timeout": "The statement took too long.",
    "permission_denied": "The statement is not permitted.",
    "read_only": "The statement tried to write in read mode.",
    "syntax_error": "The statement is not exactly one valid SQL statement.",
    "invalid_statement": "The statement refers to something missing or invalid.",
    "invalid_data": "A value does not fit the statement.",
    "constraint_violation": "The statement breaks a rule of the bot's data.",
    "conflict": "The statement conflicted with another one.",
    "unsupported_statement": "This kind of statement cannot run in a node.",
    "duplicate_column": "Two result columns have the same name.",
    "unsupported_value": "A result value cannot be turned into JSON.",
    "database_error": "The statement failed.",
}


# What PostgreSQL's uuid, inet and cidr columns load as.
_AS_STRING = (
    uuid.UUID,
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Interface,
    ipaddress.IPv6Interface,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
)


@dataclass(frozen=True)
class SqlOutcome:
    """The result of one SQL node: rows, or an error code and message."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    error_code: str | None = None
    truncated: bool = False
    replayed: bool = False

    @classmethod
    def failure(cls, code: str) -> "SqlOutcome":
        return cls(error=ERROR_MESSAGES[code], error_code=code)


class SqlRunError(Exception):
    """A statement failed; ``code`` is a key of ``ERROR_MESSAGES``.

    ``cause`` names the error class for the log, never a value.
    """

    def __init__(self, code: str, *, cause: str) -> None:
        super().__init__(code)
        self.code = code
        self.cause = cause


class SqlSchemaError(ApplicationError):
    """A bot's DDL could not be applied."""


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, _AS_STRING):
        return str(value)
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _json_value(item) for key, item in value.items()}

    raise SqlRunError("unsupported_value", cause=type(value).__name__)


def rows_to_json(
    columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> list[dict[str, Any]]:
    """Turn driver rows into dicts of JSON-safe values.

    Raises SqlRunError (``duplicate_column``, ``unsupported_value``).
    """
    if len(set(columns)) != len(columns):
        raise SqlRunError("duplicate_column", cause="DuplicateColumn")

    return [
        {name: _json_value(value) for name, value in zip(columns, row, strict=True)}
        for row in rows
    ]
