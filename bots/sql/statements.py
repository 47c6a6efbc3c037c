"""Placeholders and parameter values of a node's statement.

A node writes its parameters ``:name``; each driver wants its own style, and
the values are always bound by the driver, never formatted into the SQL.
"""

from collections.abc import Mapping
from typing import Any, Literal

from bots.sql.outcome import SqlRunError
from dsl import ParsedSql, SqlParseError, sql_parse

ParamStyle = Literal["pyformat", "named"]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def _parsed(statement: str) -> ParsedSql:
    try:
        return sql_parse(statement)
    except SqlParseError:
        raise SqlRunError("syntax_error", cause="SqlParseError") from None


def statement_render(statement: str, style: ParamStyle) -> str:
    """Write the ``:name`` parameters in a driver's placeholder style.

    ``pyformat`` (psycopg) writes ``%(name)s`` and doubles every literal
    ``%``; ``named`` (sqlite3) keeps ``:name``. Raises SqlRunError
    (``syntax_error``) for a statement the parser refuses.
    """
    return _parsed(statement).render(style)


def _value_check(value: Any) -> None:
    if value is None or isinstance(value, bool | float):
        return
    if isinstance(value, int) and _INT64_MIN <= value <= _INT64_MAX:
        return
    # PostgreSQL text cannot hold NUL; SQLite would store it: refuse it in both.
    if isinstance(value, str) and "\x00" not in value:
        return

    raise SqlRunError("unsupported_parameter", cause=type(value).__name__)


def statement_params(statement: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Return the values the statement uses, checked for the drivers.

    Values may be None, bool, a 64-bit int, float or str. Raises SqlRunError
    (``missing_parameter``, ``unsupported_parameter``).
    """
    names = list(_parsed(statement).param_names)
    if any(name not in params for name in names):
        raise SqlRunError("missing_parameter", cause="KeyError")
    for name in names:
        _value_check(params[name])

    return {name: params[name] for name in names}
