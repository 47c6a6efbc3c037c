"""Findings of the linter."""

from dataclasses import dataclass, replace
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class LintIssue:
    """A problem a schema cannot see; an ``error`` blocks publishing."""

    path: str
    message: str
    code: str
    severity: Severity

    def under(self, base: str) -> "LintIssue":
        """Return the issue with its path moved below ``base``.

        Never raises.
        """
        path = f"{base}.{self.path}" if self.path else base

        return replace(self, path=path)
