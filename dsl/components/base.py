"""What every component type provides: its node model and its behaviour.

A component type is one module in this package: a pydantic model with a
literal ``type`` (``menu.v1``) registered with ``component_register``. The
model validates the node's JSON, and its methods run the node (``enter``,
``handle``) and describe it to the linter.
"""

from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict

from dsl.events import CallbackEvent, CommandEvent, Event
from dsl.issues import LintIssue
from dsl.state import ConversationState

if TYPE_CHECKING:
    from dsl.turn import Turn

# A reference from a node to something, with its path within the node.
PathRef = tuple[str, str]


class NodeBase(BaseModel):
    """A node of a spec: one instance of a component type."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str

    # Whether the node stops to wait for the user once entered; a node that
    # does not (SQL, a reply) continues to the next one by itself.
    waits_for_input: ClassVar[bool] = True

    def enter(self, turn: "Turn") -> str | None:
        """Run the node as the conversation arrives at it.

        Return the id of the node to continue to at once, or None to wait
        for the next event. Never raise for any state a user can produce.
        """
        raise NotImplementedError

    def handle(self, turn: "Turn", event: Event) -> None:
        """Take an event that arrives while the conversation is at this node.

        A node that does not wait for input only sees an event when the
        conversation rests at it (a start node of that kind): it runs again,
        except for a button press, which belongs to an older message.
        Never raise.
        """
        node_id = turn.state.node
        if isinstance(event, CallbackEvent):
            turn.notice("bf.button_inactive")
        elif node_id is not None:
            turn.goto(node_id)

    def position_valid(self, state: ConversationState) -> bool:
        """Tell whether ``state`` can go on at this node (after a spec change).

        Never raises.
        """
        return True

    def handle_command(self, turn: "Turn", event: CommandEvent) -> bool:
        """Take a command before the spec's own routing; return whether taken.

        Never raises.
        """
        return False

    def reprompt(self, turn: "Turn", notice: str) -> None:
        """Tell the user ``notice`` and show again what the node waits for.

        Never raises.
        """
        turn.send(notice)

    def targets(self) -> list[PathRef]:
        """Return every node id this node can lead to, with its path.

        Never raises.
        """
        return []

    def continuations(self) -> list[str]:
        """Return the nodes entered right after this one without any input.

        Never raises.
        """
        return []

    def translation_refs(self) -> list[PathRef]:
        """Return every translation key the node uses, with its path.

        Never raises.
        """
        return []

    def callback_refs(self) -> list[tuple[str, int, str]]:
        """Return (path, step, token) of every inline button the node shows.

        Never raises.
        """
        return []

    def provided_vars(self) -> list[str]:
        """Return the variables the node assigns.

        Never raises.
        """
        return []

    def required_vars(self) -> list[PathRef]:
        """Return the variables the node needs, with the path needing them.

        Never raises.
        """
        return []

    def lint(self) -> list[LintIssue]:
        """Return problems of the node alone, with paths relative to it.

        Never raises.
        """
        return []


class ContinuesAtNext:
    """For a node that goes on to an optional ``next`` once it has replied.

    Without ``next`` the conversation rests at the start node, so the
    message the user came from keeps working. Mix in before ``NodeBase``;
    the node declares the ``next`` field itself.
    """

    if TYPE_CHECKING:
        next: str | None

    def continue_at_next(self, turn: "Turn") -> str | None:
        """Return ``next``, having rested the conversation at start without it.

        Never raises.
        """
        if self.next is None:
            turn.rest_at_start()

        return self.next

    def targets(self) -> list[PathRef]:
        return [("next", self.next)] if self.next is not None else []

    def continuations(self) -> list[str]:
        return [self.next] if self.next is not None else []
