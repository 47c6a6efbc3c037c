"""Log filters and formatters: request context on every line, no secrets."""

import logging
import re
import threading
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from botfactory.context import context_get

# A Telegram bot token: the bot id, a colon and 35 url-safe characters. No
# \b before the id: in a Bot API URL it follows "/bot" without a boundary.
_TOKEN_RE = re.compile(r"(?<![0-9])\d{5,12}:[A-Za-z0-9_-]{30,}")
_AUTH_RE = re.compile(
    r"(?i)(?<![a-z])(authorization|token|secret|api[_-]?key|password|passwd)"
    r"([\"']?\s*[:=]\s*[\"']?)"
    r"((?:bearer|token|basic)\s+)?"
    r"([^\s\"',;&]+)"
)
_KEY_RE = re.compile(r"\bsk-[A-Za-z0-9_-]{16,}")
_URL_PASSWORD_RE = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^/:@\s]*):[^@/\s]+@")
REDACTED = "[redacted]"
# A shorter registered secret would redact ordinary words from every line.
_SECRET_MIN_LENGTH = 8

# Attributes every LogRecord has; anything else on a record came in as
# ``extra`` (Django's SQL logger puts the statement and its parameters there).
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None, None))
)

# Longest first, so that a secret containing another is removed whole;
# replaced, never changed in place, so readers need no lock.
_known_secrets: tuple[str, ...] = ()
_known_set: frozenset[str] = frozenset()
_known_lock = threading.Lock()


def secret_register(value: str | None) -> None:
    """Remember a patternless secret (a webhook secret) so logs redact it."""
    global _known_secrets, _known_set
    # Called on every load of a bot: the common case is a known value.
    if not value or len(value) < _SECRET_MIN_LENGTH or value in _known_set:
        return

    with _known_lock:
        _known_set = _known_set | {value}
        _known_secrets = tuple(sorted(_known_set, key=len, reverse=True))


def redact(text: str) -> str:
    """Remove tokens, keys, passwords and known secrets from a text."""
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _TOKEN_RE.sub(REDACTED, text)
    text = _KEY_RE.sub(REDACTED, text)
    text = _URL_PASSWORD_RE.sub(lambda m: f"{m.group('scheme')}:{REDACTED}@", text)
    text = _AUTH_RE.sub(
        lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}{REDACTED}", text
    )

    return text


def _redact_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value

    text = value if isinstance(value, str) else str(value)
    cleaned = redact(text)

    # A value without secrets keeps its type, for the JSON output.
    return value if cleaned == text else cleaned


class ContextFilter(logging.Filter):
    """Copy the request or task context (trace id, bot id, update id) to records."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = context_get()
        record.trace_id = context.get("trace_id", "-")
        for key in ("bot_id", "update_id", "task"):
            if key in context and not hasattr(record, key):
                setattr(record, key, context[key])

        return True


class RedactingFilter(logging.Filter):
    """Render each record's message once and strip secrets from all of it.

    Covers the message with its arguments, the exception and stack texts
    (also when an earlier handler already rendered them) and every extra
    attribute, for the project's records and third-party ones alike.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            # A filter that raises would fail the caller's log call itself;
            # this is a third-party call whose arguments do not fit.
            message = f"{record.msg} {record.args}"
        record.msg = redact(message)
        record.args = None

        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        # Formatters render exc_info again when it is set; only the text stays.
        record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)

        for key, value in list(vars(record).items()):
            if key not in _RECORD_ATTRIBUTES:
                setattr(record, key, _redact_value(value))

        return True


class JsonFormatter(_BaseJsonFormatter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault(
            "fmt", "%(asctime)s %(levelname)s %(name)s %(message)s %(trace_id)s"
        )
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level"})
        super().__init__(*args, **kwargs)
