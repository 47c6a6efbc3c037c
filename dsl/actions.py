"""What the executor asks the runtime to do, in Bot API terms.

Every action is a pydantic model with a ``kind``; the runtime stores them
in its outbox as JSON and reads them back with ``action_from_dict``.
"""

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from dsl.text.markup import ParseMode

SqlMode = Literal["read", "write"]


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SendMessage(_Action):
    """``sendMessage`` to the chat; ``reply_markup`` is Bot API JSON."""

    kind: Literal["send_message"] = "send_message"
    text: str
    parse_mode: ParseMode | None = None
    reply_markup: dict[str, Any] | None = None


class EditMessage(_Action):
    """``editMessageText`` of the message a button was pressed on.

    Exactly one of ``message_id`` (in the conversation's chat) and
    ``inline_message_id`` is set.
    """

    kind: Literal["edit_message"] = "edit_message"
    message_id: int | None = None
    inline_message_id: str | None = None
    text: str
    parse_mode: ParseMode | None = None
    reply_markup: dict[str, Any] | None = None


class AnswerCallback(_Action):
    """``answerCallbackQuery``; every button press gets exactly one."""

    kind: Literal["answer_callback"] = "answer_callback"
    callback_id: str
    text: str | None = None
    show_alert: bool = False


class RunSql(_Action):
    """Run one statement and feed its outcome back as a ``SqlResultEvent``.

    ``statement`` uses ``:name`` parameters (render it for the driver with
    ``sql_parse(statement).render(style)``); ``params`` holds a value for
    every parameter and must always be passed to the driver, even empty.
    """

    kind: Literal["run_sql"] = "run_sql"
    node_id: str
    statement: str
    params: dict[str, Any] = Field(default_factory=dict)
    mode: SqlMode = "read"
    timeout_ms: int
    max_rows: int
    into: str | None = None


class LlmMessage(_Action):
    """One message of the conversation sent to a language model."""

    role: Literal["system", "user", "assistant"]
    content: str


class RequestLlm(_Action):
    """Ask a language model; the answer comes back as an ``LlmResultEvent``.

    ``request_key`` names this visit of the node (the result must carry it
    back); ``budget_seconds`` bounds the wait for the answer, after which the
    user gets the fallback text. ``thinking_text`` (message text in HTML),
    when set, is sent at once and replaced by the answer; ``typing`` shows
    the typing indicator while the user waits.
    """

    kind: Literal["request_llm"] = "request_llm"
    node_id: str
    request_key: str
    messages: list[LlmMessage]
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    budget_seconds: float
    cache_ttl_seconds: int = 0
    thinking_text: str | None = None
    typing: bool = True


Action = Annotated[
    SendMessage | EditMessage | AnswerCallback | RunSql | RequestLlm,
    Field(discriminator="kind"),
]

_ACTION_ADAPTER: TypeAdapter[Action] = TypeAdapter(Action)


def action_from_dict(data: Mapping[str, Any]) -> Action:
    """Read an action back from its JSON form.

    Raises pydantic.ValidationError when ``data`` is not a valid action.
    """
    return _ACTION_ADAPTER.validate_python(dict(data))
