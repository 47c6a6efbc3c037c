"""The operations page: a bot's traffic, errors, backlog, LLM and webhook."""

from django.contrib.admin import AdminSite
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.translation import gettext as _

from bots.services.access import Level, bot_get_for_user
from bots.services.ops import bot_ops_get

# The module, not the name: bots.studio.urls imports this page first.
from bots.studio import urls as studio


def _ops_view(site: AdminSite, request: HttpRequest, bot_id: int) -> HttpResponse:
    bot = bot_get_for_user(user=request.user, bot_id=bot_id, level=Level.VIEW)

    ops = bot_ops_get(bot=bot)

    context = {
        **site.each_context(request),
        "bot": bot,
        "title": _("Operations"),
        "studio_links": studio.studio_links(bot.pk),
        "ops": ops,
        "ops_windows": [("hour", ops.hour), ("day", ops.day)],
        "ops_cache_percent": (
            None
            if ops.llm.cache_hit_rate is None
            else round(ops.llm.cache_hit_rate * 100, 1)
        ),
    }

    return TemplateResponse(request, "studio/ops.html", context)


def urls(site: AdminSite) -> list[URLPattern]:
    def view(request: HttpRequest, bot_id: int) -> HttpResponse:
        return _ops_view(site, request, bot_id)

    return [
        path(
            "<int:bot_id>/studio/ops/",
            site.admin_view(view),
            name="bots_bot_studio_ops",
        )
    ]
