"""Process one Telegram update: claim it, run the spec, queue the replies.

Ordering rule: updates of one conversation are processed one at a time in
the order they reach the runtime (the conversation row is locked), never
reordered by update_id. A late update (a lower update_id than the last one
processed, as after a Telegram re-delivery) is processed against the
conversation's current state, so a stale button press is answered as stale.
A conversation idle past its expiry starts over first (see
``bots.services.lifecycle``).
"""

import logging
from dataclasses import dataclass
from typing import Any, cast

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from botfactory import rows
from bots.models import BlockedChat, Bot, Conversation, OutboundMessage, ProcessedUpdate
from bots.observability import executor_step_timed, update_outcome_record
from bots.selectors import spec_get_by_id
from bots.services.lifecycle import conversation_reset_if_idle
from bots.services.llm_requests import (
    llm_actions_without_requests,
    llm_requests_record,
)
from bots.services.local_specs import local_chat_number, local_spec_pin
from bots.services.outbox import (
    outbox_messages_build,
    outbox_messages_deliver_locally,
    outbox_schedule,
)
from bots.sql import sql_run
from bots.updates import ParsedUpdate, update_parse
from dsl import (
    Action,
    ChatType,
    ConversationState,
    Event,
    ExecutionContext,
    RunSql,
    Spec,
    SqlResultEvent,
    execute,
)
from i18n.locales import locale_negotiate
from i18n.selectors import translator_get

logger = logging.getLogger(__name__)

# A spec cannot chain more SQL nodes than this for one update; the linter
# forbids cycles, this stops a pathological spec anyway.
_MAX_SQL_ROUNDS = 20
# What running a spec changes on a conversation (an idle reset included).
_CONVERSATION_SAVED = (
    "spec_version",
    "state",
    "locale",
    "last_update_id",
    "updated_at",
)


@dataclass(frozen=True)
class UpdateResult:
    outcome: str
    messages: tuple[OutboundMessage, ...] = ()


def _claim_execute(
    cursor: CursorWrapper, *, bot: Bot, update_id: int, outcome: str
) -> None:
    # One statement that both checks and claims: a concurrent duplicate
    # waits for this transaction and then inserts nothing.
    cursor.execute(
        f"INSERT INTO {rows.table(ProcessedUpdate)} (bot_id, update_id, outcome, "
        "created_at) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (bot_id, update_id) DO NOTHING",
        [bot.pk, update_id, outcome, timezone.now()],
    )


def _claim(*, bot: Bot, update_id: int, outcome: str) -> bool:
    with connection.cursor() as cursor:
        _claim_execute(cursor, bot=bot, update_id=update_id, outcome=outcome)
        return cursor.rowcount == 1


def _set_outcome(*, bot: Bot, update_id: int, outcome: str) -> None:
    ProcessedUpdate.objects.filter(bot=bot, update_id=update_id).update(outcome=outcome)


def _conversation_key(*, bot: Bot, parsed: ParsedUpdate) -> list[int]:
    assert parsed.key is not None
    return [bot.pk, parsed.key.chat_id, parsed.key.thread_id, parsed.key.user_id]


def _conversation_select() -> str:
    return (
        f"SELECT {rows.columns(Conversation)} FROM {rows.table(Conversation)}"
        " WHERE bot_id = %s AND chat_id = %s AND thread_id = %s AND user_id = %s"
        + rows.for_update()
    )


def _claim_and_lock(
    *, bot: Bot, parsed: ParsedUpdate
) -> tuple[bool, Conversation | None]:
    """Claim the update, then lock its conversation, in one round trip.

    Return whether the update was claimed, and the locked conversation, None
    when the chat has none yet. Every update takes the claim first, then the
    conversation, so no two of them wait for each other in opposite orders.
    """
    with (
        rows.one_round_trip(),
        connection.cursor() as claim,
        connection.cursor() as lock,
    ):
        _claim_execute(claim, bot=bot, update_id=parsed.update_id, outcome="processed")
        lock.execute(_conversation_select(), _conversation_key(bot=bot, parsed=parsed))
        row = lock.fetchone()
        # Known once the fetch has waited for both; gone once closed.
        claimed = claim.rowcount == 1
    if row is None:
        return claimed, None

    return claimed, rows.row_instance(Conversation, row)


def _conversation_lock(*, bot: Bot, parsed: ParsedUpdate) -> Conversation:
    found = rows.row_fetch(
        Conversation, _conversation_select(), _conversation_key(bot=bot, parsed=parsed)
    )
    if found is not None:
        return found[0]

    return _conversation_create(bot=bot, parsed=parsed)


def _conversation_create(*, bot: Bot, parsed: ParsedUpdate) -> Conversation:
    """Insert the chat's first conversation and lock it."""
    key = _conversation_key(bot=bot, parsed=parsed)
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {rows.table(Conversation)} (bot_id, chat_id, thread_id, "
            "user_id, state, locale, created_at, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, '', %s, %s) "
            "ON CONFLICT (bot_id, chat_id, thread_id, user_id) DO NOTHING",
            [*key, "{}", now, now],
        )
    # A concurrent first update of the same chat may have inserted it first;
    # either way the row exists now, and this waits for its lock.
    found = rows.row_fetch(Conversation, _conversation_select(), key)
    assert found is not None

    return found[0]


def _locks_with_claim(*, bot: Bot, parsed: ParsedUpdate) -> bool:
    """Whether the update's conversation is locked along with its claim.

    So it is for every update that will run the spec, except a membership
    change, whose blocked-chat write comes between claim and lock. The
    others are claimed alone, then dropped, ignored or locked as before.
    """
    return (
        bot.is_active
        and parsed.kind != "my_chat_member"
        and parsed.event is not None
        and parsed.key is not None
        and (
            bot.live_version_id is not None
            or local_chat_number(parsed.key.chat_id) is not None
        )
    )


def _membership_apply(*, bot: Bot, parsed: ParsedUpdate) -> None:
    if parsed.chat_id is None or parsed.member_status is None:
        return
    if parsed.member_status in ("kicked", "left"):
        BlockedChat.objects.get_or_create(
            bot=bot, chat_id=parsed.chat_id, defaults={"reason": parsed.member_status}
        )
    elif parsed.member_status in ("member", "administrator"):
        BlockedChat.objects.filter(bot=bot, chat_id=parsed.chat_id).delete()


def _chat_type(value: str | None) -> ChatType:
    if value in ("group", "supergroup", "channel"):
        return cast(ChatType, value)

    return "private"


def _component(spec: Spec, state: ConversationState, node_id: str | None = None) -> str:
    """Name the component type of the node that takes the next step."""
    node = spec.nodes.get(node_id or state.node or spec.start)
    if node is None:
        node = spec.nodes[spec.start]

    return node.type


def conversation_spec_run(
    *,
    bot: Bot,
    conversation: Conversation,
    parsed: ParsedUpdate,
    event: Event,
    save: bool = True,
) -> list[Action]:
    """Run the conversation's spec on ``event`` and return the actions.

    The caller holds the conversation's row lock. Follows the live spec
    version from the start node (a studio "Try it" chat runs the version or
    draft it is for instead), negotiates the locale, runs the executor
    and any SQL node it asks for, and sets the new state, the locale and
    the update id on ``conversation``, saving them unless ``save`` is off
    (the caller then saves with ``conversation_save``). Raises DatabaseError
    subclasses when the database fails.
    """
    version_id = conversation.spec_version_id
    live_id = bot.live_version_id
    spec = spec_get_by_id(version_id=version_id) if version_id is not None else None
    state = (
        ConversationState.model_validate(conversation.state)
        if conversation.state
        else ConversationState.initial()
    )
    pin = local_spec_pin(bot=bot, chat_id=conversation.chat_id)
    if pin is not None:
        conversation.spec_version_id, spec = pin
    # A conversation follows the live version only from its start node, so
    # a publish never changes the rules of a wizard in progress.
    elif (
        live_id is not None
        and (spec is None or version_id != live_id)
        and (spec is None or state.is_at_start(spec))
    ):
        conversation.spec_version_id = live_id
        spec = spec_get_by_id(version_id=live_id)
    assert spec is not None

    locale = locale_negotiate(
        parsed.language_code, available=spec.locales, default=spec.default_locale
    )
    translator = translator_get(
        bot_id=bot.pk,
        revision=bot.cache_revision,
        locale=locale,
        default_locale=spec.default_locale,
    )
    context = ExecutionContext(
        translator=translator,
        locale=locale,
        chat_type=_chat_type(parsed.chat_type),
        user_id=parsed.user_id,
        chat_id=parsed.chat_id,
        user_first_name=parsed.user_first_name,
        bot_username=bot.username or None,
    )

    actions: list[Action] = []
    current: Event = event
    for _round in range(_MAX_SQL_ROUNDS + 1):
        with executor_step_timed(_component(spec, state)):
            result = execute(spec, state, current, context)
        state = result.state
        for incident in result.incidents:
            # The user got the node's fallback; the spec's author needs this.
            logger.warning(
                "Node %s failed: %s (%s).",
                incident.node_id,
                incident.code,
                incident.detail,
            )
        pending_sql = [
            action for action in result.actions if isinstance(action, RunSql)
        ]
        actions.extend(a for a in result.actions if not isinstance(a, RunSql))
        if not pending_sql:
            break
        with executor_step_timed(_component(spec, state, pending_sql[0].node_id)):
            current = _sql_event(
                bot=bot, action=pending_sql[0], update_id=parsed.update_id
            )

    conversation.state = state.model_dump(mode="json")
    conversation.locale = locale
    conversation.last_update_id = parsed.update_id
    if save:
        conversation_save(conversation)

    return actions


def conversation_save(conversation: Conversation) -> None:
    """Write what running the spec changed on ``conversation``."""
    rows.row_update(conversation, _CONVERSATION_SAVED)


def _sql_event(*, bot: Bot, action: RunSql, update_id: int) -> SqlResultEvent:
    outcome = sql_run(
        bot=bot,
        node_id=action.node_id,
        statement=action.statement,
        params=action.params,
        mode=action.mode,
        timeout_ms=action.timeout_ms,
        max_rows=action.max_rows,
        update_id=update_id,
    )

    return SqlResultEvent(
        node_id=action.node_id, rows=outcome.rows, error=outcome.error
    )


def _update_process_once(
    *, bot: Bot, parsed: ParsedUpdate, local: bool
) -> UpdateResult:
    with transaction.atomic():
        conversation: Conversation | None = None
        locked_with_claim = _locks_with_claim(bot=bot, parsed=parsed)
        if locked_with_claim:
            claimed, conversation = _claim_and_lock(bot=bot, parsed=parsed)
        else:
            claimed = _claim(bot=bot, update_id=parsed.update_id, outcome="processed")
        if not claimed:
            return UpdateResult(outcome="duplicate")
        if not bot.is_active:
            _set_outcome(bot=bot, update_id=parsed.update_id, outcome="dropped")
            return UpdateResult(outcome="dropped")
        if parsed.kind == "my_chat_member":
            _membership_apply(bot=bot, parsed=parsed)
        if parsed.event is None or parsed.key is None:
            _set_outcome(bot=bot, update_id=parsed.update_id, outcome="ignored")
            logger.info(
                "Update ignored: %s (%s).",
                parsed.kind,
                parsed.ignore_reason or "no event",
            )
            return UpdateResult(outcome="ignored")
        if (
            bot.live_version_id is None
            and local_chat_number(parsed.key.chat_id) is None
        ):
            _set_outcome(bot=bot, update_id=parsed.update_id, outcome="ignored")
            logger.warning("Update ignored: the bot has no published spec version.")
            return UpdateResult(outcome="ignored")

        if conversation is None:
            conversation = (
                _conversation_create(bot=bot, parsed=parsed)
                if locked_with_claim
                else _conversation_lock(bot=bot, parsed=parsed)
            )
        conversation_reset_if_idle(bot=bot, conversation=conversation)
        actions = conversation_spec_run(
            bot=bot,
            conversation=conversation,
            parsed=parsed,
            event=parsed.event,
            save=False,
        )
        messages = outbox_messages_build(
            bot=bot,
            conversation=conversation,
            parsed=parsed,
            actions=llm_actions_without_requests(actions),
        )
        if local:
            outbox_messages_deliver_locally(bot=bot, messages=messages)
        # The new state and the replies: one round trip for both.
        with rows.one_round_trip():
            conversation_save(conversation)
            rows.rows_insert(messages)
        messages += llm_requests_record(
            bot=bot,
            conversation=conversation,
            parsed=parsed,
            actions=actions,
            local=local,
        )
        if messages and not local:
            outbox_schedule(bot_id=bot.pk, chat_ids={m.chat_id for m in messages})

    return UpdateResult(outcome="processed", messages=tuple(messages))


def update_process(
    *, bot: Bot, update: dict[str, Any], local: bool = False
) -> UpdateResult:
    """Process one update exactly once and queue its replies in the outbox.

    The claim, the conversation lock, the new state and the outbox rows are
    one transaction; the send task is enqueued after it commits. A
    duplicate ``update_id`` changes nothing. With ``local`` (the terminal
    and browser chats) replies are stored as delivered and never reach
    Telegram. Raises DatabaseError subclasses when the database fails (the
    caller answers 503 so Telegram retries).
    """
    parsed = update_parse(update, bot_username=bot.username or None)
    result = _update_process_once(bot=bot, parsed=parsed, local=local)
    # Counted once committed; the local chats are not Telegram's updates.
    if not local:
        update_outcome_record(bot_id=bot.pk, kind=parsed.kind, outcome=result.outcome)

    return result
