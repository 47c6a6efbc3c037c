import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from bots.models import Bot, Conversation, OutboundMessage, SpecVersion
from bots.services.specs import SpecRejectedError, spec_check, spec_publish
from i18n.models import Translation


class BotAdminForm(forms.ModelForm):
    new_token = forms.CharField(
        label=_("Telegram token"),
        required=False,
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
        ]

    def clean_draft_spec(self) -> Any:
        source = self.cleaned_data["draft_spec"]
        if not source:
            return source
        try:
            spec_check(bot=self.instance if self.instance.pk else None, source=source)
        except SpecRejectedError as exc:
            raise forms.ValidationError(
                [
                    forms.ValidationError(
                        "%(path)s: %(message)s", params={"path": path, "message": text}
                    )
                    for path, texts in exc.fields.items()
                    for text in texts
                ]
            ) from None

        return source

    def save(self, commit: bool = True) -> Bot:
        bot = super().save(commit=False)
        if self.cleaned_data.get("clear_token"):
            bot.token = ""
        elif self.cleaned_data.get("new_token"):
            bot.token = self.cleaned_data["new_token"].strip()
        if commit:
            bot.save()

        return bot


class TranslationInline(admin.TabularInline):
    model = Translation
    extra = 0
    fields = ["locale", "key", "forms"]
    ordering = ["key", "locale"]


@admin.register(Bot)
class BotAdmin(admin.ModelAdmin):
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
    search_fields = ["name", "slug"]
    readonly_fields = ["token_display", "username", "live_version", "webhook_path"]
    inlines = [TranslationInline]
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
    ]

    @admin.display(description=_("token"))
    def token_display(self, obj: Bot) -> str:
        return obj.token_masked or "—"

    def save_related(
        self, request: HttpRequest, form: Any, formsets: Any, change: bool
    ) -> None:
        super().save_related(request, form, formsets, change)
        # Translations are live: bump the revision so every process reloads them.
        Bot.objects.filter(pk=form.instance.pk).update(
            cache_revision=form.instance.cache_revision + 1
        )

    @admin.action(description=_("Publish the draft spec"))
    def publish_draft(self, request: HttpRequest, queryset: QuerySet[Bot]) -> None:
        for bot in queryset:
            try:
                version, warnings = spec_publish(
                    bot=bot, source=bot.draft_spec, author=request.user
                )
            except SpecRejectedError as exc:
                self.message_user(
                    request,
                    _("%(bot)s was not published: %(errors)s")
                    % {
                        "bot": bot,
                        "errors": json.dumps(exc.fields, ensure_ascii=False),
                    },
                    messages.ERROR,
                )
                continue
            self.message_user(
                request,
                _("%(bot)s published as version %(number)s with %(count)s warnings.")
                % {"bot": bot, "number": version.number, "count": len(warnings)},
                messages.SUCCESS,
            )


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SpecVersion)
class SpecVersionAdmin(ReadOnlyAdmin):
    list_display = ["bot", "number", "author", "message", "created_at"]
    list_filter = ["bot"]


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
    list_filter = ["bot"]


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
    list_filter = ["status", "bot"]
