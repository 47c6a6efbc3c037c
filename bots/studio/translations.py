"""The translations page: a table of every key in every locale, cell edits,
and files (JSON, CSV) exported and imported.

An import is a preview first: the checked data waits in the cache under a
random token until the member of staff applies it, so the file is uploaded
once.
"""

import secrets
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.admin import AdminSite
from django.core.cache import cache
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from bots.models import Bot
from bots.services.access import Level, bot_access_level, bot_access_require
from bots.services.translations import (
    bot_translation_grid_get,
    bot_translation_locales_list,
    bot_translation_set,
    bot_translations_import,
)
from i18n.plurals import PLURAL_CATEGORIES, PLURAL_OTHER, plural_categories
from i18n.selectors import CellState, TranslationCell, TranslationGrid
from i18n.services import TranslationInvalidError
from i18n.transfer import (
    CONTENT_TYPES,
    CSV_HEADER,
    FILE_MAX_BYTES,
    FORMATS,
    TranslationImportReport,
    translations_export,
    translations_file_dump,
    translations_file_load,
)

# Long enough to read a preview, short enough not to keep stale files.
IMPORT_PREVIEW_SECONDS = 30 * 60
FORMAT_AUTO = "auto"


class CellForm(forms.Form):
    """One cell's texts: a field per plural category; ``other`` alone is a
    plain text."""

    locale = forms.CharField(max_length=35)
    key = forms.CharField(max_length=200)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for category in PLURAL_CATEGORIES:
            self.fields[f"form_{category}"] = forms.CharField(
                required=False, strip=False, max_length=10_000
            )

    def texts(self) -> dict[str, str]:
        # Browsers send a textarea's line breaks as CRLF; the stored texts
        # use LF, so that an untouched cell saves as it was.
        found = {
            category: self.cleaned_data[f"form_{category}"].replace("\r\n", "\n")
            for category in PLURAL_CATEGORIES
        }

        return {category: text for category, text in found.items() if text}


class ImportForm(forms.Form):
    file = forms.FileField()
    format = forms.ChoiceField(
        choices=[
            (FORMAT_AUTO, gettext_lazy("from the file name")),
            *((f, f) for f in FORMATS),
        ],
        initial=FORMAT_AUTO,
    )

    def file_format(self) -> str | None:
        chosen = self.cleaned_data["format"]
        if chosen != FORMAT_AUTO:
            return str(chosen)
        suffix = str(self.cleaned_data["file"].name).rsplit(".", 1)[-1].lower()

        return suffix if suffix in FORMATS else None


@dataclass(frozen=True)
class _CellView:
    cell: TranslationCell
    fields: list[tuple[str, str]]
    anchor: str
    is_open: bool = False


def _cell_fields(cell: TranslationCell) -> list[tuple[str, str]]:
    texts = cell.forms or {}

    return [
        (category, texts.get(category, ""))
        for category in plural_categories(cell.locale)
    ]


def _anchor(locale: str, key: str) -> str:
    return f"cell-{locale}-{key}".replace(".", "-")


def _table(grid: TranslationGrid, failed: CellForm | None) -> list[dict[str, Any]]:
    failed_at = None
    if failed is not None:
        failed_at = (failed.data.get("locale"), failed.data.get("key"))

    rows = []
    for row in grid.rows:
        cells = []
        for cell in row.cells:
            is_open = failed_at == (cell.locale, row.key)
            fields = _cell_fields(cell)
            if is_open and failed is not None:
                fields = [
                    (category, str(failed.data.get(f"form_{category}", "")))
                    for category, _text in fields
                ]
            anchor = _anchor(cell.locale, row.key)
            cells.append(_CellView(cell, fields, anchor, is_open))
        rows.append({"key": row.key, "is_used": row.is_used, "cells": cells})

    return rows


def _page(
    request: HttpRequest,
    site: AdminSite,
    bot: Bot,
    *,
    status: int = 200,
    cell_form: CellForm | None = None,
    import_form: ImportForm | None = None,
    import_errors: dict[str, list[str]] | None = None,
    preview: TranslationImportReport | None = None,
    preview_token: str = "",
) -> HttpResponse:
    # Imported here: the studio's URL module imports this page's module.
    from bots.studio.urls import studio_links

    only_problems = request.GET.get("only") == "problems"
    grid = bot_translation_grid_get(bot=bot, only_problems=only_problems)
    columns = [
        {"locale": locale, "counts": grid.counts[locale]} for locale in grid.locales
    ]
    context = {
        **site.each_context(request),
        "bot": bot,
        "title": _("Translations of %(bot)s") % {"bot": bot.name},
        "studio_links": studio_links(bot.pk),
        "grid": grid,
        "columns": columns,
        "rows": _table(grid, cell_form),
        "states": list(CellState),
        "only_problems": only_problems,
        "may_edit": bot_access_level(user=request.user, bot=bot) >= Level.EDIT,
        "cell_form": cell_form,
        "import_form": import_form or ImportForm(),
        "import_errors": import_errors,
        "preview": preview,
        "preview_token": preview_token,
        "csv_header": ",".join(CSV_HEADER),
        "file_max_mb": FILE_MAX_BYTES // (1024 * 1024),
    }

    return render(request, "studio/translations.html", context, status=status)


def _table_url(bot: Bot) -> str:
    return reverse("admin:bots_bot_studio_translations", args=[bot.pk])


def _preview_key(bot: Bot, request: HttpRequest, token: str) -> str:
    return f"studio:translations-import:{bot.pk}:{request.user.pk}:{token}"


def _cell_save(request: HttpRequest, site: AdminSite, bot: Bot) -> HttpResponse:
    form = CellForm(request.POST)
    locales = bot_translation_locales_list(bot=bot)
    if form.is_valid() and form.cleaned_data["locale"] not in locales:
        form.add_error("locale", _("Not a locale of this bot."))
    if not form.is_valid():
        return _page(request, site, bot, status=400, cell_form=form)

    locale, key, texts = (
        form.cleaned_data["locale"],
        form.cleaned_data["key"],
        form.texts(),
    )
    plain = set(texts) == {PLURAL_OTHER}
    try:
        bot_translation_set(
            bot=bot,
            locale=locale,
            key=key,
            forms=texts[PLURAL_OTHER] if plain else texts,
        )
    except TranslationInvalidError as exc:
        for where, found in exc.fields.items():
            category = where.removeprefix("forms").lstrip(".")
            field = f"form_{category}" if category else None
            for message in found:
                form.add_error(field if field in form.fields else None, message)
        return _page(request, site, bot, status=400, cell_form=form)

    messages.success(
        request,
        _("Saved the text of %(key)s in %(locale)s.") % {"key": key, "locale": locale},
    )

    # Back to the same view: a filtered table stays filtered.
    query = "?only=problems" if request.GET.get("only") == "problems" else ""

    return redirect(f"{_table_url(bot)}{query}#{_anchor(locale, key)}")


def _import_preview(request: HttpRequest, site: AdminSite, bot: Bot) -> HttpResponse:
    form = ImportForm(request.POST, request.FILES)
    if not form.is_valid():
        return _page(request, site, bot, status=400, import_form=form)

    upload: UploadedFile = form.cleaned_data["file"]
    file_format = form.file_format()
    problems: dict[str, list[str]] = {}
    if file_format is None:
        problems["format"] = [_("Choose the format: the file name ends in neither.")]
    elif (upload.size or 0) > FILE_MAX_BYTES:
        limit = FILE_MAX_BYTES // (1024 * 1024)
        problems["file"] = [
            _("The file is larger than %(limit)s MB.") % {"limit": limit}
        ]
    if problems or file_format is None:
        return _page(request, site, bot, status=400, import_errors=problems)

    locales = bot_translation_locales_list(bot=bot)
    try:
        data = translations_file_load(
            content=upload.read(), file_format=file_format, locales=locales
        )
        report = bot_translations_import(bot=bot, data=data, apply=False)
    except TranslationInvalidError as exc:
        return _page(request, site, bot, status=400, import_errors=exc.fields)

    token = secrets.token_urlsafe(16)
    cache.set(_preview_key(bot, request, token), data, IMPORT_PREVIEW_SECONDS)

    return _page(request, site, bot, preview=report, preview_token=token)


def _import_apply(request: HttpRequest, site: AdminSite, bot: Bot) -> HttpResponse:
    token = request.POST.get("token", "")
    key = _preview_key(bot, request, token)
    data = cache.get(key) if token else None
    if data is None:
        expired = [_("The preview has expired; upload the file again.")]
        return _page(request, site, bot, status=400, import_errors={"file": expired})

    try:
        report = bot_translations_import(
            bot=bot, data=data, apply=True, actor=request.user
        )
    except TranslationInvalidError as exc:
        # The bot's locales may have changed since the preview.
        return _page(request, site, bot, status=400, import_errors=exc.fields)
    cache.delete(key)

    counts = {
        "added": len(report.added),
        "changed": len(report.changed),
        "unchanged": report.unchanged,
    }
    messages.success(
        request,
        _("Imported: %(added)s added, %(changed)s changed, %(unchanged)s unchanged.")
        % counts,
    )

    return redirect(_table_url(bot))


def urls(site: AdminSite) -> list[URLPattern]:
    def table_view(request: HttpRequest, bot_id: int) -> HttpResponse:
        bot = get_object_or_404(Bot, pk=bot_id)
        if request.method != "POST":
            bot_access_require(user=request.user, bot=bot, level=Level.VIEW)
            return _page(request, site, bot)

        bot_access_require(user=request.user, bot=bot, level=Level.EDIT)

        return _cell_save(request, site, bot)

    def export_view(request: HttpRequest, bot_id: int) -> HttpResponse:
        bot = get_object_or_404(Bot, pk=bot_id)
        bot_access_require(user=request.user, bot=bot, level=Level.VIEW)
        file_format = request.GET.get("format", "")
        if file_format not in FORMATS:
            detail = _("Give format=json or format=csv.")
            return JsonResponse(
                {"detail": detail, "code": "format_invalid"}, status=400
            )

        content = translations_file_dump(
            data=translations_export(bot=bot), file_format=file_format
        )
        response = HttpResponse(content, content_type=CONTENT_TYPES[file_format])
        name = f"{bot.slug}-translations.{file_format}"
        response["Content-Disposition"] = f'attachment; filename="{name}"'

        return response

    def import_view(request: HttpRequest, bot_id: int) -> HttpResponse:
        bot = get_object_or_404(Bot, pk=bot_id)
        bot_access_require(user=request.user, bot=bot, level=Level.EDIT)
        if request.method != "POST":
            return redirect(_table_url(bot))
        if request.POST.get("step") == "apply":
            return _import_apply(request, site, bot)

        return _import_preview(request, site, bot)

    return [
        path(
            "<int:bot_id>/studio/translations/",
            site.admin_view(table_view),
            name="bots_bot_studio_translations",
        ),
        path(
            "<int:bot_id>/studio/translations/export",
            site.admin_view(export_view),
            name="bots_bot_studio_translations_export",
        ),
        path(
            "<int:bot_id>/studio/translations/import",
            site.admin_view(import_view),
            name="bots_bot_studio_translations_import",
        ),
    ]
