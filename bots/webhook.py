"""``POST /telegram/<bot_id>/webhook``: check the envelope, process, answer.

Telegram retries every non-2xx for up to a day, so only a wrong secret, a
malformed envelope or an unusable request gets a 4xx; whatever the runtime
does not understand inside a valid envelope is accepted with 200.
"""

import hmac
import json
import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from gunicorn.http.errors import ParseException

from botfactory.context import context_bind
from botfactory.errors import json_error
from bots.models import Bot
from bots.observability import webhook_observed
from bots.selectors import bot_get_by_id
from bots.services.outbox import outbox_sweep_if_due
from bots.services.updates import update_process

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_READ_CHUNK = 65536
_MAX_INT_DIGITS = 4000


class _BodyTooLarge(Exception):
    pass


class _BodyMalformed(Exception):
    pass


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _body_stream(request: HttpRequest) -> Any:
    # A chunked body has no Content-Length, so Django's own stream reads
    # nothing; a server that terminates the input (gunicorn) lets us read it.
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if chunked and request.META.get("wsgi.input_terminated"):
        return request.META["wsgi.input"]

    return request


def _read_body(request: HttpRequest, limit: int) -> bytes:
    stream = _body_stream(request)
    chunks = []
    total = 0
    while True:
        try:
            chunk = stream.read(_READ_CHUNK)
        except (ParseException, OSError) as exc:
            # gunicorn decodes a chunked body while it is read and raises on
            # bad framing; Django raises when the client stops sending.
            raise _BodyMalformed from exc
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            raise _BodyTooLarge
        chunks.append(chunk)

    return b"".join(chunks)


def _parse_int(text: str) -> int | float:
    # Python refuses to read integers of more than 4300 digits; such a
    # number inside an update is valid JSON that the runtime never needs.
    if len(text) > _MAX_INT_DIGITS:
        return float("-inf") if text.startswith("-") else float("inf")

    return int(text)


def _envelope_error(body: bytes) -> tuple[dict[str, Any] | None, str | None]:
    try:
        # Strict decoding: json.loads on bytes would let encoded surrogates
        # through ("surrogatepass"), which no database can store.
        text = body.decode(json.detect_encoding(body))
        update = json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int)
    except (ValueError, RecursionError):
        return None, "The body is not valid JSON."
    if not isinstance(update, dict):
        return None, "The body must be a JSON object."

    update_id = update.get("update_id")
    if isinstance(update_id, bool) or not isinstance(update_id, int):
        return None, "update_id must be an integer."
    if not _INT64_MIN <= update_id <= _INT64_MAX:
        return None, "update_id does not fit 64 bits."

    return update, None


def _secret_matches(request: HttpRequest, bot: Bot) -> bool:
    supplied = request.headers.get(SECRET_HEADER, "").encode("utf-8")
    # During a rotation the previous secret is accepted too, until Telegram
    # confirms the new one.
    accepted = [
        secret.encode("utf-8")
        for secret in (bot.webhook_secret, bot.webhook_secret_previous)
        if secret
    ]

    # compare_digest takes time independent of where the texts differ; every
    # accepted secret is compared, so timing does not tell which one matched.
    matches = [hmac.compare_digest(supplied, secret) for secret in accepted]

    return any(matches)


@csrf_exempt
@webhook_observed
def telegram_webhook(request: HttpRequest, bot_id: int) -> JsonResponse:
    if request.method != "POST":
        response = json_error("Use POST.", code="method_not_allowed", status=405)
        response["Allow"] = "POST"
        return response

    context_bind(bot_id=bot_id)
    bot = bot_get_by_id(bot_id=bot_id)
    if bot is None:
        return json_error("No such bot.", code="bot_not_found", status=404)
    if not _secret_matches(request, bot):
        return json_error(
            "Wrong or missing secret token.", code="forbidden", status=403
        )
    if not bot.is_active:
        # Telegram keeps a refused update for up to a day, so a bot switched
        # back on in time still gets what came while it was off.
        return json_error("The bot is not active.", code="bot_inactive", status=404)
    if (request.content_type or "").lower() != "application/json":
        return json_error(
            "The body must be application/json.",
            code="unsupported_media_type",
            status=415,
        )

    limit = settings.WEBHOOK_MAX_BODY_BYTES
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        return json_error(
            "Content-Length is malformed.", code="bad_request", status=400
        )
    if declared > limit:
        return json_error(
            "The body is too large.", code="payload_too_large", status=413
        )
    try:
        body = _read_body(request, limit)
    except _BodyTooLarge:
        return json_error(
            "The body is too large.", code="payload_too_large", status=413
        )
    except _BodyMalformed:
        return json_error("The body cannot be read.", code="bad_request", status=400)

    update, problem = _envelope_error(body)
    if update is None:
        return json_error(problem or "Bad update.", code="bad_update", status=400)

    context_bind(update_id=update["update_id"])
    update_process(bot=bot, update=update)
    if settings.CELERY_TASK_ALWAYS_EAGER:
        outbox_sweep_if_due()

    return JsonResponse({"ok": True})
