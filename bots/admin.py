import json
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import F, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern
from django.utils.translation import gettext_lazy as _

from botfactory.parsers import json_unstorable_path
from bots.admin_access import (
    BotAccessInline,
    BotAccessMixin,
    BotInlineAccessMixin,
    BotRecordAccessMixin,
)
from bots.models import (
    TOKEN_RE,
    Bot,
    Conversation,
    OutboundMessage,
    SpecVersion,
    Transcript,
)
from bots.observability import spec_reload_record
from bots.services.access import Level, bot_access_require
from bots.services.bots import bot_activate, bot_deactivate, bot_sql_schema_apply
from bots.services.specs import SpecRejectedError, spec_check, spec_publish
from bots.services.transcripts import transcript_steps_problem
from bots.sql import SqlSchemaError, sql_deprovision, sql_schema_check
from bots.studio.urls import studio_links, studio_urls
from i18n.admin import TranslationAdmin, TranslationAdminForm
from i18n.models import Translation

# The bot id, a colon and the secret part, as BotFather issues them.


def _problems_text(fields: dict[str, list[str]]) -> str:
    return "; ".join(
        f"{path}: {message}" for path, texts in fields.items() for message in texts
    )


class SpecJSONField(forms.JSONField):
    """Show the stored spec indented, so that staff can edit it by hand."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value

        text = json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate (refused on save) is shown escaped, as typed;
            # raw, it could not be written into the page.
            return json.dumps(value, indent=2, cls=self.encoder)

        return text


class BotAdminForm(forms.ModelForm):
    new_token = forms.CharField(
        label=_("Telegram token"),
        required=False,
        strip=True,
        # Never rendered back, not even after an error elsewhere in the form.
        widget=forms.PasswordInput(render_value=False),
        help_text=_("Write-only. Leave empty to keep the stored token."),
    )
    clear_token = forms.BooleanField(
        label=_("Remove the token (demo mode)"), required=False
    )

    class Meta:
        model = Bot
        fields = [
            "name",
            "slug",
            "default_locale",
            "is_active",
            "allows_sql_writes",
            "draft_spec",
            "sql_schema_postgresql",
            "sql_schema_sqlite",
        ]
        field_classes = {"draft_spec": SpecJSONField}
        widgets = {
            "draft_spec": forms.Textarea(
                attrs={"rows": 30, "cols": 100, "style": "font-family: monospace"}
            ),
            "sql_schema_postgresql": forms.Textarea(
                attrs={"rows": 15, "cols": 100, "style": "font-family: monospace"}
            ),
            "sql_schema_sqlite": forms.Textarea(
                attrs={"rows": 15, "cols": 100, "style": "font-family: monospace"}
            ),
        }

    def clean_new_token(self) -> str:
        token = self.cleaned_data["new_token"]
        if token and not TOKEN_RE.fullmatch(token):
            raise forms.ValidationError(
                _(
                    "A Telegram token is digits, a colon and letters, "
                    "such as 123456789:AAE…."
                ),
                code="token_malformed",
            )

        return token

    def clean_draft_spec(self) -> Any:
        source = self.cleaned_data["draft_spec"]
        # An empty draft means "nothing written yet"; publishing refuses it.
        if source is None or source == {}:
            return {}
        unstorable = json_unstorable_path(source)
        if unstorable is not None:
            raise forms.ValidationError(
                _(
                    "%(path)s: a NUL character, a lone surrogate or a number "
                    "out of range cannot be stored."
                ),
                code="spec_unstorable",
                params={"path": unstorable or "(the spec)"},
            )

        try:
            spec_check(bot=self.instance if self.instance.pk else None, source=source)
        except SpecRejectedError as exc:
            raise forms.ValidationError(
                [
                    forms.ValidationError(
                        "%(path)s: %(message)s",
                        code="spec_invalid",
                        params={"path": path, "message": text},
                    )
                    for path, texts in exc.fields.items()
                    for text in texts
                ]
            ) from None

        return source

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        name = (
            "sql_schema_postgresql" if settings.IS_POSTGRESQL else "sql_schema_sqlite"
        )
        statements = cleaned.get(name)
        if not statements or name not in self.changed_data or self.instance.pk is None:
            return cleaned

        # Tried and rolled back here; the admin applies it after the save.
        try:
            sql_schema_check(bot=self.instance, statements=statements)
        except SqlSchemaError as exc:
            self.add_error(name, forms.ValidationError(exc.message, code=exc.code))

        return cleaned

    def save(self, commit: bool = True) -> Bot:
        bot = super().save(commit=False)
        if self.cleaned_data.get("clear_token"):
            bot.token = ""
        elif self.cleaned_data.get("new_token"):
            bot.token = self.cleaned_data["new_token"]
        if commit:
            bot.save()

        return bot


class TranslationInline(BotInlineAccessMixin, admin.TabularInline):
    model = Translation
    form = TranslationAdminForm
    extra = 0
    fields = ["locale", "key", "forms"]
    ordering = ["key", "locale"]


@admin.register(Bot)
class BotAdmin(BotAccessMixin, admin.ModelAdmin):
    form = BotAdminForm
    list_display = [
        "name",
        "slug",
        "is_active",
        "token_display",
        "live_version",
        "updated_at",
    ]
    list_filter = ["is_active"]
    list_select_related = ["live_version__bot"]
    search_fields = ["name", "slug"]
    readonly_fields = ["token_display", "username", "live_version", "webhook_path"]
    inlines = [TranslationInline, BotAccessInline]
    actions = ["publish_draft"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "default_locale", "is_active"]}),
        (
            _("Telegram"),
            {
                "fields": [
                    "token_display",
                    "new_token",
                    "clear_token",
                    "username",
                    "webhook_path",
                ]
            },
        ),
        (_("Spec"), {"fields": ["live_version", "draft_spec", "allows_sql_writes"]}),
        (
            _("SQL schema"),
            {
                "fields": ["sql_schema_postgresql", "sql_schema_sqlite"],
                "description": _(
                    "The bot's own tables. Saving runs the statements for this "
                    "server's database in the bot's schema, all or nothing; "
                    "only superusers may change them, since they run as the "
                    "database owner."
                ),
            },
        ),
    ]

    def get_readonly_fields(
        self, request: HttpRequest, obj: Bot | None = None
    ) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        # The DDL runs as the runtime's database user, not the bot's role;
        # a new bot gets its schema on its change page, once it has an id.
        if obj is None or not request.user.is_superuser:
            fields += ["sql_schema_postgresql", "sql_schema_sqlite"]

        return fields

    def get_urls(self) -> list[URLPattern]:
        # Studio pages come first: the default catch-all would take them.
        return studio_urls(self.admin_site) + super().get_urls()

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = dict(extra_context or {})
        if object_id.isdigit():
            context["studio_links"] = studio_links(int(object_id))

        return super().change_view(request, object_id, form_url, context)

    @admin.display(description=_("token"))
    def token_display(self, obj: Bot) -> str:
        return obj.token_masked or "—"

    def delete_model(self, request: HttpRequest, obj: Bot) -> None:
        # The bot's own data goes with it: its role and schema (or its file).
        with transaction.atomic():
            sql_deprovision(bot=obj)
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Bot]) -> None:
        with transaction.atomic():
            for bot in queryset:
                sql_deprovision(bot=bot)
            super().delete_queryset(request, queryset)

    def save_model(
        self, request: HttpRequest, obj: Bot, form: Any, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        schema_fields = {"sql_schema_postgresql", "sql_schema_sqlite"}
        if change and schema_fields & set(form.changed_data):
            # Checked by the form; this applies it in the admin's transaction.
            bot_sql_schema_apply(bot=obj)
        if not change or "is_active" not in form.changed_data:
            return

        # Deactivating deletes the webhook; activating registers it again.
        if obj.is_active:
            bot_activate(bot=obj)
        else:
            bot_deactivate(bot=obj)

    def save_related(
        self, request: HttpRequest, form: Any, formsets: Any, change: bool
    ) -> None:
        super().save_related(request, form, formsets, change)
        if not any(formset.has_changed() for formset in formsets):
            return

        # Translations are live: caches are keyed by the revision, so every
        # process reloads them. F() keeps a concurrent bump from being lost.
        Bot.objects.filter(pk=form.instance.pk).update(
            cache_revision=F("cache_revision") + 1
        )
        spec_reload_record()

    @admin.action(description=_("Publish the draft spec"), permissions=["publish"])
    def publish_draft(self, request: HttpRequest, queryset: QuerySet[Bot]) -> None:
        # All or nothing: one bot the user may not publish refuses the lot.
        for bot in queryset:
            bot_access_require(user=request.user, bot=bot, level=Level.PUBLISH)
        for bot in queryset:
            try:
                version, warnings = spec_publish(
                    bot=bot, source=bot.draft_spec, author=request.user
                )
            except SpecRejectedError as exc:
                self.message_user(
                    request,
                    _("%(bot)s was not published: %(errors)s")
                    % {"bot": bot, "errors": _problems_text(exc.fields)},
                    messages.ERROR,
                )
                continue

            self.log_change(request, bot, f"Published spec version {version.number}.")
            if not warnings:
                self.message_user(
                    request,
                    _("%(bot)s published as version %(number)s.")
                    % {"bot": bot, "number": version.number},
                    messages.SUCCESS,
                )
                continue
            self.message_user(
                request,
                _("%(bot)s published as version %(number)s with warnings: %(warnings)s")
                % {
                    "bot": bot,
                    "number": version.number,
                    "warnings": _problems_text(
                        {issue.path: [issue.message] for issue in warnings}
                    ),
                },
                messages.WARNING,
            )


class ReadOnlyAdmin(BotRecordAccessMixin, admin.ModelAdmin):
    list_select_related = ["bot"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SpecVersion)
class SpecVersionAdmin(ReadOnlyAdmin):
    list_display = ["bot", "number", "author", "message", "created_at"]
    list_filter = [("bot", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["bot", "author"]


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdmin):
    list_display = [
        "bot",
        "chat_id",
        "thread_id",
        "user_id",
        "spec_version",
        "locale",
        "updated_at",
    ]
    list_filter = [("bot", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["bot", "spec_version__bot"]


@admin.register(OutboundMessage)
class OutboundMessageAdmin(ReadOnlyAdmin):
    list_display = [
        "bot",
        "chat_id",
        "method",
        "status",
        "attempts",
        "created_at",
        "sent_at",
    ]
    list_filter = ["status", ("bot", admin.RelatedOnlyFieldListFilter)]


# i18n knows nothing of bot access; its admin is registered again here with
# the same per-bot rule as the bot's other records.
admin.site.unregister(Translation)


@admin.register(Translation)
class BotTranslationAdmin(BotRecordAccessMixin, TranslationAdmin):
    list_filter = [("bot", admin.RelatedOnlyFieldListFilter), "locale"]


class TranscriptAdminForm(forms.ModelForm):
    class Meta:
        model = Transcript
        fields = ["bot", "name", "locale", "steps", "is_draft"]

    def clean_steps(self) -> Any:
        steps = self.cleaned_data["steps"]
        problem = transcript_steps_problem(steps)
        if problem:
            raise forms.ValidationError(problem)

        return steps


@admin.register(Transcript)
class TranscriptAdmin(BotRecordAccessMixin, admin.ModelAdmin):
    form = TranscriptAdminForm
    list_display = ["name", "bot", "locale", "is_draft", "updated_at"]
    list_filter = ["is_draft", ("bot", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["bot"]
    search_fields = ["name"]
