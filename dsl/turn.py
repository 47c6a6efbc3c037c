"""One run of the executor: what components read and the one place they write.

Components never build actions or move the conversation themselves; they
ask the turn, which applies the rules every node shares: one answer per
button press, editing a menu in place, removing a reply keyboard, the
bound on automatic transitions and the way back to the start node.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from dsl.actions import (
    Action,
    AnswerCallback,
    EditMessage,
    RequestLlm,
    RunSql,
    SendMessage,
)
from dsl.callback import CallbackData, callback_decode, callback_encode, owner_tag
from dsl.context import ExecutionContext
from dsl.events import CallbackEvent, Event, SqlResultEvent, is_user_event
from dsl.messages import translate
from dsl.state import ConversationState, MessageRef
from dsl.text import ParseMode, encodable, split_text

if TYPE_CHECKING:
    from dsl.spec import Spec

# Transitions allowed since the last user event (SQL results included);
# far above any sensible chain, low enough to stop a loop at once.
MAX_CHAIN = 25
# Telegram's limit on the text of a callback answer.
MAX_ANSWER_CHARS = 200


class Incident(BaseModel):
    """A spec problem met while running (a failing template or SQL node).

    The user got a polite message; the runtime may log or count it.
    """

    node_id: str | None
    code: str
    detail: str


@dataclass(frozen=True)
class TurnOutcome:
    state: ConversationState
    actions: list[Action]
    incidents: list[Incident]


class Turn:
    """The state being changed and the actions decided for one event."""

    def __init__(
        self,
        *,
        spec: "Spec",
        state: ConversationState,
        event: Event,
        ctx: ExecutionContext,
    ) -> None:
        self.spec = spec
        self.ctx = ctx
        self.event = event
        self.state = state.model_copy(deep=True)
        self.actions: list[Action] = []
        self.incidents: list[Incident] = []
        self._callback_id = (
            event.callback_id if isinstance(event, CallbackEvent) else None
        )
        self._answer: AnswerCallback | None = None
        self._has_sent = False
        # A menu reached from a button press replaces the pressed message,
        # also across the SQL round trip the press may have started.
        self._edit: MessageRef | None = None
        if isinstance(event, SqlResultEvent):
            self._edit = self.state.edit_target
        self.state.edit_target = None
        if is_user_event(event) and self.state.pending_sql is None:
            self.state.chain = 0

    # Variables and texts

    def builtins(self) -> dict[str, Any]:
        """Return the variables every conversation has (``BUILTIN_VARS``).

        Never raises.
        """
        return {
            "user_id": self.ctx.user_id,
            "chat_id": self.ctx.chat_id,
            "locale": self.ctx.locale,
            "first_name": self.ctx.user_first_name,
        }

    def variables(self) -> dict[str, Any]:
        """Return the conversation variables with the built-ins over them.

        Never raises.
        """
        return {**self.state.vars, **self.builtins()}

    def text(
        self,
        key: str,
        *,
        count: int | float | None = None,
        params: dict[str, Any] | None = None,
        parse_mode: ParseMode | None = "HTML",
    ) -> str:
        """Return a translated text with the variables (and ``params``) filled.

        Never raises.
        """
        values = {**self.variables(), **(params or {})}
        text = translate(
            self.ctx.translator, key, count=count, params=values, parse_mode=parse_mode
        )

        # Labels and callback answers never pass split_text, which cleans
        # message text; a lone surrogate would make any of them unsendable.
        return encodable(text)

    def label(self, key: str, params: dict[str, Any] | None = None) -> str:
        """Return a translated text without markup (buttons, answers).

        Never raises.
        """
        return self.text(key, params=params, parse_mode=None)

    # Output

    def send(
        self,
        text: str,
        *,
        parse_mode: ParseMode | None = "HTML",
        reply_markup: dict[str, Any] | None = None,
    ) -> None:
        """Send a message, split if long, the markup on its last part.

        Never raises.
        """
        if not text.strip():
            return
        if reply_markup is None and self.state.reply_keyboard:
            reply_markup = {"remove_keyboard": True}
        # Inline keyboards and force_reply leave a reply keyboard in place.
        if reply_markup is not None and "keyboard" in reply_markup:
            self.state.reply_keyboard = True
        if reply_markup is not None and reply_markup.get("remove_keyboard"):
            self.state.reply_keyboard = False

        chunks = split_text(text, parse_mode=parse_mode)
        for index, chunk in enumerate(chunks):
            is_last = index == len(chunks) - 1
            markup = reply_markup if is_last else None
            self.actions.append(
                SendMessage(text=chunk, parse_mode=parse_mode, reply_markup=markup)
            )
        self._has_sent = True

    def show(self, text: str, *, reply_markup: dict[str, Any] | None) -> None:
        """Show a menu: edit the pressed message if allowed, else send it.

        Never raises.
        """
        target = self._edit
        chunks = split_text(text, parse_mode="HTML")
        if target is None or self._has_sent or len(chunks) != 1:
            self.send(text, reply_markup=reply_markup)
            return

        self.actions.append(
            EditMessage(
                message_id=target.message_id,
                inline_message_id=target.inline_message_id,
                text=chunks[0],
                parse_mode="HTML",
                reply_markup=reply_markup,
            )
        )
        self._edit = None
        self._has_sent = True

    def allow_edit(self, event: CallbackEvent) -> None:
        """Let the next menu shown replace the message ``event`` came from.

        Never raises.
        """
        if event.message_id is not None or event.inline_message_id is not None:
            self._edit = MessageRef(
                message_id=event.message_id, inline_message_id=event.inline_message_id
            )

    def answer(self, text: str | None = None, *, show_alert: bool = False) -> None:
        """Answer the button press being handled; only the first answer counts.

        Never raises.
        """
        if self._callback_id is None or self._answer is not None:
            return
        shown = text[:MAX_ANSWER_CHARS] if text else None
        self._answer = AnswerCallback(
            callback_id=self._callback_id, text=shown, show_alert=show_alert
        )

    def notice(self, key: str) -> None:
        """Answer the button press with a short translated notice.

        Never raises.
        """
        self.answer(self.label(key))

    # Buttons

    def _owner(self) -> str | None:
        # In a group each member has a conversation of their own, so a button
        # must say whose it is; a private chat has only one.
        if not self.ctx.is_group or self.ctx.user_id is None:
            return None

        return owner_tag(self.ctx.user_id)

    def button_data(self, token: str, *, step: int = 0) -> str:
        """Return the callback data of a button the current node shows.

        Never raises.
        """
        return callback_encode(
            generation=self.state.generation,
            node_id=self.state.node or "",
            step=step,
            token=token,
            owner=self._owner(),
        )

    def pressed(self, event: CallbackEvent) -> CallbackData | None:
        """Return the data of the pressed button if it can act here.

        That is a button of the current node, pressed by the member it was
        shown to. Return None for data of another node or another member
        and for data this project did not write. Never raises.
        """
        data = callback_decode(event.data)
        if data is None or data.node_id != self.state.node:
            return None
        if data.owner != self._owner():
            return None

        return data

    def run_sql(self, action: RunSql) -> None:
        """Ask the runtime to run SQL; the conversation waits for the result.

        Never raises.
        """
        self.actions.append(action)
        self.state.pending_sql = action.node_id

    def request_key(self) -> str:
        """Return the key of an LLM request made at this visit of the node.

        The generation changes on every node entry, so a result for an
        earlier visit never matches. Never raises.
        """
        return f"{self.state.node or ''}#{self.state.generation}"

    def request_llm(self, action: RequestLlm) -> None:
        """Ask the runtime for an LLM answer; the conversation waits for it.

        Never raises.
        """
        self.actions.append(action)
        self.state.pending_llm = action.request_key
        # The request waits for a worker: later messages start a new chain.
        self.state.chain = 0

    def report(self, code: str, detail: str) -> None:
        """Record a spec problem met at the current node.

        Never raises.
        """
        self.incidents.append(
            Incident(node_id=self.state.node, code=code, detail=detail)
        )

    # Moving through the spec

    def goto(self, node_id: str) -> None:
        """Enter ``node_id`` and every node after it that needs no input.

        Never raises.
        """
        target: str | None = node_id
        while target is not None:
            node = self.spec.nodes.get(target)
            if node is None or self.state.chain >= MAX_CHAIN:
                code = "missing_node" if node is None else "runaway"
                self.report(code, f"Stopped before entering {target!r}.")
                self.fail()
                return
            self.state.chain += 1
            self._arrive(target)
            target = node.enter(self)

    def rest_at_start(self) -> None:
        """Put the conversation at the start node without sending it again.

        Never raises.
        """
        self._reset_position(self.spec.start)

    def fail(self, key: str = "bf.error") -> None:
        """Apologise with ``key`` and go back to the start node.

        The start node is shown again when it waits for input; one that does
        not (and could fail the same way) is only rested at.

        Never raises.
        """
        self.send(self.text(key))
        start = self.spec.nodes[self.spec.start]
        if start.waits_for_input:
            # A node that waits ends any chain, so the bound can start over.
            self.state.chain = 0
            self.goto(self.spec.start)
        else:
            self.rest_at_start()

    def _reset_position(self, node_id: str) -> None:
        self.state.node = node_id
        self.state.step = 0
        self.state.attempts = 0
        self.state.history = []
        self.state.page = 0
        self.state.pending_sql = None
        self.state.pending_llm = None

    def _arrive(self, node_id: str) -> None:
        self._reset_position(node_id)
        self.state.generation += 1

    def finish(self) -> TurnOutcome:
        """Return the new state and the actions, the press answered first.

        Never raises.
        """
        if self._callback_id is not None and self._answer is None:
            self.answer()
        if self.state.pending_sql is not None and self._edit is not None:
            self.state.edit_target = self._edit
        if self.state.pending_sql is None:
            self.state.chain = 0
        actions: list[Action] = [self._answer] if self._answer is not None else []

        return TurnOutcome(
            state=self.state, actions=actions + self.actions, incidents=self.incidents
        )
