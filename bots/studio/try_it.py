"""The "Try it" page: chat with any spec version, or the draft, in the browser.

The page's script talks to JSON endpoints beside it: ``log`` (GET: the
version's locales and the conversation so far), and ``send``, ``press``,
``reset`` and ``save`` (POST, a JSON object each). Errors are JSON with a
``code``. What was said and answered is kept in the session, one log per
version, for the page to show again and to save as a draft test.
"""

import json
from collections.abc import Callable
from typing import Any

from django.contrib.admin import AdminSite
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext as _

from botfactory.errors import ApplicationError
from bots.models import Bot
from bots.services.access import Level, bot_access_require
from bots.services.local_specs import spec_version_number_parse
from bots.services.specs import SpecRejectedError
from bots.services.try_chat import (
    MAX_LOG_ENTRIES,
    try_chat_press,
    try_chat_reset,
    try_chat_send,
    try_spec_get,
    try_transcript_save,
)
from bots.studio.json_api import json_bot_for_editing, json_error

_View = Callable[[HttpRequest, Bot], JsonResponse]


def _log_key(bot: Bot, number: int) -> str:
    return f"studio.try.{bot.pk}.{number}"


def _log(request: HttpRequest, bot: Bot, number: int) -> list[dict[str, Any]]:
    log = request.session.get(_log_key(bot, number))

    return log if isinstance(log, list) else []


def _log_append(
    request: HttpRequest, bot: Bot, number: int, entry: dict[str, Any]
) -> None:
    log = [*_log(request, bot, number), entry][-MAX_LOG_ENTRIES:]
    request.session[_log_key(bot, number)] = log


def _body(request: HttpRequest) -> dict[str, Any]:
    try:
        data = json.loads(request.body.decode("utf-8"))
    except RequestDataTooBig:
        raise ApplicationError(
            "The request is too large.", code="payload_too_large"
        ) from None
    except (UnicodeDecodeError, ValueError):
        raise ApplicationError("Send a JSON object.", code="json_invalid") from None
    if not isinstance(data, dict):
        raise ApplicationError("Send a JSON object.", code="json_invalid")

    return data


def _field(data: dict[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    # A JSON true is no number, though Python counts it as one.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ApplicationError(
            f"{name} must be {'a number' if kind is int else 'text'}.",
            code="field_invalid",
            extra={"fields": {name: ["Required."]}},
        )

    return value


def _number(bot: Bot, data: dict[str, Any]) -> int:
    return spec_version_number_parse(bot=bot, version=_field(data, "version", str))


def _send(request: HttpRequest, bot: Bot) -> JsonResponse:
    data = _body(request)
    number = _number(bot, data)
    entry = try_chat_send(
        bot=bot,
        user=request.user,
        number=number,
        locale=_field(data, "locale", str),
        text=_field(data, "text", str),
    )
    _log_append(request, bot, number, entry)

    return JsonResponse({"entry": entry})


def _press(request: HttpRequest, bot: Bot) -> JsonResponse:
    data = _body(request)
    number = _number(bot, data)
    entry = try_chat_press(
        bot=bot,
        user=request.user,
        number=number,
        locale=_field(data, "locale", str),
        message_id=_field(data, "message_id", int),
        index=_field(data, "index", int),
    )
    _log_append(request, bot, number, entry)

    return JsonResponse({"entry": entry})


def _reset(request: HttpRequest, bot: Bot) -> JsonResponse:
    number = _number(bot, _body(request))
    try_chat_reset(bot=bot, user=request.user, number=number)
    request.session.pop(_log_key(bot, number), None)

    return JsonResponse({"entries": []})


def _save(request: HttpRequest, bot: Bot) -> JsonResponse:
    data = _body(request)
    number = _number(bot, data)
    locale = _field(data, "locale", str)
    if locale not in try_spec_get(bot=bot, number=number).locales:
        raise ApplicationError(
            f"The spec has no locale {locale[:16]!r}.", code="unknown_locale"
        )
    transcript = try_transcript_save(
        bot=bot,
        user=request.user,
        name=_field(data, "name", str),
        locale=locale,
        log=_log(request, bot, number),
    )

    return JsonResponse(
        {
            "transcript": {
                "id": transcript.pk,
                "name": transcript.name,
                "steps": len(transcript.steps),
            }
        },
        status=201,
    )


def _log_view(request: HttpRequest, bot: Bot) -> JsonResponse:
    number = spec_version_number_parse(
        bot=bot, version=request.GET.get("version", "")[:20]
    )
    spec = try_spec_get(bot=bot, number=number)

    return JsonResponse(
        {
            "locales": spec.locales,
            "default_locale": spec.default_locale,
            "entries": _log(request, bot, number),
        }
    )


def _json_endpoint(view: _View, *, method: str) -> Callable[..., JsonResponse]:
    def endpoint(request: HttpRequest, bot_id: int) -> JsonResponse:
        if request.method != method:
            response = json_error(
                405, "method_not_allowed", f"Use {method} for this endpoint."
            )
            response["Allow"] = method
            return response
        bot = json_bot_for_editing(request, bot_id)
        if isinstance(bot, JsonResponse):
            return bot
        try:
            return view(request, bot)
        except SpecRejectedError as exc:
            return json_error(400, exc.code, exc.message, fields=exc.fields)
        except ApplicationError as exc:
            return json_error(exc.status_code, exc.code, exc.message, **exc.extra)

    return endpoint


def _versions(bot: Bot) -> list[tuple[str, str]]:
    choices = [("draft", _("draft"))]
    live = bot.live_version.number if bot.live_version else None
    if live is not None:
        choices.append(("live", _("live (version %(number)s)") % {"number": live}))
    for number in bot.versions.order_by("-number").values_list("number", flat=True):
        label = _("version %(number)s") % {"number": number}
        choices.append((str(number), label))

    return choices


def try_page(request: HttpRequest, bot_id: int, site: AdminSite) -> HttpResponse:
    # Imported here: the studio's URL module imports this page's module.
    from bots.studio.urls import studio_links

    bot = get_object_or_404(Bot.objects.select_related("live_version"), pk=bot_id)
    bot_access_require(user=request.user, bot=bot, level=Level.EDIT)

    versions = _versions(bot)
    asked = request.GET.get("version", "")
    keys = [key for key, _label in versions]
    version = asked if asked in keys else ("live" if "live" in keys else "draft")
    endpoints = {
        name: reverse(f"admin:bots_bot_studio_try_{name}", args=[bot.pk])
        for name in ("log", "send", "press", "reset", "save")
    }
    context = {
        **site.each_context(request),
        "bot": bot,
        "title": _("Try it"),
        "studio_links": studio_links(bot.pk),
        "versions": versions,
        "version": version,
        "endpoints": endpoints,
    }

    return render(request, "studio/try.html", context)


def urls(site: AdminSite) -> list[URLPattern]:
    def page(request: HttpRequest, bot_id: int) -> HttpResponse:
        return try_page(request, bot_id, site)

    endpoints = {
        "log": _json_endpoint(_log_view, method="GET"),
        "send": _json_endpoint(_send, method="POST"),
        "press": _json_endpoint(_press, method="POST"),
        "reset": _json_endpoint(_reset, method="POST"),
        "save": _json_endpoint(_save, method="POST"),
    }

    return [
        path(
            "<int:bot_id>/studio/try/",
            site.admin_view(page),
            name="bots_bot_studio_try",
        ),
        *(
            path(
                f"<int:bot_id>/studio/try/{name}/",
                site.admin_view(view),
                name=f"bots_bot_studio_try_{name}",
            )
            for name, view in endpoints.items()
        ),
    ]
