"""The one error that ``complete`` raises."""

from typing import Any, Literal

from botfactory.errors import ApplicationError

UnavailableReason = Literal[
    "breaker_open", "deadline", "retries_exhausted", "client_error", "quota"
]


class LlmUnavailableError(ApplicationError):
    """No completion could be had; ``code`` says why.

    Never retryable: ``complete`` has already retried what was worth
    retrying, so the caller answers with its fallback.
    """

    status_code = 503
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        code: UnavailableReason,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, code=code, extra=extra)
