"""How long the runtime keeps its records, and when a conversation starts over.

Pruning deletes, by age of creation: dedup records of processed updates
after ``PROCESSED_UPDATE_RETENTION_HOURS``, sent outbound messages after
``OUTBOX_SENT_RETENTION_DAYS``, failed ones after
``OUTBOX_FAILED_RETENTION_DAYS`` and finished LLM requests after
``LLM_REQUEST_RETENTION_DAYS``; each bot's own records of applied writes
age out with the dedup records. Pending and in-flight rows are never pruned.
Each DELETE takes at most ``PRUNE_BATCH_SIZE`` rows, oldest first, in its
own transaction, so a large backlog never holds a long lock.

Idle rule: a conversation that had no update for longer than its idle expiry
(the pinned spec's ``idle_expiry_seconds``, else
``CONVERSATION_IDLE_EXPIRY_SECONDS``) starts over when its next update
arrives: before the update runs, variables and wizard progress are cleared
and the conversation rests at the live spec version's start node (nothing
is sent for the reset itself; the update is then handled there, so text
gets the start node's answer and ``/start`` its menu). The counter that
dates buttons is kept, so a button sent before the reset never matches a
message sent after it.
"""

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from bots.models import Bot, Conversation, LlmRequest, OutboundMessage, ProcessedUpdate
from bots.selectors import spec_get_by_id
from bots.sql import sql_applied_prune
from dsl import IDLE_EXPIRY_MIN_SECONDS, ConversationState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PruneResult:
    processed_updates: int
    outbound_sent: int
    outbound_failed: int
    llm_requests: int
    sql_applied_updates: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _batched_delete(queryset: models.QuerySet[models.Model], *, batch: int) -> int:
    """Delete the rows of ``queryset`` at most ``batch`` at a time; count them."""
    model = queryset.model
    deleted = 0
    while True:
        # Oldest first along the primary key, which grows with created_at:
        # the rows to prune are found at the start of its index.
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:batch])
        if not ids:
            return deleted
        with transaction.atomic():
            # Through the ORM, so that rows pointing here are set to NULL.
            _total, per_model = model._default_manager.filter(pk__in=ids).delete()
        deleted += per_model.get(model._meta.label, 0)


def data_prune(*, now: datetime | None = None) -> PruneResult:
    """Delete the records whose retention has passed; return the counts.

    Safe to run at any time and in several processes at once. Raises
    django.db.DatabaseError when the database fails (what was deleted in
    earlier batches stays deleted).
    """
    now = now or timezone.now()
    batch = settings.PRUNE_BATCH_SIZE
    updates_before = now - timedelta(hours=settings.PROCESSED_UPDATE_RETENTION_HOURS)
    sent_before = now - timedelta(days=settings.OUTBOX_SENT_RETENTION_DAYS)
    failed_before = now - timedelta(days=settings.OUTBOX_FAILED_RETENTION_DAYS)
    llm_before = now - timedelta(days=settings.LLM_REQUEST_RETENTION_DAYS)

    # LLM requests first: they point at outbound messages.
    llm = _batched_delete(
        LlmRequest.objects.filter(
            status__in=[LlmRequest.Status.DONE, LlmRequest.Status.FAILED],
            created_at__lt=llm_before,
        ),
        batch=batch,
    )
    sent = _batched_delete(
        OutboundMessage.objects.filter(
            status=OutboundMessage.Status.SENT, created_at__lt=sent_before
        ),
        batch=batch,
    )
    failed = _batched_delete(
        OutboundMessage.objects.filter(
            status=OutboundMessage.Status.FAILED, created_at__lt=failed_before
        ),
        batch=batch,
    )
    updates = _batched_delete(
        ProcessedUpdate.objects.filter(created_at__lt=updates_before), batch=batch
    )
    # A bot's record of an applied write guards the same re-deliveries.
    applied = sum(
        sql_applied_prune(bot=bot, before=updates_before, batch=batch)
        for bot in Bot.objects.only("pk").order_by("pk")
    )

    result = PruneResult(
        processed_updates=updates,
        outbound_sent=sent,
        outbound_failed=failed,
        llm_requests=llm,
        sql_applied_updates=applied,
    )
    if any(result.as_dict().values()):
        logger.info("Pruned old records.", extra={"pruned": result.as_dict()})

    return result


def conversation_idle_expiry(*, conversation: Conversation) -> timedelta | None:
    """Return how long the conversation may stay idle, or None for ever."""
    seconds: int | None = None
    if conversation.spec_version_id is not None:
        version_id = conversation.spec_version_id
        seconds = spec_get_by_id(version_id=version_id).idle_expiry_seconds
    if seconds is None:
        seconds = settings.CONVERSATION_IDLE_EXPIRY_SECONDS

    return timedelta(seconds=seconds) if seconds else None


def conversation_reset_if_idle(
    *, bot: Bot, conversation: Conversation, now: datetime | None = None
) -> bool:
    """Send an idle conversation back to the start; tell whether it changed.

    The caller holds the conversation's row lock and saves it afterwards.
    The conversation is pinned to the live version and rests at its start
    node with no variables, as if it had just finished; the counter that
    dates buttons is kept. Raises django.db.DatabaseError.
    """
    # Ids and the per-process spec cache: this runs on every update, and the
    # rows themselves would cost two queries and their JSON each time.
    live_id = bot.live_version_id
    if not conversation.state or conversation.pk is None or live_id is None:
        return False
    idle = (now or timezone.now()) - conversation.updated_at
    # No expiry is shorter than this, so a conversation in use (nearly
    # every update) needs no look at its spec.
    if idle <= timedelta(seconds=IDLE_EXPIRY_MIN_SECONDS):
        return False
    expiry = conversation_idle_expiry(conversation=conversation)
    if expiry is None or idle <= expiry:
        return False

    old = ConversationState.model_validate(conversation.state)
    fresh = ConversationState(
        node=spec_get_by_id(version_id=live_id).start,
        generation=old.generation,
        reply_keyboard=old.reply_keyboard,
    )
    if fresh == old and conversation.spec_version_id == live_id:
        return False
    conversation.state = fresh.model_dump(mode="json")
    conversation.spec_version_id = live_id
    logger.info(
        "Conversation %s was idle past its expiry and starts over.", conversation.pk
    )

    return True
