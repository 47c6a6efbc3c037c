"""The diagram page: the flow of a spec version, or the draft, as a graph."""

from typing import Any

from django.contrib.admin import AdminSite
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import URLPattern, path
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _

from bots.models import Bot
from bots.services.access import Level, bot_access_require
from bots.services.diagram import diagram_build
from bots.services.local_specs import VersionUnknownError, spec_version_number_parse

DRAFT = "draft"


def _context(request: HttpRequest, site: AdminSite, bot: Bot) -> dict[str, Any]:
    # Imported here: the studio's URL module imports this page's module.
    from bots.studio.urls import studio_links

    return {
        **site.each_context(request),
        "bot": bot,
        "title": _("Diagram"),
        "studio_links": studio_links(bot.pk),
        "versions": list(
            bot.versions.order_by("-number").values_list("number", flat=True)
        ),
        "live_number": bot.live_version.number if bot.live_version else None,
    }


def diagram_view(request: HttpRequest, bot_id: int, site: AdminSite) -> HttpResponse:
    bot = get_object_or_404(Bot.objects.select_related("live_version"), pk=bot_id)
    bot_access_require(user=request.user, bot=bot, level=Level.VIEW)

    context = _context(request, site, bot)
    version = request.GET.get("version", DRAFT)[:20]
    context["version"] = version
    try:
        number = spec_version_number_parse(bot=bot, version=version)
    except VersionUnknownError as exc:
        context["version_error"] = exc.message
        return render(request, "studio/diagram.html", context, status=400)

    diagram = diagram_build(bot=bot, number=number)
    context.update(
        number=number,
        graph=diagram.graph,
        errors=diagram.errors,
        # Built with ElementTree, which escapes every text it holds.
        svg=mark_safe(diagram.svg),
    )

    return render(request, "studio/diagram.html", context)


def urls(site: AdminSite) -> list[URLPattern]:
    def view(request: HttpRequest, bot_id: int) -> HttpResponse:
        return diagram_view(request, bot_id, site)

    return [
        path(
            "<int:bot_id>/studio/diagram/",
            site.admin_view(view),
            name="bots_bot_studio_diagram",
        )
    ]
