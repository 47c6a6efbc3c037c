"""What the studio's JSON endpoints share: their errors and their bot lookup."""

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, JsonResponse

from bots.models import Bot
from bots.services.access import Level, bot_access_require


def json_error(status: int, code: str, detail: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"detail": detail, "code": code, **extra}, status=status)


def json_bot_for_editing(request: HttpRequest, bot_id: int) -> Bot | JsonResponse:
    """The bot the request may edit, or the JSON error that says why not."""
    bot = Bot.objects.filter(pk=bot_id).first()
    if bot is None:
        return json_error(404, "not_found", "There is no such bot.")
    try:
        bot_access_require(user=request.user, bot=bot, level=Level.EDIT)
    except PermissionDenied:
        return json_error(403, "permission_denied", "You may not edit this bot.")

    return bot
