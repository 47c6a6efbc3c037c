"""Helpers for the LLM node's tests: the demo bot's ``ask`` node, its
prompts, and waiting for Bot API calls and held provider calls."""

import copy
import socket
import time
from typing import Any

from bots.models import Bot, LlmRequest, OutboundMessage
from bots.services.specs import spec_publish
from tests.bots.chat_user import ChatUser
from tests.fakes.control import FakeTelegramControl
from tests.llm.conftest import (
    FakeOpenAI,
)

# Workers start in fresh interpreters on two shared cores.
WAIT_SECONDS = 60.0


def closed_port_url() -> str:
    """Return the URL of a loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])

    return f"http://127.0.0.1:{port}/v1"


def ask_node_publish(bot: Bot, **changes: Any) -> dict[str, Any]:
    """Publish the demo spec with its ``ask_answer`` node changed; return it."""
    assert bot.live_version is not None
    source = copy.deepcopy(bot.live_version.source)
    source["nodes"]["ask_answer"].update(changes)
    spec_publish(bot=bot, source=source)
    bot.refresh_from_db()

    return dict(source["nodes"]["ask_answer"])


def outbox_sent(bot: Bot, *, seconds: float = WAIT_SECONDS) -> None:
    """Wait until the bot's outbox has nothing left to send."""
    deadline = time.monotonic() + seconds
    while OutboundMessage.objects.filter(
        bot=bot, status__in=["pending", "in_flight"]
    ).exists():
        assert time.monotonic() < deadline, "the outbox was never sent"
        time.sleep(0.05)


def ask(user: ChatUser, question: str) -> None:
    """Open the demo's question step and send ``question``.

    The question goes once the prompt is sent (in-process tasks send it at
    once), as a user answers what they see.
    """
    user.post(user.message(text="/ask"))
    outbox_sent(user.bot)
    user.post(user.message(text=question))


def prompt_messages(question: str, *, locale: str = "en") -> list[dict[str, str]]:
    """Return the messages the demo's ask node sends for ``question``."""
    system = {
        "en": (
            "You are the friendly barista of a small café. Answer questions "
            "about coffee, tea and the café briefly, in English."
        ),
        "uk": (
            "Ви привітний бариста невеликої кав'ярні. Коротко відповідайте на "
            "запитання про каву, чай і кав'ярню українською."
        ),
    }[locale]

    return [
        {"role": "system", "content": system},
        {"role": "user", "content": question},
    ]


def wait_for(
    telegram: FakeTelegramControl,
    token: str,
    predicate: Any,
    *,
    seconds: float = WAIT_SECONDS,
) -> list[dict[str, Any]]:
    """Return the bot's calls once ``predicate(calls)`` holds; fail after a while."""
    deadline = time.monotonic() + seconds
    while True:
        calls = telegram.calls(token=token)
        if predicate(calls):
            return calls
        if time.monotonic() > deadline:
            shown = [(c["method"], c["params"].get("text")) for c in calls]
            raise AssertionError(f"Bot API calls never matched: {shown}")
        time.sleep(0.05)


def held_calls(
    openai: FakeOpenAI, count: int, *, seconds: float = WAIT_SECONDS
) -> None:
    """Wait until the fake holds ``count`` requests at once (status 0)."""
    deadline = time.monotonic() + seconds
    while sum(1 for call in openai.calls() if call["status"] == 0) < count:
        assert time.monotonic() < deadline, f"{count} held calls never arrived"
        time.sleep(0.05)


def answer_calls(calls: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Return (method, text) of every message or edit the bot made."""
    return [
        (call["method"], call["params"].get("text", ""))
        for call in calls
        if call["method"] in ("sendMessage", "editMessageText")
    ]


def settled(bot: Bot, *, requests: int = 1, seconds: float = WAIT_SECONDS) -> None:
    """Wait until ``requests`` LLM requests are finished and the outbox is sent."""
    deadline = time.monotonic() + seconds
    while (
        LlmRequest.objects.filter(bot=bot, status__in=["done", "failed"]).count()
        < requests
        or OutboundMessage.objects.filter(
            bot=bot, status__in=["pending", "in_flight"]
        ).exists()
    ):
        assert time.monotonic() < deadline, "the answer was never sent"
        time.sleep(0.05)


def visible_texts(bot: Bot, chat_id: int) -> list[str]:
    """Return the texts the chat shows now: sent messages, as last edited."""
    shown: dict[int, str] = {}
    unnumbered: list[str] = []
    rows = OutboundMessage.objects.filter(bot=bot, chat_id=chat_id, status="sent")
    for row in rows.order_by("sent_at", "id"):
        text = str(row.payload.get("text", ""))
        if row.method == "sendMessage" and row.telegram_message_id is not None:
            shown[row.telegram_message_id] = text
        elif row.method == "sendMessage":
            unnumbered.append(text)
        elif row.method == "editMessageText":
            shown[int(row.payload["message_id"])] = text

    return [shown[key] for key in sorted(shown)] + unnumbered
