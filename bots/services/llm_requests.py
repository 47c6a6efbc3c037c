"""Recording an ``llm.v1`` node's request with the update that reached it.

The request row, its "thinking…" message and its typing action are written
in the update's transaction; the task that answers it is enqueued once
that commits.
"""

from functools import partial, update_wrapper
from typing import Any

from django.db import transaction
from django.utils import timezone

from bots.models import Bot, Conversation, LlmRequest, OutboundMessage
from bots.services.outbox import (
    outbox_messages_build,
    outbox_messages_deliver_locally,
    outbox_schedule,
)
from bots.updates import ParsedUpdate
from dsl import Action, RequestLlm, SendMessage

# The update facts an answer needs to be sent as the update's replies were.
_CONTEXT_FIELDS = (
    "update_id",
    "kind",
    "chat_id",
    "chat_type",
    "thread_id",
    "message_id",
    "user_id",
    "user_first_name",
    "language_code",
)


def _enqueue(request_id: int) -> None:
    from bots.tasks import llm_answer_task

    llm_answer_task.delay(request_id)


def llm_request_enqueue(*, request_id: int) -> None:
    """Enqueue the answer task once the current transaction commits.

    A broker failure after the commit is logged, not raised: the request is
    durable and the sweep enqueues it again.
    """
    # Django names a failed robust hook by its __qualname__, which a bare
    # partial lacks.
    enqueue = update_wrapper(partial(_enqueue, request_id), _enqueue)
    transaction.on_commit(enqueue, robust=True)


def llm_context_dump(parsed: ParsedUpdate) -> dict[str, Any]:
    """Return the facts of ``parsed`` that an answer is sent with."""
    return {name: getattr(parsed, name) for name in _CONTEXT_FIELDS}


def llm_context_load(data: dict[str, Any]) -> ParsedUpdate:
    """Return the update an answer belongs to, from ``llm_context_dump``."""
    optional = {name: data.get(name) for name in _CONTEXT_FIELDS[2:]}

    return ParsedUpdate(
        update_id=int(data["update_id"]), kind=str(data["kind"]), **optional
    )


def _typing_message(
    *, bot: Bot, conversation: Conversation, parsed: ParsedUpdate
) -> OutboundMessage | None:
    # A callback from an inline message has no chat to show typing in.
    if parsed.chat_id is None:
        return None
    payload: dict[str, Any] = {"chat_id": parsed.chat_id, "action": "typing"}
    if parsed.thread_id:
        payload["message_thread_id"] = parsed.thread_id

    return OutboundMessage(
        bot=bot,
        conversation=conversation,
        chat_id=parsed.chat_id,
        update_id=parsed.update_id,
        method="sendChatAction",
        payload=payload,
    )


def llm_requests_record(
    *,
    bot: Bot,
    conversation: Conversation,
    parsed: ParsedUpdate,
    actions: list[Action],
    local: bool = False,
) -> list[OutboundMessage]:
    """Record every ``RequestLlm`` of ``actions`` and queue what the user sees.

    Writes, in the caller's transaction, the request (unique per bot,
    update and node) and its "thinking…" message and typing action in the
    outbox, and enqueues the answer task on commit. With ``local`` the rows
    are stored as delivered. Returns the outbox rows written, in order.
    Raises IntegrityError when the update already recorded this node.
    """
    written: list[OutboundMessage] = []
    for action in actions:
        if not isinstance(action, RequestLlm):
            continue

        thinking = None
        if action.thinking_text:
            send = SendMessage(text=action.thinking_text, parse_mode="HTML")
            thinking = outbox_messages_build(
                bot=bot, conversation=conversation, parsed=parsed, actions=[send]
            )[0]
        # TODO: typing is sent once and Telegram shows it for 5 s; a longer
        # wait shows no typing after that.
        typing = (
            _typing_message(bot=bot, conversation=conversation, parsed=parsed)
            if action.typing
            else None
        )
        rows = [row for row in (thinking, typing) if row is not None]
        if local:
            outbox_messages_deliver_locally(bot=bot, messages=rows)
        for row in rows:
            row.save()

        request = LlmRequest.objects.create(
            bot=bot,
            conversation=conversation,
            update_id=parsed.update_id,
            node_id=action.node_id,
            request_key=action.request_key,
            request={
                "action": action.model_dump(mode="json"),
                "update": llm_context_dump(parsed),
                "local": local,
            },
            thinking_message=thinking,
            typing_message=typing,
            enqueued_at=timezone.now(),
        )
        if rows and not local:
            # Published before the answer task, so that a free worker sends
            # "thinking…" before it starts waiting on the model.
            outbox_schedule(bot_id=bot.pk, chat_ids={row.chat_id for row in rows})
        llm_request_enqueue(request_id=request.pk)
        written += rows

    return written


def llm_actions_without_requests(actions: list[Action]) -> list[Action]:
    """Return ``actions`` without the ``RequestLlm`` ones, which are no Bot API call."""
    return [action for action in actions if not isinstance(action, RequestLlm)]
