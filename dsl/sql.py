"""Named parameters of SQL statements written in specs.

A statement names its parameters ``:name``; values are always bound by the
database driver, never formatted into the SQL. The scanner knows enough of
SQL to tell a parameter from the other uses of a colon: casts (``::int``),
quoted strings (``'a:b'``, ``E'\\''``), quoted identifiers, ``--`` and
``/* */`` comments and PostgreSQL dollar-quoted strings.
"""

import re
from dataclasses import dataclass, field
from typing import Literal

from dsl.errors import SqlParseError

ParamStyle = Literal["pyformat", "named"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


@dataclass(frozen=True)
class _Param:
    name: str


@dataclass(frozen=True)
class ParsedSql:
    """A statement split into SQL text and the parameters between it."""

    statement: str
    param_names: tuple[str, ...]
    _parts: tuple[str | _Param, ...] = field(repr=False)

    def render(self, style: ParamStyle) -> str:
        """Return the statement in a driver's placeholder style.

        ``pyformat`` (psycopg) writes ``%(name)s`` and doubles every literal
        ``%``; ``named`` (sqlite3) writes ``:name``. Raises ValueError for an
        unknown style.
        """
        if style not in ("pyformat", "named"):
            raise ValueError(f"Unknown parameter style {style!r}.")
        pieces: list[str] = []
        for part in self._parts:
            if isinstance(part, _Param):
                pieces.append(
                    f"%({part.name})s" if style == "pyformat" else f":{part.name}"
                )
            else:
                pieces.append(part.replace("%", "%%") if style == "pyformat" else part)

        return "".join(pieces)


def _skip_quoted(statement: str, start: int, quote: str, *, backslashes: bool) -> int:
    """Return the index just after the quoted text opening at ``start``."""
    index = start + 1
    while index < len(statement):
        char = statement[index]
        if backslashes and char == "\\":
            index += 2
            continue
        if char == quote:
            if statement.startswith(quote, index + 1):
                index += 2
                continue
            return index + 1
        index += 1
    kind = "identifier" if quote == '"' else "string"
    raise SqlParseError(f"The statement has an unterminated quoted {kind}.")


def _skip_block_comment(statement: str, index: int) -> int:
    # PostgreSQL nests block comments: /* a /* b */ c */ is one comment.
    depth = 0
    while index < len(statement):
        if statement.startswith("/*", index):
            depth += 1
            index += 2
        elif statement.startswith("*/", index):
            depth -= 1
            index += 2
            if depth == 0:
                return index
        else:
            index += 1
    raise SqlParseError("The statement has an unterminated /* comment.")


def _skip_special(statement: str, index: int) -> int | None:
    """Return the end of a quoted text or comment at ``index``, if any."""
    char = statement[index]
    if char == "'":
        escaped = (
            index > 0
            and statement[index - 1] in "eE"
            and (
                index < 2
                or not (statement[index - 2].isalnum() or statement[index - 2] == "_")
            )
        )
        return _skip_quoted(statement, index, "'", backslashes=escaped)
    if char == '"':
        return _skip_quoted(statement, index, '"', backslashes=False)
    if statement.startswith("--", index):
        newline = statement.find("\n", index)
        return len(statement) if newline < 0 else newline + 1
    if statement.startswith("/*", index):
        return _skip_block_comment(statement, index)
    if char == "$":
        tag = _DOLLAR_TAG.match(statement, index)
        # ``$1`` is a positional parameter, not a quote; a tag cannot follow
        # an identifier character (``a$b$`` is one identifier).
        preceded = index > 0 and (
            statement[index - 1].isalnum() or statement[index - 1] == "_"
        )
        if tag is None or preceded:
            return None
        close = statement.find(tag.group(0), tag.end())
        if close < 0:
            raise SqlParseError(
                "The statement has an unterminated dollar-quoted string."
            )
        return close + len(tag.group(0))

    return None


def sql_parse(statement: str) -> ParsedSql:
    """Find the ``:name`` parameters of one SQL statement.

    Raises SqlParseError for an empty statement, more than one statement
    (a ``;`` outside quotes and comments other than one at the end), or an
    unterminated string, identifier or comment.
    """
    parts: list[str | _Param] = []
    names: list[str] = []
    text_start = 0
    index = 0
    has_code = False
    ended = False
    while index < len(statement):
        char = statement[index]
        special_end = _skip_special(statement, index)
        if special_end is not None:
            is_comment = char in "-/"
            if ended and not is_comment:
                raise SqlParseError("The statement holds more than one statement.")
            has_code = has_code or not is_comment
            index = special_end
            continue
        if char.isspace():
            index += 1
            continue
        if ended:
            raise SqlParseError("The statement holds more than one statement.")
        if char == ";":
            ended = True
            index += 1
            continue
        has_code = True
        if statement.startswith("::", index):
            index += 2
            continue
        name = _NAME.match(statement, index + 1) if char == ":" else None
        if name is not None:
            parts.append(statement[text_start:index])
            parts.append(_Param(name.group(0)))
            if name.group(0) not in names:
                names.append(name.group(0))
            index = text_start = name.end()
            continue
        identifier = _NAME.match(statement, index)
        index = identifier.end() if identifier is not None else index + 1

    if not has_code:
        raise SqlParseError("The statement is empty.")
    parts.append(statement[text_start:])

    return ParsedSql(statement=statement, param_names=tuple(names), _parts=tuple(parts))
