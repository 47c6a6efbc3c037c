"""The executor: (spec, state, event) -> (new state, actions), without I/O.

Rules every node shares, in the order they apply:

1. A state whose node (or wizard step) no longer exists in the spec is
   restarted: a message and the start node.
2. While a SQL node waits for its result, only that ``SqlResultEvent``
   moves on; ``/start`` and ``/cancel`` abandon the wait; anything else is
   asked to wait a moment. A result nobody waits for is ignored. The same
   holds while an LLM node waits for its ``LlmResultEvent``, which arrives
   in a later run of the executor.
3. Commands: a wizard takes ``/cancel``, ``/back`` and ``/skip`` first;
   ``/start`` opens the matching deep link or the start node; a command of
   the spec opens its node; ``/cancel`` elsewhere says so and shows the
   start node; any other command is answered as unknown and the node keeps
   waiting.
4. Before the first node anything starts the conversation, except a button
   press, which is answered as no longer active.
5. Everything else goes to the current node.

Every button press gets exactly one ``AnswerCallback``, sent first.
"""

from collections.abc import Callable

from pydantic import BaseModel, Field

from dsl.actions import Action
from dsl.context import ExecutionContext
from dsl.events import (
    CallbackEvent,
    CommandEvent,
    Event,
    LlmResultEvent,
    SqlResultEvent,
)
from dsl.spec import Spec
from dsl.state import ConversationState
from dsl.turn import Incident, Turn

# Commands that still work while a SQL node waits for its result.
_ESCAPE_COMMANDS = frozenset({"start", "cancel"})


class ExecutionResult(BaseModel):
    """The conversation's new state and what to send, in order.

    ``incidents`` lists spec problems met on the way (a failing template or
    SQL node); the user was already answered politely.
    """

    state: ConversationState
    actions: list[Action]
    incidents: list[Incident] = Field(default_factory=list)


def _position_valid(spec: Spec, state: ConversationState) -> bool:
    if state.node is None:
        return state.pending_sql is None and state.pending_llm is None
    node = spec.nodes.get(state.node)
    if node is None:
        return False
    if state.pending_sql is not None and state.pending_sql != state.node:
        return False
    if state.pending_llm is not None and not state.pending_llm.startswith(
        f"{state.node}#"
    ):
        return False

    return node.position_valid(state)


def _start(turn: Turn, payload: str | None) -> None:
    found = turn.spec.deep_link_match(payload or "")
    if found is None:
        turn.goto(turn.spec.start)
        return
    link, value = found
    if link.into is not None:
        turn.state.vars[link.into] = value
    turn.goto(link.node)


def _command(turn: Turn, event: CommandEvent) -> None:
    spec = turn.spec
    node = spec.nodes.get(turn.state.node) if turn.state.node is not None else None
    if node is not None and node.handle_command(turn, event):
        return

    route = spec.commands.get(event.command)
    if event.command == "start":
        _start(turn, event.payload)
    elif route is not None and route.node is not None:
        turn.goto(route.node)
    elif event.command == "cancel":
        turn.send(turn.text("bf.cancelled"))
        turn.goto(spec.start)
    elif node is None:
        turn.send(turn.text("bf.unknown_command"))
        turn.goto(spec.start)
    else:
        node.reprompt(turn, turn.text("bf.unknown_command"))


def _while_waiting(
    turn: Turn,
    event: Event,
    *,
    result: type[SqlResultEvent | LlmResultEvent],
    awaited: bool,
    abandon: Callable[[ConversationState], None],
) -> bool:
    """Take an event that arrives while a ``result`` is awaited; return if handled.

    ``awaited`` tells whether ``event`` is the very result waited for; an
    escape command calls ``abandon`` and is handled as usual.
    """
    state = turn.state
    if isinstance(event, result):
        if awaited and state.node is not None:
            turn.spec.nodes[state.node].handle(turn, event)
        return True
    if isinstance(event, CommandEvent) and event.command in _ESCAPE_COMMANDS:
        abandon(state)
        return False
    if isinstance(event, CallbackEvent):
        turn.notice("bf.please_wait")
    else:
        turn.send(turn.text("bf.please_wait"))

    return True


def _sql_abandon(state: ConversationState) -> None:
    state.pending_sql = None
    state.chain = 0


def _llm_abandon(state: ConversationState) -> None:
    # The answer, when it comes, finds nobody waiting and is dropped.
    state.pending_llm = None


def _while_sql_pending(turn: Turn, event: Event) -> bool:
    """Take an event that arrives while SQL is pending; return if handled."""
    awaited = (
        isinstance(event, SqlResultEvent) and event.node_id == turn.state.pending_sql
    )

    return _while_waiting(
        turn, event, result=SqlResultEvent, awaited=awaited, abandon=_sql_abandon
    )


def _while_llm_pending(turn: Turn, event: Event) -> bool:
    """Take an event that arrives while an LLM answer is awaited; return if handled."""
    awaited = (
        isinstance(event, LlmResultEvent)
        and event.request_key == turn.state.pending_llm
    )

    return _while_waiting(
        turn, event, result=LlmResultEvent, awaited=awaited, abandon=_llm_abandon
    )


def _dispatch(turn: Turn, event: Event) -> None:
    spec, state = turn.spec, turn.state
    if not _position_valid(spec, state):
        turn.report("restarted", f"The state's position {state.node!r} left the spec.")
        turn.rest_at_start()
        if not isinstance(event, CommandEvent):
            if isinstance(event, CallbackEvent):
                turn.notice("bf.button_inactive")
            turn.fail("bf.restarted")
            return

    if state.pending_sql is not None and _while_sql_pending(turn, event):
        return
    if state.pending_llm is not None and _while_llm_pending(turn, event):
        return
    if isinstance(event, SqlResultEvent | LlmResultEvent):
        return
    if isinstance(event, CommandEvent):
        _command(turn, event)
        return
    if state.node is None:
        if isinstance(event, CallbackEvent):
            turn.notice("bf.button_inactive")
        else:
            turn.goto(spec.start)
        return

    spec.nodes[state.node].handle(turn, event)


def execute(
    spec: Spec, state: ConversationState, event: Event, ctx: ExecutionContext
) -> ExecutionResult:
    """Handle one event of a conversation and return its new state and actions.

    A pure function: it reads nothing but its arguments and does no I/O.
    It raises nothing for any state and event a user can produce; spec
    problems met on the way are answered politely and listed in
    ``incidents``.
    """
    turn = Turn(spec=spec, state=state, event=event, ctx=ctx)
    _dispatch(turn, event)
    outcome = turn.finish()

    return ExecutionResult(
        state=outcome.state, actions=outcome.actions, incidents=outcome.incidents
    )
