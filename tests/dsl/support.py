"""Plain test doubles for the spec language: a dict translator and builders."""

from collections.abc import Mapping
from typing import Any

from babel import Locale

from dsl import (
    ConversationState,
    Event,
    ExecutionContext,
    ExecutionResult,
    SendMessage,
    Spec,
    execute,
    spec_validate,
)
from dsl.context import ChatType

Table = Mapping[str, str | Mapping[str, str]]


class DictTranslator:
    """Patterns of one locale from a dict, plural forms by CLDR rules."""

    def __init__(self, table: Table | None = None, locale: str = "en") -> None:
        self.locale = locale
        self._table = table or {}

    def pattern(self, key: str, count: int | float | None = None) -> str | None:
        value = self._table.get(key)
        if value is None or isinstance(value, str):
            return value
        category = (
            "other" if count is None else Locale.parse(self.locale).plural_form(count)
        )

        return value.get(category) or value.get("other")


def context(
    table: Table | None = None,
    *,
    locale: str = "en",
    chat_type: ChatType = "private",
    user_id: int | None = 42,
    chat_id: int | None = 42,
    first_name: str | None = "Ann",
) -> ExecutionContext:
    return ExecutionContext(
        translator=DictTranslator(table, locale),
        locale=locale,
        chat_type=chat_type,
        user_id=user_id,
        chat_id=chat_id,
        user_first_name=first_name,
        bot_username="cafe_bot",
    )


def spec_of(nodes: dict[str, Any], **top: Any) -> Spec:
    source = {
        "start": next(iter(nodes)),
        "default_locale": "en",
        "locales": ["en"],
        "nodes": nodes,
        **top,
    }

    return spec_validate(source)


class Conversation:
    """Drives one conversation through ``execute``, keeping its state."""

    def __init__(self, spec: Spec, ctx: ExecutionContext | None = None) -> None:
        self.spec = spec
        self.ctx = ctx or context()
        self.state = ConversationState.initial()

    def send(self, event: Event) -> ExecutionResult:
        result = execute(self.spec, self.state, event, self.ctx)
        self.state = result.state
        return result


def keyboard(action: Any) -> list[list[tuple[str, str]]]:
    """Return an inline keyboard as (text, callback data or url) rows."""
    rows = action.reply_markup["inline_keyboard"]
    return [
        [
            (button["text"], button.get("callback_data") or button["url"])
            for button in row
        ]
        for row in rows
    ]


def data_of(action: Any, text: str) -> str:
    """Return the callback data of the button labelled ``text``."""
    for row in keyboard(action):
        for label, data in row:
            if label == text:
                return data
    raise AssertionError(f"No button {text!r}.")


def texts(result: ExecutionResult) -> list[str]:
    return [action.text for action in result.actions if isinstance(action, SendMessage)]
