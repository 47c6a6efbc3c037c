"""Export a whole bot as one file, and import one (a new bot or a replace)."""

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from botfactory.errors import ApplicationError
from bots.services.access import (
    Level,
    bot_get_for_user,
    user_has_any_access,
    user_may_add_bot,
)
from bots.services.transfer import (
    FILE_MAX_BYTES,
    bot_export,
    bot_file_dumps,
    bot_file_loads,
    bot_import,
)


class BotImportForm(forms.Form):
    file = forms.FileField(label=gettext_lazy("bot file (.bot.json)"))
    slug = forms.SlugField(
        label=gettext_lazy("slug"),
        max_length=64,
        required=False,
        help_text=gettext_lazy("Leave empty to use the file's slug."),
    )
    replace = forms.BooleanField(
        label=gettext_lazy("Replace the existing bot with this slug"),
        required=False,
        help_text=gettext_lazy(
            "Its settings, draft, translations and transcripts become the "
            "file's; its token, secrets and conversations stay."
        ),
    )

    def clean_file(self) -> bytes:
        upload = self.cleaned_data["file"]
        if upload.size > FILE_MAX_BYTES:
            raise forms.ValidationError(
                _("The file is larger than %(limit)s MB."),
                params={"limit": FILE_MAX_BYTES // 2**20},
                code="file_too_large",
            )

        return bytes(upload.read())


def _export_view(request: HttpRequest, bot_id: int) -> HttpResponse:
    bot = bot_get_for_user(user=request.user, bot_id=bot_id, level=Level.VIEW)

    text = bot_file_dumps(data=bot_export(bot=bot))

    response = HttpResponse(text, content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{bot.slug}.bot.json"'

    return response


def _problems(exc: ApplicationError) -> list[str]:
    fields: dict[str, list[str]] = exc.extra.get("fields") or {}
    lines = [f"{where}: {text}" for where, texts in fields.items() for text in texts]

    return lines or [exc.message]


def _import_view(site: AdminSite, request: HttpRequest) -> HttpResponse:
    if not (
        user_may_add_bot(user=request.user)
        or user_has_any_access(user=request.user, level=Level.EDIT)
    ):
        raise PermissionDenied

    form = BotImportForm(request.POST or None, request.FILES or None)
    problems: list[str] = []
    if request.method == "POST" and form.is_valid():
        try:
            data = bot_file_loads(content=form.cleaned_data["file"])
            result = bot_import(
                data=data,
                slug=form.cleaned_data["slug"] or None,
                author=request.user,
                replace=form.cleaned_data["replace"],
            )
        except ApplicationError as exc:
            problems = _problems(exc)
        else:
            messages.success(
                request,
                _("%(bot)s imported.") % {"bot": result.bot.name},
            )
            return HttpResponseRedirect(
                reverse("admin:bots_bot_change", args=[result.bot.pk])
            )

    context: dict[str, Any] = {
        **site.each_context(request),
        "title": _("Import a bot"),
        "form": form,
        "problems": problems,
    }

    return TemplateResponse(request, "studio/import.html", context)


def urls(site: AdminSite) -> list[URLPattern]:
    def import_view(request: HttpRequest) -> HttpResponse:
        return _import_view(site, request)

    return [
        path(
            "<int:bot_id>/studio/export/",
            site.admin_view(_export_view),
            name="bots_bot_studio_export",
        ),
        path(
            "studio/import/",
            site.admin_view(import_view),
            name="bots_bot_studio_import",
        ),
    ]
