"""Log filters and formatters: request context on every line, no secrets."""

import logging
import re
import threading
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from botfactory.context import context_get

# A Telegram bot token: the bot id, a colon and 35 url-safe characters.
_TOKEN_RE = re.compile(r"\b\d{5,12}:[A-Za-z0-9_-]{30,}")
_AUTH_RE = re.compile(
    r"(?i)\b(authorization|token|api[_-]?key|password)(\"?\s*[:=]\s*\"?)([^\s\",;]+)"
)
_KEY_RE = re.compile(r"\bsk-[A-Za-z0-9_-]{16,}")
_URL_PASSWORD_RE = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^/:@\s]+):[^@/\s]+@")
REDACTED = "[redacted]"

_known_secrets: set[str] = set()
_known_lock = threading.Lock()


def secret_register(value: str | None) -> None:
    """Remember a patternless secret (a webhook secret) so logs redact it."""
    if value and len(value) >= 8:
        with _known_lock:
            _known_secrets.add(value)


def redact(text: str) -> str:
    """Remove tokens, keys, passwords and known secrets from a text."""
    text = _TOKEN_RE.sub(REDACTED, text)
    text = _KEY_RE.sub(REDACTED, text)
    text = _URL_PASSWORD_RE.sub(lambda m: f"{m.group('scheme')}:{REDACTED}@", text)
    text = _AUTH_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    with _known_lock:
        secrets = list(_known_secrets)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)

    return text


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
    """Render each record's message once and strip secrets from it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(
                logging.Formatter().formatException(record.exc_info)
            )
            record.exc_info = None

        return True


class JsonFormatter(_BaseJsonFormatter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault(
            "fmt", "%(asctime)s %(levelname)s %(name)s %(message)s %(trace_id)s"
        )
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level"})
        super().__init__(*args, **kwargs)
