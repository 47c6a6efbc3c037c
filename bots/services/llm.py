"""Answering ``llm.v1`` nodes: the worker's side of an LLM request.

A run claims the request with a lease (a conditional update whose row count
is checked), asks the model outside any transaction, then in one
transaction locks the conversation and the request, and only if the
request is still open and the conversation still waits for it feeds the
answer (or the fallback) to the executor and writes the replies to the
outbox. A run killed mid-call leaves the request running until its lease
ends (or the same task is redelivered); the final write's check on the
request's status keeps a second run from sending a second answer.
"""

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from botfactory.metrics import LLM_TOKENS
from bots.models import Bot, Conversation, LlmRequest, OutboundMessage
from bots.services.llm_requests import (
    llm_actions_without_requests,
    llm_context_load,
    llm_request_enqueue,
    llm_requests_record,
)
from bots.services.ops import llm_cache_count
from bots.services.outbox import (
    outbox_messages_build,
    outbox_messages_deliver_locally,
    outbox_schedule,
)
from bots.services.updates import conversation_spec_run
from dsl import ConversationState, LlmResultEvent, RequestLlm, answer_cut
from llm.errors import LlmUnavailableError
from llm.services import complete
from llm.types import ChatMessage, Completion, CompletionRequest

logger = logging.getLogger(__name__)

Status = LlmRequest.Status
OPEN = (Status.PENDING, Status.RUNNING)
# A run that starts with less of the budget left than this (a redelivery,
# a late broker) gets the whole budget again: a late answer beats none.
_MIN_DEADLINE_SECONDS = 1.0
_SETTLE_POLL_SECONDS = 0.02
# Tries to find the "thinking…" message settled (sent or waiting) before the
# answer goes out as a new message after it.
_APPLY_ROUNDS = 3
_THINKING_IN_FLIGHT = "thinking_in_flight"


def _claim(*, request_id: int, task_id: str) -> LlmRequest | None:
    request = LlmRequest.objects.filter(pk=request_id, status__in=OPEN).first()
    if request is None:
        return None

    now = timezone.now()
    budget = float(request.request["action"]["budget_seconds"])
    lease = timedelta(seconds=budget + settings.LLM_TASK_LEASE_GRACE_SECONDS)
    # Open to a pending request, to one whose run died (its lease ended), and
    # to the same task redelivered after its worker was lost.
    claimable = Q(status=Status.PENDING) | Q(
        Q(lease_until__lt=now) | Q(task_id=task_id), status=Status.RUNNING
    )
    claimed = (
        LlmRequest.objects.filter(claimable, pk=request_id)
        .filter(status__in=OPEN)
        .update(
            status=Status.RUNNING,
            task_id=task_id,
            lease_until=now + lease,
            attempts=F("attempts") + 1,
            updated_at=now,
        )
    )
    if claimed != 1:
        return None

    request.refresh_from_db()
    return request


def _is_awaited(request: LlmRequest) -> bool:
    state = Conversation.objects.filter(pk=request.conversation_id).values_list(
        "state", flat=True
    )
    stored = state.first()
    if not stored:
        return False

    return ConversationState.model_validate(stored).pending_llm == request.request_key


def _deadline(request: LlmRequest, action: RequestLlm) -> float:
    waited = (timezone.now() - request.created_at).total_seconds()
    remaining = action.budget_seconds - max(waited, 0.0)

    return remaining if remaining >= _MIN_DEADLINE_SECONDS else action.budget_seconds


def _ask(
    *, request: LlmRequest, action: RequestLlm
) -> tuple[LlmResultEvent, Completion | None]:
    completion_request = CompletionRequest(
        messages=tuple(
            ChatMessage(role=message.role, content=message.content)
            for message in action.messages
        ),
        model=action.model,
        temperature=action.temperature,
        max_tokens=action.max_tokens,
        cache_ttl_seconds=action.cache_ttl_seconds,
    )
    event = {"node_id": action.node_id, "request_key": action.request_key}
    try:
        completion = complete(
            completion_request, deadline_seconds=_deadline(request, action)
        )
    except LlmUnavailableError as exc:
        # Logged by llm where it gave up; here it only becomes the fallback.
        return LlmResultEvent(**event, error=exc.code), None

    return LlmResultEvent(**event, text=completion.text), completion


def _connection_release() -> None:
    # Waits of a thread-pool worker hold no database connection: it goes
    # back to the pool, and the next query takes one again.
    if not connection.in_atomic_block:
        connection.close()


def _thinking_settle(request: LlmRequest, *, until: float) -> None:
    """Wait, holding no lock, while the "thinking…" message is being sent.

    An answer that comes while Telegram is taking the thinking message can
    then edit it instead of following it as a new message. Waits until
    ``until`` (a ``time.monotonic()`` value) at most.
    """
    if request.thinking_message_id is None:
        return
    rows = OutboundMessage.objects.filter(
        pk=request.thinking_message_id, status=OutboundMessage.Status.IN_FLIGHT
    )
    while time.monotonic() < until:
        in_flight = rows.exists()
        _connection_release()
        if not in_flight:
            return
        time.sleep(_SETTLE_POLL_SECONDS)


def _thinking_replace(
    *,
    request: LlmRequest,
    thinking: OutboundMessage | None,
    messages: list[OutboundMessage],
) -> list[OutboundMessage]:
    """Let the answer's first message replace the "thinking…" message.

    Sent already: the first message becomes an edit of it. Not sent yet:
    it takes the first message's text and the typing action is deleted, so
    the user never sees a stale "thinking…". In flight or failed: the
    answer is sent as new messages.
    """
    first = next((m for m in messages if m.method == "sendMessage"), None)
    if thinking is None or first is None:
        return messages
    markup = first.payload.get("reply_markup")
    # Only an inline keyboard can be attached to an edited message.
    if markup and "inline_keyboard" not in markup:
        return messages

    shown = {
        key: value
        for key, value in first.payload.items()
        if key in ("text", "parse_mode", "reply_markup")
    }
    if thinking.status == OutboundMessage.Status.SENT and thinking.telegram_message_id:
        first.method = "editMessageText"
        first.payload = {
            "chat_id": thinking.chat_id,
            "message_id": thinking.telegram_message_id,
            **shown,
        }
        return messages
    if thinking.status != OutboundMessage.Status.PENDING:
        return messages

    kept = {
        key: value
        for key, value in thinking.payload.items()
        if key not in ("text", "parse_mode", "reply_markup")
    }
    thinking.payload = {**kept, **shown}
    thinking.save(update_fields=["payload"])
    if request.typing_message_id is not None:
        # Typing after the answer would say more is coming: it never goes.
        deleted, _by_model = OutboundMessage.objects.filter(
            pk=request.typing_message_id, status=OutboundMessage.Status.PENDING
        ).delete()
        if deleted:
            request.typing_message = None

    return [m for m in messages if m is not first]


def _finish(
    request: LlmRequest,
    *,
    event: LlmResultEvent,
    completion: Completion | None,
    is_abandoned: bool = False,
) -> None:
    is_done = event.error is None or is_abandoned
    request.status = Status.DONE if is_done else Status.FAILED
    # Stored as the user saw it: a runaway model cannot fill the table.
    request.answer = answer_cut(event.text or "")
    request.error = "abandoned" if is_abandoned else (event.error or "")
    request.lease_until = None
    request.finished_at = timezone.now()
    if completion is not None:
        request.prompt_tokens = completion.prompt_tokens
        request.completion_tokens = completion.completion_tokens
    request.save()


@transaction.atomic
def _apply(
    *,
    request_id: int,
    event: LlmResultEvent,
    completion: Completion | None,
    may_wait: bool,
) -> str:
    """Feed the result to the conversation once; return what was done.

    With ``may_wait``, a "thinking…" message being sent right now makes it
    change nothing and return ``_THINKING_IN_FLIGHT``, to be tried again.
    """
    request = LlmRequest.objects.filter(pk=request_id).first()
    if request is None:
        return "missing"
    # The conversation first, as the update service locks it, then the row.
    conversation = Conversation.objects.select_for_update().get(
        pk=request.conversation_id
    )
    request = LlmRequest.objects.select_for_update().get(pk=request_id)
    if request.status not in OPEN:
        return "duplicate"

    bot = Bot.objects.get(pk=request.bot_id)
    state = ConversationState.model_validate(conversation.state or {})
    if state.pending_llm != request.request_key or not bot.is_active:
        # The user moved on (/cancel, /start): the answer is kept, not sent.
        _finish(request, event=event, completion=completion, is_abandoned=True)
        return "abandoned"

    thinking = (
        OutboundMessage.objects.select_for_update()
        .filter(pk=request.thinking_message_id)
        .first()
        if request.thinking_message_id is not None
        else None
    )
    if may_wait and thinking and thinking.status == OutboundMessage.Status.IN_FLIGHT:
        return _THINKING_IN_FLIGHT

    parsed = llm_context_load(request.request["update"])
    local = bool(request.request.get("local"))
    actions = conversation_spec_run(
        bot=bot, conversation=conversation, parsed=parsed, event=event
    )
    messages = outbox_messages_build(
        bot=bot,
        conversation=conversation,
        parsed=parsed,
        actions=llm_actions_without_requests(actions),
    )
    messages = _thinking_replace(request=request, thinking=thinking, messages=messages)
    if local:
        outbox_messages_deliver_locally(bot=bot, messages=messages)
    OutboundMessage.objects.bulk_create(messages)
    _finish(request, event=event, completion=completion)
    # An answer may lead straight to another LLM node.
    messages += llm_requests_record(
        bot=bot, conversation=conversation, parsed=parsed, actions=actions, local=local
    )
    if messages and not local:
        outbox_schedule(bot_id=bot.pk, chat_ids={m.chat_id for m in messages})

    return "answered" if event.error is None else "fallback"


def _apply_settled(
    request: LlmRequest, *, event: LlmResultEvent, completion: Completion | None
) -> str:
    # One Bot API call's bound (see telegram_call) for all rounds together.
    until = time.monotonic() + 2 * settings.TELEGRAM_TIMEOUT_SECONDS + 1.0
    for round_ in range(_APPLY_ROUNDS):
        _thinking_settle(request, until=until)
        outcome = _apply(
            request_id=request.pk,
            event=event,
            completion=completion,
            may_wait=round_ < _APPLY_ROUNDS - 1,
        )
        if outcome != _THINKING_IN_FLIGHT:
            return outcome

    return outcome


def llm_answer(*, request_id: int, task_id: str) -> str:
    """Answer one LLM request and feed the answer to its conversation.

    Idempotent: a request already answered, held by a live run or no
    longer awaited is left alone, and the answer is written only while the
    request is still open, so a redelivered task never sends a second
    answer. Past ``LLM_TASK_MAX_REDELIVERIES`` runs, and on
    LlmUnavailableError, the user gets the node's fallback text. Returns
    the outcome: answered, fallback, abandoned, duplicate, busy or missing.
    Raises DatabaseError subclasses when the database fails (the sweep
    retries later).
    """
    request = _claim(request_id=request_id, task_id=task_id)
    if request is None:
        return "busy"

    action = RequestLlm.model_validate(request.request["action"])
    event_keys = {"node_id": action.node_id, "request_key": action.request_key}
    if not _is_awaited(request):
        # Nobody waits for it any more: no need to pay for an answer.
        event = LlmResultEvent(**event_keys, error="abandoned")
        return _apply_settled(request, event=event, completion=None)
    if request.attempts > settings.LLM_TASK_MAX_REDELIVERIES + 1:
        logger.warning(
            "LLM request %s of bot %s gets the fallback after %s runs.",
            request.pk,
            request.bot_id,
            request.attempts - 1,
        )
        event = LlmResultEvent(**event_keys, error="redeliveries_exhausted")
        return _apply_settled(request, event=event, completion=None)

    # The call may take the whole budget and runs outside any transaction.
    _connection_release()
    event, completion = _ask(request=request, action=action)
    if completion is not None and action.cache_ttl_seconds > 0:
        llm_cache_count(bot_id=request.bot_id, hit=completion.cached)
    if completion is not None and not completion.cached:
        bot_id = str(request.bot_id)
        LLM_TOKENS.labels(bot_id=bot_id, kind="prompt").inc(completion.prompt_tokens)
        LLM_TOKENS.labels(bot_id=bot_id, kind="completion").inc(
            completion.completion_tokens
        )

    return _apply_settled(request, event=event, completion=completion)


def llm_sweep(*, older_than_seconds: float | None = None) -> int:
    """Re-enqueue requests left pending or whose run's lease ran out.

    A pending request is enqueued again only ``LLM_SWEEP_AFTER_SECONDS``
    after it was last enqueued, so a busy queue is not flooded with
    duplicates (which would do nothing). Returns how many were enqueued.
    """
    after = (
        settings.LLM_SWEEP_AFTER_SECONDS
        if older_than_seconds is None
        else older_than_seconds
    )
    now = timezone.now()
    stale = now - timedelta(seconds=after)
    due = LlmRequest.objects.filter(
        Q(status=Status.PENDING, enqueued_at__lte=stale)
        | Q(status=Status.RUNNING, lease_until__lt=now)
    )
    ids = list(due.order_by("id").values_list("id", flat=True)[:1000])
    with transaction.atomic():
        LlmRequest.objects.filter(pk__in=ids).update(enqueued_at=now)
        for request_id in ids:
            llm_request_enqueue(request_id=request_id)

    return len(ids)
