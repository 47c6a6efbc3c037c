"""The spec language: spec models, validation, linting and the executor.

Plain Python: nothing here imports Django or does I/O.
"""

from dsl.actions import (
    Action,
    AnswerCallback,
    EditMessage,
    LlmMessage,
    RequestLlm,
    RunSql,
    SendMessage,
    action_from_dict,
)
from dsl.context import ChatType, ExecutionContext, Translator
from dsl.errors import (
    DslError,
    SpecErrorItem,
    SpecInvalidError,
    SqlParseError,
    TemplateRenderError,
)
from dsl.events import (
    CallbackEvent,
    CommandEvent,
    ContactEvent,
    Event,
    LlmResultEvent,
    SqlResultEvent,
    TextEvent,
    UnsupportedEvent,
    event_from_dict,
)
from dsl.executor import ExecutionResult, execute
from dsl.fields import BUILTIN_VARS
from dsl.issues import LintIssue
from dsl.lint import spec_lint, spec_translation_refs
from dsl.messages import BUILTIN_TEXTS, builtin_has
from dsl.registry import component_register, component_types
from dsl.spec import (
    IDLE_EXPIRY_MIN_SECONDS,
    Command,
    DeepLink,
    Privacy,
    Spec,
    spec_json_schema,
    spec_validate,
)
from dsl.sql import ParsedSql, sql_parse
from dsl.state import ConversationState, MessageRef
from dsl.text import ParseMode, escape, render_template, split_text
from dsl.text.answer import answer_chunks, answer_cut
from dsl.turn import Incident

__all__ = [
    "BUILTIN_TEXTS",
    "BUILTIN_VARS",
    "IDLE_EXPIRY_MIN_SECONDS",
    "Action",
    "AnswerCallback",
    "CallbackEvent",
    "ChatType",
    "Command",
    "CommandEvent",
    "ContactEvent",
    "ConversationState",
    "DeepLink",
    "DslError",
    "EditMessage",
    "Event",
    "ExecutionContext",
    "ExecutionResult",
    "Incident",
    "LintIssue",
    "LlmMessage",
    "LlmResultEvent",
    "MessageRef",
    "ParseMode",
    "ParsedSql",
    "Privacy",
    "RequestLlm",
    "RunSql",
    "SendMessage",
    "Spec",
    "SpecErrorItem",
    "SpecInvalidError",
    "SqlParseError",
    "SqlResultEvent",
    "TemplateRenderError",
    "TextEvent",
    "Translator",
    "UnsupportedEvent",
    "action_from_dict",
    "answer_chunks",
    "answer_cut",
    "builtin_has",
    "component_register",
    "component_types",
    "escape",
    "event_from_dict",
    "execute",
    "render_template",
    "spec_json_schema",
    "spec_lint",
    "spec_translation_refs",
    "spec_validate",
    "split_text",
    "sql_parse",
]
