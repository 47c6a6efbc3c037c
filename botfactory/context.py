"""Per-request and per-task logging context, carried without passing it."""

import contextvars
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "botfactory_log_context", default=None
)


def new_trace_id() -> str:
    return uuid.uuid4().hex


def context_get() -> dict[str, Any]:
    """Return the current context (trace id, bot id, update id, ...)."""
    return dict(_context.get() or {})


def context_bind(**values: Any) -> None:
    """Add values to the current context for the rest of the request or task."""
    current = dict(_context.get() or {})
    current.update({key: value for key, value in values.items() if value is not None})
    _context.set(current)


@contextmanager
def context_scope(**values: Any) -> Iterator[None]:
    """Run a block with a fresh context that is dropped afterwards."""
    token = _context.set({key: v for key, v in values.items() if v is not None})
    try:
        yield
    finally:
        _context.reset(token)


def context_push(**values: Any) -> contextvars.Token[dict[str, Any] | None]:
    """Start a task's context on top of the current one; undo with context_pop."""
    current = dict(_context.get() or {})
    current.update({key: value for key, value in values.items() if value is not None})

    return _context.set(current)


def context_pop(token: contextvars.Token[dict[str, Any] | None]) -> None:
    """Restore the context that was current before ``context_push``."""
    _context.reset(token)
