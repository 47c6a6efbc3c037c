"""The state of one conversation between two events."""

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from dsl.spec import Spec


class MessageRef(BaseModel):
    """A message of the bot: in the chat (``message_id``) or inline."""

    message_id: int | None = None
    inline_message_id: str | None = None


class ConversationState(BaseModel):
    """Where a conversation is and what it has collected.

    Stored as JSON by the runtime (``model_dump(mode="json")``) and read
    back with ``model_validate``; unknown keys are ignored so that a state
    written by a newer version still loads.
    """

    model_config = ConfigDict(extra="ignore")

    # The node the conversation waits at; None before the first event.
    node: str | None = None
    # Wizard position: the step asked, invalid answers to it, steps before.
    step: int = 0
    attempts: int = 0
    history: list[int] = Field(default_factory=list)
    # The page of a menu's buttons being shown.
    page: int = 0
    # Counts node entries; carried in callback data to date a message, so
    # a button from an earlier visit to a node (or run of a wizard) is told
    # from one of this visit.
    generation: int = 0
    vars: dict[str, Any] = Field(default_factory=dict)
    # The SQL node whose RunSql awaits its SqlResultEvent.
    pending_sql: str | None = None
    # The request key of the RequestLlm whose LlmResultEvent is awaited.
    pending_llm: str | None = None
    # Transitions since the last user event; bounds runaway chains.
    chain: int = 0
    # A reply keyboard (the share-contact one) is shown and must be removed.
    reply_keyboard: bool = False
    # The pressed menu message to edit once a pending SQL result arrives.
    edit_target: MessageRef | None = None

    @classmethod
    def initial(cls) -> "ConversationState":
        """Return the state of a conversation that has not started.

        Never raises.
        """
        return cls()

    def is_at_start(self, spec: "Spec") -> bool:
        """Tell whether the conversation rests at the start (or not started).

        Only then may the runtime move it to another spec version: nothing
        in progress (a wizard step, a pending SQL node) depends on the old
        one.

        Never raises.
        """
        if self.pending_sql is not None or self.pending_llm is not None:
            return False
        if self.node is None:
            return True

        return self.node == spec.start and self.step == 0 and not self.history
