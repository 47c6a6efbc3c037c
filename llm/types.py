"""The data that goes into and comes out of a completion."""

from dataclasses import dataclass
from typing import Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class CompletionRequest:
    messages: tuple[ChatMessage, ...]
    # None: settings.LLM_MODEL.
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    # 0: this request is neither looked up in nor stored in the cache.
    cache_ttl_seconds: int = 0


@dataclass(frozen=True)
class Completion:
    text: str
    # The provider's label, e.g. "openai" or "echo".
    provider: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached: bool
