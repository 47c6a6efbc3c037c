"""The tests page: a bot's conversation tests, marking drafts reviewed, and
running them against the draft or the live version."""

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.admin import AdminSite
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from bots.models import Bot, SpecVersion
from bots.services.access import Level, bot_access_level, bot_access_require
from bots.services.transcripts import (
    TranscriptResult,
    transcript_review,
    transcripts_run_all,
)
from dsl import SpecInvalidError

AGAINST_DRAFT = "draft"
AGAINST_LIVE = "live"


class RunForm(forms.Form):
    against = forms.ChoiceField(
        choices=[
            (AGAINST_DRAFT, gettext_lazy("the draft")),
            (AGAINST_LIVE, gettext_lazy("the live version")),
        ]
    )
    drafts = forms.BooleanField(required=False)


class ReviewForm(forms.Form):
    transcript = forms.IntegerField(min_value=1)


def _page(
    request: HttpRequest,
    site: AdminSite,
    bot: Bot,
    *,
    run_form: RunForm | None = None,
    results: list[TranscriptResult] | None = None,
    status: int = 200,
) -> HttpResponse:
    # Imported here: the studio's URL module imports this page's module.
    from bots.studio.urls import studio_links

    transcripts = list(bot.transcripts.order_by("name"))
    context: dict[str, Any] = {
        **site.each_context(request),
        "bot": bot,
        "title": _("Tests of %(bot)s") % {"bot": bot.name},
        "studio_links": studio_links(bot.pk),
        "transcripts": [
            {"transcript": t, "step_count": len(t.steps or [])} for t in transcripts
        ],
        "may_edit": bot_access_level(user=request.user, bot=bot) >= Level.EDIT,
        "run_form": run_form or RunForm(initial={"against": AGAINST_DRAFT}),
        "results": results,
        "passed": sum(1 for r in results or [] if r.passed),
        "failed": sum(1 for r in results or [] if not r.passed),
    }

    return render(request, "studio/tests.html", context, status=status)


def _tests_url(bot: Bot) -> str:
    return reverse("admin:bots_bot_studio_tests", args=[bot.pk])


def _run(request: HttpRequest, site: AdminSite, bot: Bot) -> HttpResponse:
    form = RunForm(request.POST)
    if not form.is_valid():
        return _page(request, site, bot, run_form=form, status=400)

    version: SpecVersion | dict[str, Any]
    if form.cleaned_data["against"] == AGAINST_LIVE:
        if bot.live_version is None:
            messages.error(request, _("Nothing is published yet."))
            return _page(request, site, bot, run_form=form, status=400)
        version = bot.live_version
    else:
        version = bot.draft_spec

    try:
        results = transcripts_run_all(
            bot=bot, version=version, include_drafts=form.cleaned_data["drafts"]
        )
    except SpecInvalidError as exc:
        problems = "; ".join(f"{e.path or '$'}: {e.message}" for e in exc.errors)
        messages.error(
            request, _("The draft has errors: %(errors)s") % {"errors": problems}
        )
        return _page(request, site, bot, run_form=form, status=400)

    return _page(request, site, bot, run_form=form, results=results)


def _review(request: HttpRequest, bot: Bot) -> HttpResponse:
    form = ReviewForm(request.POST)
    transcript = (
        bot.transcripts.filter(pk=form.cleaned_data["transcript"]).first()
        if form.is_valid()
        else None
    )
    if transcript is None:
        messages.error(request, _("There is no such test."))
        return redirect(_tests_url(bot))

    transcript_review(transcript=transcript)
    messages.success(
        request,
        _("%(name)s is reviewed: it now runs on every publish.")
        % {"name": transcript.name},
    )

    return redirect(_tests_url(bot))


def urls(site: AdminSite) -> list[URLPattern]:
    def tests_view(request: HttpRequest, bot_id: int) -> HttpResponse:
        bot = get_object_or_404(Bot, pk=bot_id)
        bot_access_require(user=request.user, bot=bot, level=Level.VIEW)
        if request.method != "POST":
            return _page(request, site, bot)
        if request.POST.get("action") == "review":
            bot_access_require(user=request.user, bot=bot, level=Level.EDIT)
            return _review(request, bot)

        return _run(request, site, bot)

    return [
        path(
            "<int:bot_id>/studio/tests/",
            site.admin_view(tests_view),
            name="bots_bot_studio_tests",
        ),
    ]
