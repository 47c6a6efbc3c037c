"""What the executor is told about the world: translations and the chat."""

from dataclasses import dataclass
from typing import Literal, Protocol

ChatType = Literal["private", "group", "supergroup", "channel"]


class Translator(Protocol):
    """Raw translated patterns of one bot for one locale.

    The i18n app implements it with CLDR plural rules and locale fallback
    chains; the spec language only formats what it returns.
    """

    @property
    def locale(self) -> str:
        """The locale the patterns are for, such as ``uk`` or ``pt-br``."""
        ...

    def pattern(self, key: str, count: int | float | None = None) -> str | None:
        """Return the pattern of ``key`` in the plural form for ``count``.

        Return None when no locale of the fallback chain has the key; never
        raise.
        """
        ...


@dataclass(frozen=True, kw_only=True)
class ExecutionContext:
    """Facts about the update being handled that are not conversation state."""

    translator: Translator
    locale: str
    chat_type: ChatType = "private"
    user_id: int | None = None
    chat_id: int | None = None
    user_first_name: str | None = None
    bot_username: str | None = None

    @property
    def is_group(self) -> bool:
        return self.chat_type in ("group", "supergroup")
