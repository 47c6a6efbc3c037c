"""Hostile input on the ``llm.v1`` node: spec values, prompt templates, user
questions and the provider's answers.

The answer path runs through the webhook with tasks in-process, the real
openai client and the fake OpenAI API, scripted through its ``reply``
control to answer each call with exactly the bytes a test gives it.
"""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from bots.models import Bot, LlmRequest
from dsl import CommandEvent, RequestLlm, SpecInvalidError, TextEvent, spec_validate
from tests.bots.chat_user import ChatUser
from tests.bots.test_admin import _change_data, _change_url, _demo_spec, _snapshot
from tests.dsl.support import Conversation, context, spec_of, texts
from tests.factories import BotFactory
from tests.fakes.control import FakeTelegramControl
from tests.fakes.openai_control import (
    FakeOpenAI,
    fake_openai_running,
    llm_settings_for,
)

FALLBACK = "Sorry, I can't answer that right now. Please try again later."
PROMPT = "What would you like to ask the barista?"
THINKING = "Let me think…"
TELEGRAM_LIMIT = 4096


# --- a provider that answers what the test scripts ----------------------------


def completion(
    content: Any, *, prompt_tokens: Any = 3, completion_tokens: Any = 1
) -> bytes:
    """Return a chat completion body answering ``content``."""
    return json.dumps(
        {
            "id": "chatcmpl-scripted",
            "object": "chat.completion",
            "created": 1767261600,
            "model": "scripted-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": 4,
            },
        }
    ).encode()


@pytest.fixture(scope="module")
def fake_provider() -> Iterator[FakeOpenAI]:
    with fake_openai_running() as fake:
        yield fake


@pytest.fixture
def provider(settings: Any, fake_provider: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The fake OpenAI API answering "Hello." until a test scripts its reply."""
    fake_provider.reset()
    answer(fake_provider, 200, completion("Hello."))
    for name, value in llm_settings_for(fake_provider).items():
        setattr(settings, name, value)
    settings.LLM_TIMEOUT_SECONDS = 10.0
    settings.LLM_MAX_ATTEMPTS = 2
    yield fake_provider
    fake_provider.reset()


def answer(fake: FakeOpenAI, status: int, body: bytes) -> None:
    """Make every completion answer ``status`` with the raw ``body``."""
    fake.control(reply={"status": status, "body": body.decode("utf-8")})


@pytest.fixture
def user(demo_bot: Bot, telegram_api: FakeTelegramControl) -> ChatUser:
    return ChatUser(bot=demo_bot, telegram=telegram_api, user_id=4242)


def _shown(calls: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (call["method"], call["params"].get("text", ""))
        for call in calls
        if call["method"] in ("sendMessage", "editMessageText")
    ]


def _ask(user: ChatUser, question: str) -> list[dict[str, Any]]:
    """Open the demo's question step, answer it; return the calls made."""
    assert _shown(user.say("/ask")) == [("sendMessage", PROMPT)]

    return user.say(question)


def _requests(bot: Bot) -> list[tuple[str, str, str, int, int]]:
    return list(
        LlmRequest.objects.filter(bot=bot)
        .order_by("id")
        .values_list("status", "answer", "error", "prompt_tokens", "completion_tokens")
    )


# --- the spec: hostile values are refused by validation, with their path -------

NODE = {"type": "llm.v1", "prompt": "{{ vars.question }}"}


def _errors(**changes: Any) -> list[tuple[str, str]]:
    source = {
        "start": "answer",
        "default_locale": "en",
        "locales": ["en"],
        "nodes": {"answer": {**NODE, **changes}},
    }
    with pytest.raises(SpecInvalidError) as caught:
        spec_validate(source)

    return [(error.path, error.code) for error in caught.value.errors]


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("budget_seconds", 0, "greater_than_equal"),
        ("budget_seconds", 0.5, "greater_than_equal"),
        ("budget_seconds", 121, "less_than_equal"),
        ("budget_seconds", float("inf"), "less_than_equal"),
        ("budget_seconds", True, "float_type"),
        ("budget_seconds", "20", "float_type"),
        ("temperature", -0.1, "greater_than_equal"),
        ("temperature", 2.5, "less_than_equal"),
        ("temperature", True, "float_type"),
        ("temperature", "0.7", "float_type"),
        ("max_tokens", 0, "greater_than_equal"),
        ("max_tokens", 10**12, "less_than_equal"),
        ("max_tokens", True, "int_type"),
        ("max_tokens", 500.0, "int_type"),
        ("max_tokens", "500", "int_type"),
        ("cache_ttl_seconds", -1, "greater_than_equal"),
        ("cache_ttl_seconds", True, "int_type"),
        ("typing", "no", "bool_type"),
        ("typing", 0, "bool_type"),
        ("prompt", "x" * 20_001, "string_too_long"),
        ("prompt", "", "string_too_short"),
        ("system", "x" * 20_001, "string_too_long"),
        ("model", "", "string_too_short"),
        ("model", "m" * 101, "string_too_long"),
    ],
)
def test_a_hostile_value_in_an_llm_node_is_refused_with_its_path(
    field: str, value: Any, code: str
) -> None:
    assert _errors(**{field: value}) == [(f"nodes.answer.{field}", code)]


def test_whole_numbers_where_fractions_are_allowed_are_accepted() -> None:
    node = {**NODE, "budget_seconds": 5, "temperature": 1, "typing": False}

    spec = spec_validate(
        {
            "start": "answer",
            "default_locale": "en",
            "locales": ["en"],
            "nodes": {"answer": node},
        }
    )

    assert spec.as_json()["nodes"]["answer"]["budget_seconds"] == 5.0
    assert spec.as_json()["nodes"]["answer"]["temperature"] == 1.0


# --- prompts: templates that reach for Python or build huge strings ------------

ASK = {
    "type": "wizard.v1",
    "steps": [
        {"name": "question", "type": "text", "prompt": "ask", "max_length": 4096}
    ],
    "next": "answer",
}
MENU = {"type": "menu.v1", "text": "main", "rows": [[{"label": "ask", "goto": "ask"}]]}
APOLOGY = "Sorry, something went wrong. Let's start over."


@pytest.mark.parametrize(
    "prompt",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ vars.__class__ }}",
        "{{ user|attr('__class__') }}",
        "{{ vars.question.encode('utf-8') }}",
        "{{ '{0.__class__}'.format(vars) }}",
        "{% for i in range(10**9) %}x{% endfor %}",
        "{% for a in range(999) %}{% for b in range(999) %}{% endfor %}{% endfor %}",
        "{{ 'x' * 10**9 }}",
        "{{ vars.question * 1000 }}",
        "{{ [vars.question] * 100000 }}",
        "{{ (vars.question ~ vars.question) * 100 }}",
        "{{ 10**5000 }}",
        "{{ lipsum(100, False, 1000, 1000) }}",
    ],
)
def test_a_prompt_reaching_python_internals_or_building_a_huge_string_asks_nothing(
    prompt: str,
) -> None:
    # given a spec whose prompt passes validation but misbehaves when rendered
    spec = spec_of(
        {"main": MENU, "ask": ASK, "answer": {**NODE, "prompt": prompt}},
        commands={"ask": {"node": "ask"}},
    )
    conversation = Conversation(spec, context({"main": "Main", "ask": "Ask?"}))
    conversation.send(CommandEvent(command="ask"))

    # when a user sends a question of a thousand characters
    result = conversation.send(TextEvent(text="q" * 1000))

    # then no model is asked, the user gets an apology and the start menu
    assert not [a for a in result.actions if isinstance(a, RequestLlm)]
    assert texts(result) == [APOLOGY, "Main"]
    assert conversation.state.node == "main"
    assert conversation.state.pending_llm is None


# --- questions: what a user types reaches the model as text it can store -------


@pytest.mark.parametrize(
    ("question", "sent"),
    [
        ("Is <b>decaf</b> & <script>x</script> ok?", None),
        ("de\x00caf", "decaf"),
        ("de\ud800caf", "de?caf"),
        ("\u202eevil\u202c {{ 7*7 }}", None),
    ],
)
def test_a_hostile_question_reaches_the_model_as_storable_unescaped_text(
    provider: FakeOpenAI, user: ChatUser, question: str, sent: str | None
) -> None:
    calls = _ask(user, question)

    assert provider.calls()[-1]["messages"][-1] == {
        "role": "user",
        "content": question if sent is None else sent,
    }
    assert _shown(calls) == [("sendMessage", THINKING), ("editMessageText", "Hello.")]
    assert _requests(user.bot) == [("done", "Hello.", "", 3, 1)]


def test_a_question_of_100_kb_is_refused_by_its_step_and_asks_nothing(
    provider: FakeOpenAI, user: ChatUser
) -> None:
    calls = _ask(user, "q" * 100_000)

    assert _shown(calls) == [
        (
            "sendMessage",
            f"That is too long: please send at most 500 characters.\n\n{PROMPT}",
        )
    ]
    assert provider.calls() == []
    assert _requests(user.bot) == []


# --- answers: whatever the provider says, the user gets a valid message --------


def test_markup_in_an_answer_reaches_telegram_escaped(
    provider: FakeOpenAI, user: ChatUser
) -> None:
    answer(
        provider,
        200,
        completion(
            "<script>alert(1)</script> & **bold** `x<y>` [a](javascript:x)\n\n"
            "```html\n<b>raw</b> **not bold**\n```"
        ),
    )

    calls = _ask(user, "Markup?")

    # the fake Bot API parses the HTML as Telegram does: these were accepted
    assert _shown(calls) == [
        ("sendMessage", THINKING),
        (
            "editMessageText",
            "&lt;script&gt;alert(1)&lt;/script&gt; &amp; <b>bold</b> "
            "<code>x&lt;y&gt;</code> [a](javascript:x)\n\n"
            '<pre><code class="language-html">&lt;b&gt;raw&lt;/b&gt; '
            "**not bold**</code></pre>",
        ),
    ]
    assert [call["status"] for call in calls if call["method"] != "sendChatAction"] == [
        200,
        200,
    ]


@pytest.mark.parametrize(
    ("content", "shown"),
    [("Tea\x00 is hot.", "Tea is hot."), ("Tea \ud83d is hot.", "Tea \ufffd is hot.")],
    ids=["nul", "lone-surrogate"],
)
def test_an_answer_the_database_cannot_store_as_is_is_cleaned_and_sent(
    provider: FakeOpenAI, user: ChatUser, content: str, shown: str
) -> None:
    answer(provider, 200, completion(content))

    calls = _ask(user, "Is tea hot?")

    assert _shown(calls) == [("sendMessage", THINKING), ("editMessageText", shown)]
    assert _requests(user.bot) == [("done", shown, "", 3, 1)]


@pytest.mark.parametrize(
    ("prompt_tokens", "completion_tokens", "stored"),
    [(-5, 2, (0, 2)), (2**40, 1, (0, 1)), (None, 1.5, (0, 0))],
)
def test_implausible_token_counts_are_stored_as_zero_and_the_answer_is_sent(
    provider: FakeOpenAI,
    user: ChatUser,
    prompt_tokens: Any,
    completion_tokens: Any,
    stored: tuple[int, int],
) -> None:
    answer(
        provider,
        200,
        completion(
            "Sure.", prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        ),
    )

    calls = _ask(user, "Count?")

    assert _shown(calls) == [("sendMessage", THINKING), ("editMessageText", "Sure.")]
    assert _requests(user.bot) == [("done", "Sure.", "", *stored)]


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b"[]",
        b'{"choices": []}',
        b'{"choices": "many"}',
        b'{"choices": [{"message": {"content": null}}]}',
        b'{"choices": [{"message": {"content": 42}}]}',
        b'{"choices": [{"message": "hi"}]}',
        b'{"choices": [{"message": {"content": "cut',
    ],
    ids=["text", "list", "no-choice", "choices-str", "null", "number", "str", "cut"],
)
def test_a_malformed_answer_is_retried_then_the_user_gets_the_fallback(
    provider: FakeOpenAI, user: ChatUser, body: bytes
) -> None:
    answer(provider, 200, body)

    calls = _ask(user, "Anything?")

    assert _shown(calls) == [("sendMessage", THINKING), ("editMessageText", FALLBACK)]
    assert len(provider.calls()) == 2
    assert _requests(user.bot) == [("failed", "", "retries_exhausted", 0, 0)]


def test_a_huge_answer_is_cut_to_a_few_messages(
    provider: FakeOpenAI, user: ChatUser
) -> None:
    # given a provider that answers about a megabyte of paragraphs
    paragraph = " ".join(["word"] * 200)
    huge = "\n\n".join([paragraph] * 1000)
    answer(provider, 200, completion(huge))

    # when a user asks
    calls = _ask(user, "Tell me everything.")

    # then the first 16384 characters arrive, in five messages, marked as cut
    shown = _shown(calls)
    assert [method for method, _ in shown] == [
        "sendMessage",
        "editMessageText",
        "sendMessage",
        "sendMessage",
        "sendMessage",
        "sendMessage",
    ]
    assert all(len(text) <= TELEGRAM_LIMIT for _, text in shown)
    assert "\n\n".join(text for _, text in shown[1:]) == (huge[:16_384].rstrip() + " …")
    # and the request keeps the answer as it was shown, not the megabyte
    assert _requests(user.bot) == [("done", huge[:16_384].rstrip() + " …", "", 3, 1)]


# --- the admin: text no database can store is refused with its path -----------


@pytest.mark.parametrize(
    ("field", "value"),
    [("prompt", "Hi\x00"), ("model", "gpt\x00"), ("system", "\ud800 barista")],
)
def test_the_admin_refuses_an_llm_node_text_the_database_cannot_store(
    admin_client: Client, field: str, value: str
) -> None:
    # given a bot whose draft is the demo spec
    bot = BotFactory.create(draft_spec=_demo_spec())
    before = _snapshot(bot)
    spec = _demo_spec()
    spec["nodes"]["ask_answer"][field] = value

    # when staff save a draft whose llm node holds a NUL or a lone surrogate
    response = admin_client.post(
        _change_url(bot), _change_data(bot, draft_spec=json.dumps(spec))
    )

    # then the form shows the path instead of a 500, and nothing changed
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["draft_spec"] == [
        f"nodes.ask_answer.{field}: a NUL character, a lone surrogate or a "
        "number out of range cannot be stored."
    ]
    assert _snapshot(bot) == before
