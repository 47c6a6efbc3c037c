import re
import secrets
from collections.abc import Collection
from typing import Any, Self

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from botfactory.fields import EncryptedTextField
from botfactory.logging import secret_register

WEBHOOK_SECRET_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9_-]{1,256}$",
    _("Telegram accepts only 1-256 characters A-Z, a-z, 0-9, _ and -."),
)


# A Telegram bot token: the bot's numeric id, a colon and its secret part.
TOKEN_RE = re.compile(r"\d{1,20}:[A-Za-z0-9_-]{1,200}")


def webhook_secret_generate() -> str:
    return secrets.token_urlsafe(32)


class Bot(models.Model):
    name = models.CharField(_("name"), max_length=100)
    slug = models.SlugField(_("slug"), max_length=64, unique=True)
    token = EncryptedTextField(
        _("Telegram token"),
        blank=True,
        help_text=_("Leave empty for demo mode: replies are kept locally."),
    )
    webhook_secret = EncryptedTextField(
        _("webhook secret"),
        default=webhook_secret_generate,
        validators=[WEBHOOK_SECRET_VALIDATOR],
    )
    # The secret being replaced: the webhook still accepts it until Telegram
    # confirms the new one, so a rotation drops no update.
    webhook_secret_previous = EncryptedTextField(
        _("previous webhook secret"), blank=True, editable=False
    )
    username = models.CharField(_("Telegram username"), max_length=64, blank=True)
    default_locale = models.CharField(_("default locale"), max_length=16, default="en")
    is_active = models.BooleanField(_("active"), default=True)
    draft_spec = models.JSONField(_("draft spec"), default=dict, blank=True)
    live_version = models.ForeignKey(
        "SpecVersion",
        verbose_name=_("live version"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    allows_sql_writes = models.BooleanField(
        _("SQL writes allowed"),
        default=False,
        help_text=_("Nodes may declare write mode only when this is on."),
    )
    sql_password = EncryptedTextField(blank=True, editable=False)
    # The DDL of the bot's own tables, one text per backend: the server
    # applies the one of its own database (see bot_sql_schema_apply).
    sql_schema_postgresql = models.TextField(
        _("SQL schema (PostgreSQL)"),
        blank=True,
        help_text=_(
            "Statements that create the bot's own tables, run in its schema "
            "when saved. Write them so that they can run again (IF NOT EXISTS)."
        ),
    )
    sql_schema_sqlite = models.TextField(
        _("SQL schema (SQLite)"),
        blank=True,
        help_text=_("The same tables for the embedded default's SQLite file."),
    )
    # Bumped by a reload or a translation edit; caches are keyed by it, so
    # every process sees the change on its next update.
    cache_revision = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def from_db(
        cls,
        db: str | None,
        field_names: Collection[str],
        values: Collection[Any],
        **kwargs: Any,
    ) -> Self:
        bot = super().from_db(db, field_names, values, **kwargs)
        # Every process that loads a bot teaches the log redactor its
        # secrets, which no pattern would recognise (the webhook secret).
        for name in (
            "token",
            "webhook_secret",
            "webhook_secret_previous",
            "sql_password",
        ):
            secret_register(bot.__dict__.get(name))

        return bot

    @property
    def is_demo(self) -> bool:
        return not self.token

    @property
    def token_masked(self) -> str:
        if not self.token:
            return ""
        bot_part, _sep, rest = self.token.partition(":")

        return f"{bot_part}:…{rest[-4:]}" if rest else "…"

    @property
    def sql_schema(self) -> str:
        """The DDL of the bot's own tables for this server's database."""
        if settings.IS_POSTGRESQL:
            return self.sql_schema_postgresql

        return self.sql_schema_sqlite

    @property
    def webhook_path(self) -> str:
        # A bot not saved yet has no id, so no webhook either.
        return f"/telegram/{self.pk}/webhook" if self.pk is not None else ""


class SpecVersion(models.Model):
    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    source = models.JSONField()
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    message = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["bot", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["bot", "number"], name="spec_version_unique_number"
            )
        ]

    def __str__(self) -> str:
        return f"{self.bot} v{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise ValueError("A published spec version is immutable.")
        super().save(*args, **kwargs)


class Conversation(models.Model):
    """One user's dialogue with a bot.

    Keyed by chat in private chats; by chat, forum thread and user in groups;
    by user alone for callbacks from inline messages (no chat). Zero stands
    for "not part of the key".
    """

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="conversations")
    chat_id = models.BigIntegerField()
    thread_id = models.BigIntegerField(default=0)
    user_id = models.BigIntegerField(default=0)
    spec_version = models.ForeignKey(
        SpecVersion, null=True, on_delete=models.PROTECT, related_name="+"
    )
    state = models.JSONField(default=dict)
    locale = models.CharField(max_length=16, blank=True)
    last_update_id = models.BigIntegerField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["bot", "chat_id", "thread_id", "user_id"],
                name="conversation_unique_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.bot_id}:{self.chat_id}:{self.thread_id}:{self.user_id}"


class ProcessedUpdate(models.Model):
    class Outcome(models.TextChoices):
        PROCESSED = "processed", _("processed")
        IGNORED = "ignored", _("ignored")
        DROPPED = "dropped", _("dropped (bot inactive)")

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="+")
    update_id = models.BigIntegerField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["bot", "update_id"], name="processed_update_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.bot_id}:{self.update_id}"


class OutboundMessage(models.Model):
    """One Bot API call to make on behalf of a conversation (the outbox)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        IN_FLIGHT = "in_flight", _("in flight")
        SENT = "sent", _("sent")
        FAILED = "failed", _("failed")

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(
        Conversation, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    chat_id = models.BigIntegerField()
    update_id = models.BigIntegerField(null=True)
    method = models.CharField(max_length=64)
    payload = models.JSONField()
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True)
    lease_until = models.DateTimeField(null=True)
    last_error = models.CharField(max_length=500, blank=True)
    telegram_message_id = models.BigIntegerField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["bot", "chat_id", "id"],
                name="outbox_open_per_chat",
                condition=Q(status__in=["pending", "in_flight"]),
            ),
            models.Index(
                fields=["created_at"],
                name="outbox_open_by_age",
                condition=Q(status__in=["pending", "in_flight"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} to {self.chat_id} ({self.status})"


class BlockedChat(models.Model):
    """A chat that blocked the bot or vanished: nothing more is sent to it."""

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="+")
    chat_id = models.BigIntegerField()
    reason = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["bot", "chat_id"], name="blocked_chat_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.bot_id}:{self.chat_id}"


class LlmRequest(models.Model):
    """One ``llm.v1`` node's question to a language model, and its answer.

    Recorded with the update that reached the node; a worker claims it with
    a lease, asks the model outside any transaction and feeds the answer (or
    the fallback) back into the conversation. The sweep re-enqueues requests
    left pending or whose lease ran out, so a lost broker message only
    delays the answer.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        RUNNING = "running", _("running")
        DONE = "done", _("done")
        FAILED = "failed", _("failed (fallback sent)")

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="+"
    )
    update_id = models.BigIntegerField()
    node_id = models.CharField(max_length=32)
    # The conversation's key for this visit of the node; the answer is used
    # only while the conversation still waits for it.
    request_key = models.CharField(max_length=64)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING
    )
    # The RequestLlm action and the update facts the answer is sent with.
    request = models.JSONField()
    answer = models.TextField(blank=True)
    # Why the fallback was sent (breaker_open, deadline, ...), or why the
    # answer was not used (abandoned).
    error = models.CharField(max_length=32, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    task_id = models.CharField(max_length=255, blank=True)
    lease_until = models.DateTimeField(null=True)
    enqueued_at = models.DateTimeField(null=True)
    thinking_message = models.ForeignKey(
        OutboundMessage, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    typing_message = models.ForeignKey(
        OutboundMessage, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["bot", "update_id", "node_id"], name="llm_request_unique"
            )
        ]
        indexes = [
            models.Index(
                fields=["created_at"],
                name="llm_request_open_by_age",
                condition=Q(status__in=["pending", "running"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.bot_id}:{self.update_id}:{self.node_id} ({self.status})"


class BotAccess(models.Model):
    """What one member of staff may do with one bot.

    Superusers may do everything with every bot; anyone else sees only the
    bots they are given here. Each level includes the ones below it.
    """

    class Level(models.IntegerChoices):
        VIEW = 1, _("view")
        EDIT = 2, _("edit")
        PUBLISH = 3, _("publish")

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="access")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="bot_access"
    )
    level = models.PositiveSmallIntegerField(choices=Level.choices)

    class Meta:
        verbose_name = _("bot access")
        verbose_name_plural = _("bot access")
        constraints = [
            models.UniqueConstraint(fields=["bot", "user"], name="bot_access_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} → {self.bot_id}: {self.get_level_display()}"


class AuditEntry(models.Model):
    """Who did something that changes what users see, or a secret, and when.

    The bot's and the actor's names are copied, so the entry still reads
    after either is deleted. Never holds a token or a secret's value.
    """

    class Action(models.TextChoices):
        PUBLISH = "publish", _("published")
        ROLLBACK = "rollback", _("rolled back")
        TOKEN_CHANGE = "token_change", _("changed the token")
        SECRET_CHANGE = "secret_change", _("changed the webhook secret")
        IMPORT = "import", _("imported")
        ACCESS_CHANGE = "access_change", _("changed access")
        DELETE = "delete", _("deleted")

    bot = models.ForeignKey(
        Bot, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    bot_label = models.CharField(max_length=100)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_label = models.CharField(max_length=150)
    action = models.CharField(max_length=32, choices=Action.choices)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit log")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["bot", "-created_at"], name="audit_by_bot")]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.bot_label}"


class Transcript(models.Model):
    """A conversation test: what a user does, what the bot must answer.

    ``steps`` is a list of objects, each with exactly one of ``say`` (text or
    a command), ``press`` (the label of a button the bot showed last) or
    ``contact`` (a phone number shared), and any of ``expect`` (the texts of
    the bot's replies to that step, in order), ``buttons`` (the labels the
    last reply offers) and ``vars`` (values the conversation holds after
    the step). A draft was saved from "Try it" and awaits review; drafts
    are not run on publish.
    """

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="transcripts")
    name = models.CharField(_("name"), max_length=100)
    locale = models.CharField(_("locale"), max_length=16)
    steps = models.JSONField(_("steps"), default=list)
    is_draft = models.BooleanField(_("draft"), default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["bot", "name"], name="transcript_unique")
        ]

    def __str__(self) -> str:
        return self.name
