"""Errors raised by the spec language."""

from dataclasses import dataclass


class DslError(Exception):
    """Base of every error the spec language raises on purpose."""


@dataclass(frozen=True)
class SpecErrorItem:
    """One validation error: its path (``nodes.order.steps[2].max``), why."""

    path: str
    message: str
    code: str


class SpecInvalidError(DslError):
    """A spec failed validation; ``errors`` holds every problem found."""

    def __init__(self, errors: list[SpecErrorItem]) -> None:
        count = len(errors)
        super().__init__(f"The spec has {count} error{'s' if count != 1 else ''}.")
        self.errors = errors


class TemplateRenderError(DslError):
    """A template could not be compiled or rendered."""


class SqlParseError(DslError):
    """A statement of an SQL node cannot be used as written."""
