"""Checking a bot's draft spec as it is typed, for the editor on its form.

``POST`` the draft's JSON text as the body; the answer lists its errors and
warnings by path, as saving the form would find them. Nothing is saved.
"""

from django.contrib.admin import AdminSite
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.urls import URLPattern, path

from bots.models import Bot
from bots.services.spec_editing import spec_draft_check
from bots.studio.json_api import json_bot_for_editing, json_error


def _check(request: HttpRequest, bot: Bot | None) -> JsonResponse:
    try:
        text = request.body.decode("utf-8")
    except RequestDataTooBig:
        return json_error(413, "payload_too_large", "The draft is too large.")
    except UnicodeDecodeError:
        return json_error(400, "encoding_invalid", "The draft must be UTF-8 text.")

    errors, warnings = spec_draft_check(bot=bot, text=text)

    return JsonResponse(
        {
            "errors": [problem.as_json() for problem in errors],
            "warnings": [problem.as_json() for problem in warnings],
        }
    )


def _not_post(request: HttpRequest) -> JsonResponse | None:
    if request.method == "POST":
        return None
    response = json_error(405, "method_not_allowed", "Send the draft with POST.")
    response["Allow"] = "POST"

    return response


def urls(site: AdminSite) -> list[URLPattern]:
    def check_view(request: HttpRequest, bot_id: int) -> JsonResponse:
        refused = _not_post(request)
        if refused is not None:
            return refused
        bot = json_bot_for_editing(request, bot_id)
        if isinstance(bot, JsonResponse):
            return bot

        return _check(request, bot)

    def check_new_view(request: HttpRequest) -> JsonResponse:
        refused = _not_post(request)
        if refused is not None:
            return refused
        if not site.get_model_admin(Bot).has_add_permission(request):
            return json_error(403, "permission_denied", "You may not add bots.")

        return _check(request, None)

    return [
        path(
            "<int:bot_id>/studio/check/",
            site.admin_view(check_view),
            name="bots_bot_studio_check",
        ),
        path(
            "studio/check/",
            site.admin_view(check_new_view),
            name="bots_bot_studio_check_new",
        ),
    ]
