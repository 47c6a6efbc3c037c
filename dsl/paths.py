"""JSON paths as staff read them: ``nodes.order.steps[2].max``."""

from collections.abc import Sequence
from typing import Any

# pydantic's location of an error in a dict key, not a step of the path.
_KEY_MARKER = "[key]"


def path_join(base: str, *parts: str | int) -> str:
    """Return ``base`` followed by keys (``.key``) and list indexes (``[i]``).

    Never raises.
    """
    path = base
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part

    return path


def path_from_loc(loc: Sequence[str | int], data: Any) -> str:
    """Return the path of a pydantic error location within the input ``data``.

    Walks the input alongside the location so that what pydantic inserts
    and the input does not hold (the tag of a discriminated union, the name
    of a union member, the dict-key marker) is left out.

    Never raises.
    """
    parts: list[str | int] = []
    current = data
    last = len(loc) - 1
    for position, item in enumerate(loc):
        if item == _KEY_MARKER:
            continue
        if isinstance(current, dict):
            if isinstance(item, str) and item in current:
                parts.append(item)
                current = current[item]
                continue
            if isinstance(item, str) and current.get("type") == item:
                continue
            if position == last and isinstance(item, str):
                parts.append(item)
            continue
        if (
            isinstance(current, list)
            and isinstance(item, int)
            and 0 <= item < len(current)
        ):
            parts.append(item)
            current = current[item]
            continue
        # Below a scalar only pydantic's own labels remain.
        break

    return path_join("", *parts)
