"""Optional error reporting to Sentry, on only when ``SENTRY_DSN`` is set."""

from typing import Any, cast

import sentry_sdk
from django.core.exceptions import ImproperlyConfigured
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.types import Event, Hint
from sentry_sdk.utils import BadDsn

from botfactory.logging import redact

# The request's headers carry the webhook secret and the session cookie, its
# body a user's message; none of them helps to fix an error.
_REQUEST_KEYS_DROPPED = ("headers", "cookies", "data", "env", "query_string")


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]

    return value


def sentry_before_send(event: Event, hint: Hint) -> Event | None:
    """Drop the private parts of an event's request and redact its texts.

    Messages, exception values, breadcrumbs and extras are redacted as the
    logs are.
    """
    request = event.get("request")
    if isinstance(request, dict):
        kept = {
            key: value
            for key, value in request.items()
            if key not in _REQUEST_KEYS_DROPPED
        }
        event = cast(Event, {**event, "request": kept})

    return cast(Event, _scrub(event))


def sentry_init(*, dsn: str, environment: str, release: str | None = None) -> None:
    """Start reporting errors (web, Celery and logged errors) to ``dsn``.

    Raises ImproperlyConfigured when the DSN is malformed.
    """
    try:
        sentry_sdk.init(
            dsn=dsn,
            environment=environment,
            release=release,
            send_default_pii=False,
            # Local variables and request bodies hold message texts and
            # secrets that a pattern cannot recognise.
            include_local_variables=False,
            max_request_body_size="never",
            before_send=sentry_before_send,
            # Logged errors become events through the handler that
            # sentry_logging_config adds; the integration would see records
            # only after the console handler's redaction dropped their
            # exception.
            integrations=[LoggingIntegration(event_level=None)],
        )
    except BadDsn:
        raise ImproperlyConfigured("SENTRY_DSN is not a valid Sentry DSN.") from None


def sentry_logging_config(config: dict[str, Any]) -> dict[str, Any]:
    """Return the logging config with a handler that reports errors to Sentry.

    The handler comes before the console's, whose redaction replaces each
    record's exception by its text; ``sentry_before_send`` redacts the event.
    """
    handlers = {
        **config["handlers"],
        "sentry": {
            "class": "sentry_sdk.integrations.logging.EventHandler",
            "level": "ERROR",
            "filters": ["context"],
        },
    }
    root = {**config["root"], "handlers": ["sentry", *config["root"]["handlers"]]}

    return {**config, "handlers": handlers, "root": root}
