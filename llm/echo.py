"""The built-in provider of the embedded default: it quotes the question."""

from llm.types import ChatMessage

ECHO_PREFIX = "Echo: "


def _count_tokens(text: str) -> int:
    # A stand-in for a tokenizer: whitespace-separated words.
    return len(text.split())


def echo_answer(messages: tuple[ChatMessage, ...]) -> tuple[str, int, int]:
    """Return the answer and its prompt and completion token counts.

    The answer quotes the last user message, so it is deterministic.
    """
    question = next(
        (message.content for message in reversed(messages) if message.role == "user"),
        "",
    )
    text = f"{ECHO_PREFIX}{question}"
    prompt_tokens = sum(_count_tokens(message.content) for message in messages)

    return text, prompt_tokens, _count_tokens(text)
