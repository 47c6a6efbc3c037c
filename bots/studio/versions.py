"""The versions page: the draft and every published version, a diff between
any two, publish and one-click rollback."""

import difflib
import json
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.admin import AdminSite
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext as _

from bots.models import Bot, SpecVersion
from bots.services.access import Level, bot_access_level, bot_access_require
from bots.services.specs import (
    SpecRejectedError,
    spec_differs_from_live,
    spec_publish,
    spec_rollback,
)
from dsl import LintIssue, SpecInvalidError, spec_validate

DRAFT = "draft"
_DIFF_CONTEXT_LINES = 3


class PublishForm(forms.Form):
    message = forms.CharField(max_length=500, required=False, strip=True)


class RollbackForm(forms.Form):
    number = forms.IntegerField(min_value=1)


class DiffForm(forms.Form):
    a = forms.CharField(max_length=20)
    b = forms.CharField(max_length=20)


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "add", "remove", "hunk", "file" or "same"
    text: str


def _problems_text(fields: dict[str, list[str]]) -> str:
    return "; ".join(
        f"{path}: {message}" for path, texts in fields.items() for message in texts
    )


def _draft_state(bot: Bot) -> tuple[bool, bool]:
    """Whether the draft is valid, and whether publishing it changes anything."""
    if not bot.draft_spec:
        return False, False
    try:
        return True, spec_differs_from_live(bot=bot, source=bot.draft_spec)
    except SpecInvalidError:
        return False, True


def _pretty(source: Any) -> list[str]:
    return json.dumps(source, indent=2, sort_keys=True, ensure_ascii=False).split("\n")


def _side_source(bot: Bot, side: str) -> tuple[str, Any] | None:
    """The label and JSON of ``draft`` or a version number, None if unknown."""
    if side == DRAFT:
        try:
            # Versions hold the canonical JSON; so does the draft shown here,
            # so that the diff is what publishing would change.
            return _("draft"), spec_validate(bot.draft_spec).as_json()
        except SpecInvalidError:
            return _("draft"), bot.draft_spec
    if not side.isdigit():
        return None
    version = bot.versions.filter(number=int(side)).first()
    if version is None:
        return None

    return f"v{version.number}", version.source


def spec_diff_lines(*, a_label: str, a: Any, b_label: str, b: Any) -> list[DiffLine]:
    """Return the unified diff of two specs' pretty-printed JSON."""
    lines = difflib.unified_diff(
        _pretty(a),
        _pretty(b),
        fromfile=a_label,
        tofile=b_label,
        n=_DIFF_CONTEXT_LINES,
        lineterm="",
    )
    result = []
    for line in lines:
        if line.startswith(("---", "+++")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "remove"
        else:
            kind = "same"
        result.append(DiffLine(kind=kind, text=line))

    return result


def _context(request: HttpRequest, site: AdminSite, bot: Bot, title: str) -> Any:
    # Imported here: the studio's URL module imports this page's module.
    from bots.studio.urls import studio_links

    return {
        **site.each_context(request),
        "bot": bot,
        "title": title,
        "studio_links": studio_links(bot.pk),
    }


def _versions_url(bot: Bot) -> str:
    return reverse("admin:bots_bot_studio_versions", args=[bot.pk])


def _page(
    request: HttpRequest, site: AdminSite, bot: Bot, publish_form: PublishForm
) -> HttpResponse:
    draft_valid, draft_differs = _draft_state(bot)
    versions = list(bot.versions.select_related("author").order_by("-number"))
    context = {
        **_context(request, site, bot, _("Versions of %(bot)s") % {"bot": bot.name}),
        "versions": versions,
        "live_id": bot.live_version_id,
        "has_draft": bool(bot.draft_spec),
        "draft_valid": draft_valid,
        "draft_differs": draft_differs,
        "may_publish": bot_access_level(user=request.user, bot=bot) >= Level.PUBLISH,
        "publish_form": publish_form,
        "default_a": str(bot.live_version.number) if bot.live_version else DRAFT,
    }

    return render(request, "studio/versions.html", context)


def _warnings_show(request: HttpRequest, warnings: list[LintIssue]) -> None:
    for issue in warnings:
        messages.warning(request, f"{issue.path}: {issue.message}")


def _publish(request: HttpRequest, site: AdminSite, bot: Bot) -> HttpResponse:
    form = PublishForm(request.POST)
    if not form.is_valid():
        return _page(request, site, bot, form)
    if not bot.draft_spec:
        messages.error(request, _("The draft is empty: there is nothing to publish."))
        return redirect(_versions_url(bot))
    valid, differs = _draft_state(bot)
    if valid and not differs:
        assert bot.live_version is not None
        messages.info(
            request,
            _("The draft is the live version %(number)s: there is nothing to publish.")
            % {"number": bot.live_version.number},
        )
        return redirect(_versions_url(bot))

    try:
        version, warnings = spec_publish(
            bot=bot,
            source=bot.draft_spec,
            author=request.user,
            message=form.cleaned_data["message"],
        )
    except SpecRejectedError as exc:
        messages.error(
            request,
            _("Not published: %(errors)s") % {"errors": _problems_text(exc.fields)},
        )
        return redirect(_versions_url(bot))

    messages.success(
        request, _("Published as version %(number)s.") % {"number": version.number}
    )
    _warnings_show(request, warnings)

    return redirect(_versions_url(bot))


def _rollback(request: HttpRequest, bot: Bot) -> HttpResponse:
    form = RollbackForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose a version to roll back to."))
        return redirect(_versions_url(bot))

    number = form.cleaned_data["number"]
    try:
        version, warnings = spec_rollback(bot=bot, number=number, author=request.user)
    except SpecVersion.DoesNotExist:
        messages.error(
            request, _("There is no version %(number)s.") % {"number": number}
        )
        return redirect(_versions_url(bot))
    except SpecRejectedError as exc:
        messages.error(
            request,
            _("Not rolled back to version %(number)s: %(errors)s")
            % {"number": number, "errors": _problems_text(exc.fields)},
        )
        return redirect(_versions_url(bot))

    messages.success(
        request,
        _("Rolled back: version %(old)s is live again as version %(number)s.")
        % {"old": number, "number": version.number},
    )
    _warnings_show(request, warnings)

    return redirect(_versions_url(bot))


def _diff(request: HttpRequest, site: AdminSite, bot: Bot) -> HttpResponse:
    form = DiffForm(request.GET)
    a = b = None
    if form.is_valid():
        a = _side_source(bot, form.cleaned_data["a"])
        b = _side_source(bot, form.cleaned_data["b"])
    context = _context(request, site, bot, _("Diff of %(bot)s") % {"bot": bot.name})
    if a is None or b is None:
        context["error"] = _(
            "Choose two versions to compare: a and b are a version number or draft."
        )
        return render(request, "studio/diff.html", context, status=400)

    (a_label, a_source), (b_label, b_source) = a, b
    context.update(
        {
            "a_label": a_label,
            "b_label": b_label,
            "lines": spec_diff_lines(
                a_label=a_label, a=a_source, b_label=b_label, b=b_source
            ),
        }
    )

    return render(request, "studio/diff.html", context)


def urls(site: AdminSite) -> list[URLPattern]:
    def versions_view(request: HttpRequest, bot_id: int) -> HttpResponse:
        bot = get_object_or_404(Bot, pk=bot_id)
        if request.method != "POST":
            bot_access_require(user=request.user, bot=bot, level=Level.VIEW)
            return _page(request, site, bot, PublishForm())

        bot_access_require(user=request.user, bot=bot, level=Level.PUBLISH)
        if request.POST.get("action") == "rollback":
            return _rollback(request, bot)

        return _publish(request, site, bot)

    def diff_view(request: HttpRequest, bot_id: int) -> HttpResponse:
        bot = get_object_or_404(Bot, pk=bot_id)
        bot_access_require(user=request.user, bot=bot, level=Level.VIEW)

        return _diff(request, site, bot)

    return [
        path(
            "<int:bot_id>/studio/versions/",
            site.admin_view(versions_view),
            name="bots_bot_studio_versions",
        ),
        path(
            "<int:bot_id>/studio/versions/diff/",
            site.admin_view(diff_view),
            name="bots_bot_studio_diff",
        ),
    ]
