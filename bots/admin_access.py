"""The admin's side of per-bot access: who sees and changes which bot.

The rule itself lives in ``bots.services.access``; these classes apply it
to the bot admin, to the admins of a bot's records and to the audit log,
and let superusers grant access (each grant and revocation audited).
"""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from bots.models import AuditEntry, Bot, BotAccess
from bots.services.access import (
    Level,
    bot_access_grant,
    bot_access_level,
    bot_access_revoke,
    bots_for_user,
    user_has_any_access,
    user_may_add_bot,
)
from bots.services.audit import Action, audit_record, token_change_record


def _is_superuser(request: HttpRequest) -> bool:
    user: Any = request.user
    return bool(user.is_active and user.is_staff and user.is_superuser)


def _may(request: HttpRequest, bot: Bot | None, level: int) -> bool:
    """With a bot: its level; without one: whether any bot allows ``level``."""
    if bot is None:
        return user_has_any_access(user=request.user, level=level)

    return bot_access_level(user=request.user, bot=bot) >= level


class BotAccessMixin:
    """Permissions of the bot admin: BotAccess levels, not model permissions.

    View needs VIEW, change needs EDIT, delete needs PUBLISH (deleting loses
    every version and conversation, which is more than publishing can do);
    adding needs a superuser or ``bots.add_bot``, and the creator is given
    PUBLISH on the new bot. Token changes and deletions are audited.
    """

    def get_queryset(self, request: HttpRequest) -> QuerySet[Bot]:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        if _is_superuser(request):
            return queryset

        return queryset.filter(pk__in=bots_for_user(user=request.user).values("pk"))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return user_has_any_access(user=request.user) or user_may_add_bot(
            user=request.user
        )

    def has_view_permission(self, request: HttpRequest, obj: Bot | None = None) -> bool:
        # Any member of staff may open the list; it holds only their bots.
        if obj is None:
            user: Any = request.user
            return bool(user.is_active and user.is_staff)

        return _may(request, obj, Level.VIEW)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return user_may_add_bot(user=request.user)

    def has_change_permission(
        self, request: HttpRequest, obj: Bot | None = None
    ) -> bool:
        return _may(request, obj, Level.EDIT)

    def has_delete_permission(
        self, request: HttpRequest, obj: Bot | None = None
    ) -> bool:
        return _may(request, obj, Level.PUBLISH)

    def has_publish_permission(self, request: HttpRequest) -> bool:
        return _may(request, None, Level.PUBLISH)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        # A bot goes with its records (access rows, versions, texts): PUBLISH
        # on it is enough, whatever the admins of those records allow.
        found = super().get_deleted_objects(objs, request)  # type: ignore[misc]
        deleted, counts, _perms_needed, protected = found

        return deleted, counts, set(), protected

    def save_model(
        self, request: HttpRequest, obj: Bot, form: Any, change: bool
    ) -> None:
        cleaned = getattr(form, "cleaned_data", {})
        touches_token = bool(cleaned.get("new_token") or cleaned.get("clear_token"))
        old = ""
        if change and touches_token:
            old = Bot.objects.filter(pk=obj.pk).values_list("token", flat=True).get()

        super().save_model(request, obj, form, change)  # type: ignore[misc]

        if touches_token or (not change and obj.token):
            token_change_record(bot=obj, old=old, new=obj.token, actor=request.user)
        if not change and not _is_superuser(request):
            bot_access_grant(
                bot=obj, user=request.user, level=Level.PUBLISH, actor=request.user
            )

    def delete_model(self, request: HttpRequest, obj: Bot) -> None:
        _deletion_record(request, obj)
        super().delete_model(request, obj)  # type: ignore[misc]

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Bot]) -> None:
        for bot in queryset:
            _deletion_record(request, bot)
        super().delete_queryset(request, queryset)  # type: ignore[misc]

    def save_formset(
        self, request: HttpRequest, form: Any, formset: Any, change: bool
    ) -> None:
        if formset.model is not BotAccess:
            super().save_formset(request, form, formset, change)  # type: ignore[misc]
            return

        access_formset_save(request, bot=form.instance, formset=formset)


def _deletion_record(request: HttpRequest, bot: Bot) -> None:
    # The entry outlives the bot: its foreign key is set to null, its slug kept.
    audit_record(
        action=Action.DELETE,
        bot=bot,
        actor=request.user,
        detail={"name": bot.name, "bot_id": bot.pk},
    )


def access_formset_save(request: HttpRequest, *, bot: Bot, formset: Any) -> None:
    """Apply the access inline through the audited services.

    Fills the formset's ``new_objects``, ``changed_objects`` and
    ``deleted_objects`` as ``formset.save()`` would, for the admin's history.
    """
    formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
    for form in formset.initial_forms:
        original = form.instance
        if form in formset.deleted_forms:
            bot_access_revoke(bot=bot, user=original.user, actor=request.user)
            formset.deleted_objects.append(original)
            continue
        if not form.has_changed():
            continue
        if "user" in form.changed_data:
            previous = type(original.user)._default_manager.get(pk=form.initial["user"])
            bot_access_revoke(bot=bot, user=previous, actor=request.user)
        access = bot_access_grant(
            bot=bot,
            user=form.cleaned_data["user"],
            level=form.cleaned_data["level"],
            actor=request.user,
        )
        formset.changed_objects.append((access, form.changed_data))
    for form in formset.extra_forms:
        if not form.has_changed() or form in formset.deleted_forms:
            continue
        access = bot_access_grant(
            bot=bot,
            user=form.cleaned_data["user"],
            level=form.cleaned_data["level"],
            actor=request.user,
        )
        formset.new_objects.append(access)


class BotInlineAccessMixin:
    """An inline of the bot page: VIEW to see it, EDIT to change it."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _may(request, obj, Level.VIEW)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _may(request, obj, Level.EDIT)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _may(request, obj, Level.EDIT)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _may(request, obj, Level.EDIT)


class BotRecordAccessMixin:
    """An admin of one bot's records: only the user's bots' rows.

    Seeing needs VIEW on the row's bot; changing, adding or deleting (where
    the admin allows it at all) needs EDIT. The bot filter lists only the
    bots the user may see.
    """

    bot_field = "bot"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        if _is_superuser(request):
            return queryset

        return queryset.filter(
            **{f"{self.bot_field}__in": bots_for_user(user=request.user).values("pk")}
        )

    def _bot_of(self, obj: Any) -> Bot:
        return getattr(obj, self.bot_field)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return user_has_any_access(user=request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _may(request, self._bot_of(obj) if obj else None, Level.VIEW)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return _may(request, None, Level.EDIT)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _may(request, self._bot_of(obj) if obj else None, Level.EDIT)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _may(request, self._bot_of(obj) if obj else None, Level.EDIT)

    def formfield_for_foreignkey(
        self, db_field: Any, request: HttpRequest, **kwargs: Any
    ) -> Any:
        if db_field.name == self.bot_field and not _is_superuser(request):
            kwargs["queryset"] = bots_for_user(user=request.user, level=Level.EDIT)

        return super().formfield_for_foreignkey(  # type: ignore[misc]
            db_field, request, **kwargs
        )


class _AccessFormSet(BaseInlineFormSet):
    """The access inline, left as it is by a post that never showed it.

    Only superusers see the inline; a form posted without its management
    fields (a client that predates it) changes nobody's access rather than
    failing the whole bot form.
    """

    def __init__(self, data: Any = None, *args: Any, **kwargs: Any) -> None:
        prefix = kwargs.get("prefix") or self.get_default_prefix()
        if data is not None and f"{prefix}-TOTAL_FORMS" not in data:
            data = data.copy()
            data[f"{prefix}-TOTAL_FORMS"] = "0"
            data[f"{prefix}-INITIAL_FORMS"] = "0"
        super().__init__(data, *args, **kwargs)


class BotAccessInline(admin.TabularInline):
    model = BotAccess
    formset = _AccessFormSet
    extra = 0
    fields = ["user", "level"]
    verbose_name_plural = _("staff access")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_superuser(request)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_superuser(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_superuser(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_superuser(request)


@admin.register(BotAccess)
class BotAccessAdmin(admin.ModelAdmin):
    list_display = ["bot", "user", "level"]
    list_filter = ["level", "bot"]
    list_select_related = ["bot", "user"]
    search_fields = ["user__username", "bot__slug", "bot__name"]
    fields = ["bot", "user", "level"]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _is_superuser(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_superuser(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return _is_superuser(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_superuser(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_superuser(request)

    def save_model(
        self, request: HttpRequest, obj: BotAccess, form: Any, change: bool
    ) -> None:
        if change and {"bot", "user"} & set(form.changed_data):
            original = BotAccess.objects.select_related("bot", "user").get(pk=obj.pk)
            bot_access_revoke(bot=original.bot, user=original.user, actor=request.user)
        saved = bot_access_grant(
            bot=obj.bot, user=obj.user, level=obj.level, actor=request.user
        )
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: BotAccess) -> None:
        bot_access_revoke(bot=obj.bot, user=obj.user, actor=request.user)

    def delete_queryset(
        self, request: HttpRequest, queryset: QuerySet[BotAccess]
    ) -> None:
        for access in queryset.select_related("bot", "user"):
            bot_access_revoke(bot=access.bot, user=access.user, actor=request.user)


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """The audit log: read-only, each user sees their bots' entries."""

    list_display = ["created_at", "bot_label", "actor_label", "action", "detail"]
    list_filter = [
        "action",
        ("bot", admin.RelatedOnlyFieldListFilter),
        ("actor", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["bot_label", "actor_label"]
    date_hierarchy = "created_at"

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEntry]:
        queryset = super().get_queryset(request)
        if _is_superuser(request):
            return queryset

        # Entries of deleted bots (no bot any more) are for superusers only.
        return queryset.filter(bot__in=bots_for_user(user=request.user).values("pk"))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return user_has_any_access(user=request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return user_has_any_access(user=request.user)
        if obj.bot is None:
            return _is_superuser(request)

        return _may(request, obj.bot, Level.VIEW)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
