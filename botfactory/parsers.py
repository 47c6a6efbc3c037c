"""The API's JSON parser: refuses what the database could not store."""

import math
from collections.abc import Iterator
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _scalars(data: Any) -> Iterator[Any]:
    # Walked with a stack: a document may nest nearly as deep as the
    # interpreter's recursion limit.
    waiting = [data]
    while waiting:
        item = waiting.pop()
        if isinstance(item, dict):
            waiting.extend(item.keys())
            waiting.extend(item.values())
        elif isinstance(item, list):
            waiting.extend(item)
        else:
            yield item


def _storable(value: Any) -> bool:
    if isinstance(value, float):
        # 1e999 parses as infinity, which JSON cannot write back.
        return math.isfinite(value)
    if not isinstance(value, str):
        return True
    # PostgreSQL's jsonb refuses NUL, and no database stores a lone UTF-16
    # surrogate, which a \ud800 escape produces.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False

    return "\x00" not in value


def json_unstorable_path(data: Any) -> str | None:
    """Return the path of the first value the database cannot store, or None.

    Paths read like a spec's (``nodes.ask.steps[0].prompt``; "" for the
    document itself). Never raises.
    """
    waiting: list[tuple[str, Any]] = [("", data)]
    while waiting:
        path, item = waiting.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                inner = f"{path}.{key}" if path else str(key)
                if not _storable(key):
                    return inner
                waiting.append((inner, value))
        elif isinstance(item, list):
            waiting.extend(
                (f"{path}[{index}]", value) for index, value in enumerate(item)
            )
        elif not _storable(item):
            return path

    return None


class StrictJSONParser(JSONParser):
    """JSON whose every value can be stored; anything else is a ParseError."""

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: dict[str, Any] | None = None,
    ) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(
                "JSON parse error - the document nests too deep."
            ) from None
        if not all(_storable(value) for value in _scalars(data)):
            raise ParseError(
                "JSON parse error - a number out of range, or a text holding a "
                "NUL character or a lone surrogate, cannot be stored."
            )

        return data
