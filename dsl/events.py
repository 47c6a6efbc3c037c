"""What happens in a conversation, as the executor receives it.

Every event is a pydantic model with a ``kind``; an event stored as JSON
(``model_dump(mode="json")``) reads back with ``event_from_dict``.
"""

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    field_validator,
)

_FIXED_KINDS = ("command", "text", "callback", "contact", "sql_result", "llm_result")


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CommandEvent(_Event):
    """A ``/command``: lowercased, without the slash and ``@botname``.

    ``payload`` is the text after the command (a deep link's payload for
    ``/start``), or None.
    """

    kind: Literal["command"] = "command"
    command: str
    payload: str | None = None


class TextEvent(_Event):
    """A text message that is not a command."""

    kind: Literal["text"] = "text"
    text: str


class CallbackEvent(_Event):
    """A press on an inline button of a message the bot sent."""

    kind: Literal["callback"] = "callback"
    callback_id: str
    data: str
    message_id: int | None = None
    inline_message_id: str | None = None


class ContactEvent(_Event):
    """A shared contact; ``contact_user_id`` is None when not on Telegram."""

    kind: Literal["contact"] = "contact"
    phone_number: str
    contact_user_id: int | None = None


class UnsupportedEvent(_Event):
    """A message no node takes; ``kind`` names it (sticker, voice, ...)."""

    kind: str = Field(min_length=1)

    @field_validator("kind")
    @classmethod
    def _kind_not_fixed(cls, value: str) -> str:
        if value in _FIXED_KINDS:
            raise ValueError(f"{value!r} is the kind of another event")

        return value


class SqlResultEvent(_Event):
    """The outcome of a ``RunSql`` action, fed back by the runtime."""

    kind: Literal["sql_result"] = "sql_result"
    node_id: str
    rows: list[dict[str, Any]] = Field(default_factory=list)
    error: str | None = None


class LlmResultEvent(_Event):
    """The outcome of a ``RequestLlm`` action, fed back by the runtime.

    ``text`` is the model's answer; ``error`` (a reason such as
    ``breaker_open`` or ``deadline``) means there is none and the node
    answers with its fallback text.
    """

    kind: Literal["llm_result"] = "llm_result"
    node_id: str
    request_key: str
    text: str | None = None
    error: str | None = None


def _event_tag(value: Any) -> str:
    kind = (
        value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    )

    return kind if kind in _FIXED_KINDS else "unsupported"


Event = Annotated[
    Annotated[CommandEvent, Tag("command")]
    | Annotated[TextEvent, Tag("text")]
    | Annotated[CallbackEvent, Tag("callback")]
    | Annotated[ContactEvent, Tag("contact")]
    | Annotated[UnsupportedEvent, Tag("unsupported")]
    | Annotated[SqlResultEvent, Tag("sql_result")]
    | Annotated[LlmResultEvent, Tag("llm_result")],
    Discriminator(_event_tag),
]

_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """Read an event back from its JSON form.

    Raises pydantic.ValidationError when ``data`` is not a valid event.
    """
    return _EVENT_ADAPTER.validate_python(dict(data))


def is_user_event(event: Event) -> bool:
    """Tell whether an event comes from the user rather than the runtime.

    Never raises.
    """
    return not isinstance(event, SqlResultEvent | LlmResultEvent)
