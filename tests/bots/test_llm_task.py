"""The llm.v1 node end to end: webhook, a real Celery worker on the Redis
broker, the real openai client and the fake OpenAI API."""

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone
from prometheus_client import REGISTRY

from botfactory.celery import app
from bots.models import Bot, Conversation, LlmRequest, OutboundMessage
from bots.services.llm import llm_sweep
from bots.tasks import llm_answer_task
from tests.bots.chat_user import ChatUser
from tests.bots.llm_support import (
    ask,
    ask_node_publish,
    closed_port_url,
    held_calls,
    prompt_messages,
    settled,
    visible_texts,
    wait_for,
)
from tests.fakes.control import FakeTelegramControl
from tests.fakes.openai_api import expected_answer
from tests.llm.conftest import FakeOpenAI

# The fake OpenAI API's fixtures.
pytest_plugins = ["tests.bots.llm_fixtures"]

FALLBACK = "Sorry, I can't answer that right now. Please try again later."
FALLBACK_UK = "Вибачте, зараз я не можу на це відповісти. Спробуйте пізніше."
PROMPT = "What would you like to ask the barista?"


@pytest.fixture
def llm_worker(demo_bot: Bot) -> Iterator[None]:
    """A thread-pool worker consuming both queues, as production runs LLM calls."""
    app.conf.task_always_eager = False
    with start_worker(
        app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        loglevel="WARNING",
        queues=["celery", "llm"],
    ):
        yield
    app.conf.task_always_eager = True


def _tokens(bot: Bot, kind: str) -> float:
    value = REGISTRY.get_sample_value(
        "botfactory_llm_tokens_total", {"bot_id": str(bot.pk), "kind": kind}
    )

    return value or 0.0


def _thinking_sent(calls: list[dict[str, Any]]) -> bool:
    return any(
        call["params"].get("text") == "Let me think…" and call["status"] == 200
        for call in calls
    )


def _llm_queue_purge() -> int:
    """Drop the llm queue's messages, as a Redis restart loses them."""
    with app.connection_for_write() as connection:
        channel: Any = connection.default_channel
        return int(channel.queue_purge("llm"))


def _state(user: ChatUser) -> dict[str, Any]:
    conversation = Conversation.objects.get(bot=user.bot, chat_id=user.chat_id)

    return dict(conversation.state)


def test_the_answer_replaces_the_thinking_message_through_a_worker(
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    openai_api: FakeOpenAI,
    llm_worker: None,
) -> None:
    # given a user at the demo's question step, and a provider that waits
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=7710001)
    question = "What is a flat white?"
    prompt_before = _tokens(demo_bot, "prompt")
    completion_before = _tokens(demo_bot, "completion")
    openai_api.control(hold=True)

    # when the question is sent, and the provider answers once the user has
    # seen the thinking message
    ask(ann, question)
    wait_for(telegram_api, demo_bot.token, _thinking_sent)
    openai_api.release()
    settled(demo_bot)

    # then the answer edits the thinking message, after a typing action
    calls = telegram_api.calls(token=demo_bot.token)
    answer = expected_answer(prompt_messages(question))
    assert [(c["method"], c["params"].get("text")) for c in calls] == [
        ("sendMessage", PROMPT),
        ("sendMessage", "Let me think…"),
        ("sendChatAction", None),
        ("editMessageText", answer),
    ]
    assert calls[2]["params"] == {"chat_id": str(ann.chat_id), "action": "typing"}
    request = LlmRequest.objects.get(bot=demo_bot)
    assert request.thinking_message is not None
    thinking_id = request.thinking_message.telegram_message_id
    assert calls[3]["params"]["message_id"] == str(thinking_id)
    assert visible_texts(demo_bot, ann.chat_id) == [PROMPT, answer]

    # and the provider got the prompts; tokens are recorded and counted
    assert [
        (c["model"], c["messages"], c["max_tokens"]) for c in openai_api.calls()
    ] == [("fake-model", prompt_messages(question), 500)]
    assert (request.status, request.attempts, request.answer, request.error) == (
        "done",
        1,
        answer,
        "",
    )
    words = sum(len(m["content"].split()) for m in prompt_messages(question))
    assert (request.prompt_tokens, request.completion_tokens) == (words, 2)
    assert _tokens(demo_bot, "prompt") - prompt_before == words
    assert _tokens(demo_bot, "completion") - completion_before == 2
    assert _state(ann)["pending_llm"] is None
    assert _state(ann)["node"] == "main"


def test_an_answer_ready_before_the_thinking_message_is_sent_takes_its_place(
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    openai_api: FakeOpenAI,
    llm_worker: None,
) -> None:
    # given a user at the question step and Telegram about to throttle
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=7710009)
    ann.post(ann.message(text="/ask"))
    wait_for(telegram_api, demo_bot.token, lambda calls: len(calls) == 1)
    telegram_api.add_fault(
        method="sendMessage", status=429, parameters={"retry_after": 5}, times=1
    )

    # when the question is sent and the thinking message has to wait
    ann.post(ann.message(text="Quick one?"))
    settled(demo_bot)

    # then the waiting thinking message went out as the answer, with no
    # edit and no typing after it
    answer = expected_answer(prompt_messages("Quick one?"))
    calls = telegram_api.calls(token=demo_bot.token)
    assert [(c["method"], c["params"].get("text"), c["status"]) for c in calls] == [
        ("sendMessage", PROMPT, 200),
        ("sendMessage", "Let me think…", 429),
        ("sendMessage", answer, 200),
    ]
    request = LlmRequest.objects.get(bot=demo_bot)
    assert request.typing_message is None
    assert not OutboundMessage.objects.filter(method="sendChatAction").exists()
    assert visible_texts(demo_bot, ann.chat_id) == [PROMPT, answer]


def test_the_fallback_reaches_the_user_when_the_provider_is_down(
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    openai_api: FakeOpenAI,
    llm_worker: None,
    settings: Any,
) -> None:
    # given a provider nothing answers for, and a Ukrainian-speaking user
    settings.OPENAI_BASE_URL = closed_port_url()
    olena = ChatUser(
        bot=demo_bot, telegram=telegram_api, user_id=7710002, language_code="uk"
    )

    # when she asks
    ask(olena, "Що таке лате?")
    settled(demo_bot)

    # then the translated fallback takes the thinking message's place
    assert visible_texts(demo_bot, olena.chat_id) == [
        "Що ви хочете запитати в баристи?",
        FALLBACK_UK,
    ]
    request = LlmRequest.objects.get(bot=demo_bot)
    assert (request.status, request.error, request.answer) == (
        "failed",
        "retries_exhausted",
        "",
    )

    # and the conversation has moved on: the next command is answered
    olena.post(olena.message(text="/help"))
    settled(demo_bot)
    assert visible_texts(demo_bot, olena.chat_id)[-1].startswith(
        "Я приймаю замовлення напоїв"
    )
    assert _state(olena)["pending_llm"] is None


def test_the_fallback_comes_within_the_budget_when_the_provider_hangs(
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    openai_api: FakeOpenAI,
    llm_worker: None,
) -> None:
    # given a node with a 3 s budget and a provider that holds every call
    ask_node_publish(demo_bot, budget_seconds=3, cache_ttl_seconds=0)
    openai_api.control(hold=True)
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=7710003)

    # when the question is sent
    ann.post(ann.message(text="/ask"))
    started = time.monotonic()
    ann.post(ann.message(text="Is decaf coffee?"))
    settled(demo_bot)
    elapsed = time.monotonic() - started

    # then the fallback arrives after the budget, within a margin
    assert 2.5 <= elapsed <= 3.0 + 5.0
    assert visible_texts(demo_bot, ann.chat_id) == [PROMPT, FALLBACK]
    request = LlmRequest.objects.get(bot=demo_bot)
    assert (request.status, request.error) == ("failed", "deadline")


def test_an_open_breaker_sends_the_fallback_without_calling_the_provider(
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    openai_api: FakeOpenAI,
    llm_worker: None,
    settings: Any,
) -> None:
    # given a breaker that opens after one failed call, and a failing provider
    settings.LLM_BREAKER_FAILURE_THRESHOLD = 1
    settings.LLM_MAX_ATTEMPTS = 1
    openai_api.control(fail_rate=1.0, fail_kind="500")
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=7710004)
    bob = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=7710005)

    # when one user's call fails and another user asks next
    ask(ann, "First question?")
    settled(demo_bot)
    ask(bob, "Second question?")
    settled(demo_bot, requests=2)

    # then both get the fallback, and only the first reached the provider
    assert visible_texts(demo_bot, ann.chat_id) == [PROMPT, FALLBACK]
    assert visible_texts(demo_bot, bob.chat_id) == [PROMPT, FALLBACK]
    assert len(openai_api.calls()) == 1
    errors = LlmRequest.objects.order_by("id").values_list("error", flat=True)
    assert list(errors) == ["retries_exhausted", "breaker_open"]


def test_a_cancel_while_waiting_drops_the_late_answer(
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    openai_api: FakeOpenAI,
    llm_worker: None,
) -> None:
    # given a question whose provider call is held
    openai_api.control(hold=True)
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=7710006)
    ask(ann, "Will this be answered?")
    held_calls(openai_api, 1)

    # when the user cancels, then the provider answers
    ann.post(ann.message(text="/cancel"))
    openai_api.release()
    settled(demo_bot)

    # then the answer is recorded but never sent
    assert visible_texts(demo_bot, ann.chat_id) == [
        PROMPT,
        "Let me think…",
        "Cancelled.",
        "Welcome to the Café Bot, Ann! What would you like?",
    ]
    calls = telegram_api.calls(token=demo_bot.token)
    assert "editMessageText" not in [call["method"] for call in calls]
    request = LlmRequest.objects.get(bot=demo_bot)
    answer = expected_answer(prompt_messages("Will this be answered?"))
    assert (request.status, request.answer, request.error) == (
        "done",
        answer,
        "abandoned",
    )
    assert _state(ann)["pending_llm"] is None


def test_a_redelivered_task_never_sends_a_second_answer(
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    openai_api: FakeOpenAI,
    llm_worker: None,
) -> None:
    # given a question that was answered
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=7710007)
    ask(ann, "Once only?")
    settled(demo_bot)
    request = LlmRequest.objects.get(bot=demo_bot)
    rows_before = list(
        OutboundMessage.objects.order_by("id").values_list("id", "status")
    )

    # when its task runs again, with the same id and with another one
    same = llm_answer_task.apply(args=(request.pk,), task_id=request.task_id)
    other = llm_answer_task.apply(args=(request.pk,))

    # then both do nothing: no provider call, no message, no change
    assert (same.result, other.result) == ("busy", "busy")
    assert len(openai_api.calls()) == 1
    rows_after = list(
        OutboundMessage.objects.order_by("id").values_list("id", "status")
    )
    assert rows_after == rows_before
    request.refresh_from_db()
    assert (request.status, request.attempts) == ("done", 1)


def test_a_request_whose_task_was_lost_is_answered_after_the_sweep(
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    openai_api: FakeOpenAI,
) -> None:
    # given a question whose task the broker lost (as when Redis restarts)
    app.conf.task_always_eager = False
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=7710008)
    ann.post(ann.message(text="/ask"))
    ann.post(ann.message(text="Lost and found?"))
    assert _llm_queue_purge() == 1

    # when a worker runs and the sweep finds the request
    with start_worker(
        app,
        pool="solo",
        perform_ping_check=False,
        loglevel="WARNING",
        queues=["celery", "llm"],
    ):
        assert llm_sweep(older_than_seconds=60) == 0
        assert llm_sweep(older_than_seconds=0) == 1
        settled(demo_bot)
    app.conf.task_always_eager = True

    # then the answer arrives once
    answer = expected_answer(prompt_messages("Lost and found?"))
    assert visible_texts(demo_bot, ann.chat_id) == [PROMPT, answer]
    assert LlmRequest.objects.get(bot=demo_bot).attempts == 1


def test_past_the_redelivery_cap_the_user_gets_the_fallback_without_a_call(
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    openai_api: FakeOpenAI,
    settings: Any,
) -> None:
    # given a request whose runs were lost with their workers four times
    settings.LLM_TASK_MAX_REDELIVERIES = 3
    app.conf.task_always_eager = False
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=7710010)
    ann.post(ann.message(text="/ask"))
    ann.post(ann.message(text="Poison?"))
    assert _llm_queue_purge() == 1
    app.conf.task_always_eager = True
    LlmRequest.objects.filter(bot=demo_bot).update(
        status="running", attempts=4, lease_until=timezone.now() - timedelta(seconds=1)
    )

    # when it runs a fifth time
    result = llm_answer_task.apply(args=(LlmRequest.objects.get(bot=demo_bot).pk,))

    # then the fallback takes the thinking message's place, with no call
    assert result.result == "fallback"
    assert openai_api.calls() == []
    request = LlmRequest.objects.get(bot=demo_bot)
    assert (request.status, request.error, request.attempts) == (
        "failed",
        "redeliveries_exhausted",
        5,
    )
    assert request.thinking_message is not None
    assert request.thinking_message.payload["text"] == FALLBACK
    assert _state(ann)["pending_llm"] is None
