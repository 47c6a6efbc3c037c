import html
import re

import pytest

from dsl import (
    AnswerCallback,
    CallbackEvent,
    CommandEvent,
    ConversationState,
    LlmMessage,
    LlmResultEvent,
    RequestLlm,
    SpecInvalidError,
    TextEvent,
    action_from_dict,
    answer_chunks,
    event_from_dict,
    spec_lint,
    spec_validate,
)
from dsl.text import utf16_length
from tests.dsl.support import Conversation, context, spec_of, texts

TABLE = {
    "main.text": "Main",
    "ask.go": "Ask",
    "ask.system": "You answer questions about coffee, in {lang}.",
    "ask.thinking": "Thinking about it…",
    "ask.sorry": "No answer for you, {first_name}.",
    "ask.question": "What is your question?",
}
MENU = {
    "type": "menu.v1",
    "text": "main.text",
    "rows": [[{"label": "ask.go", "goto": "question"}]],
}
QUESTION = {
    "type": "wizard.v1",
    "steps": [{"name": "question", "type": "text", "prompt": "ask.question"}],
    "next": "answer",
}
ANSWER = {
    "type": "llm.v1",
    "system": "{{ t('ask.system', lang=locale) }}",
    "prompt": "{{ user.first_name }} asks: {{ vars.question }}",
    "model": "gpt-test",
    "temperature": 0.3,
    "max_tokens": 200,
    "budget_seconds": 8,
    "cache_ttl_seconds": 60,
    "thinking": "ask.thinking",
    "into": "reply",
    "next": "main",
}


def _conversation(answer=ANSWER, **nodes):
    spec = spec_of(
        {"main": MENU, "question": QUESTION, "answer": answer, **nodes},
        commands={"ask": {"node": "question"}},
    )
    return Conversation(spec, context(TABLE))


def _asked(conversation):
    conversation.send(CommandEvent(command="ask"))
    return conversation.send(TextEvent(text="Is <b>decaf</b> coffee?"))


def test_entering_an_llm_node_requests_an_answer_and_waits():
    # given a conversation at the question step
    conversation = _conversation()

    # when the question is answered
    result = _asked(conversation)

    # then the node asks for a completion with rendered, unescaped prompts
    assert result.actions == [
        RequestLlm(
            node_id="answer",
            request_key=f"answer#{conversation.state.generation}",
            messages=[
                LlmMessage(
                    role="system", content="You answer questions about coffee, in en."
                ),
                LlmMessage(role="user", content="Ann asks: Is <b>decaf</b> coffee?"),
            ],
            model="gpt-test",
            temperature=0.3,
            max_tokens=200,
            budget_seconds=8.0,
            cache_ttl_seconds=60,
            thinking_text="Thinking about it…",
            typing=True,
        )
    ]
    assert conversation.state.node == "answer"
    assert conversation.state.pending_llm == f"answer#{conversation.state.generation}"
    assert conversation.state.is_at_start(conversation.spec) is False


def test_the_answer_is_sent_escaped_and_the_conversation_moves_on():
    # given a conversation waiting for its answer
    conversation = _conversation()
    request = _asked(conversation).actions[0]

    # when the answer arrives
    result = conversation.send(
        LlmResultEvent(
            node_id="answer",
            request_key=request.request_key,
            text="Yes, **mostly**: use `decaf` & <enjoy>.",
        )
    )

    # then it is sent as HTML, stored, and the next node follows
    assert texts(result) == [
        "Yes, <b>mostly</b>: use <code>decaf</code> &amp; &lt;enjoy&gt;.",
        "Main",
    ]
    assert result.actions[0].parse_mode == "HTML"
    assert conversation.state.vars["reply"] == "Yes, **mostly**: use `decaf` & <enjoy>."
    assert conversation.state.node == "main"
    assert conversation.state.pending_llm is None


def test_an_error_sends_the_translated_fallback_and_moves_on():
    # given a node with its own fallback text, waiting for its answer
    conversation = _conversation({**ANSWER, "fallback": "ask.sorry"})
    request = _asked(conversation).actions[0]

    # when the runtime reports that no answer could be had
    result = conversation.send(
        LlmResultEvent(
            node_id="answer", request_key=request.request_key, error="breaker_open"
        )
    )

    # then the fallback is sent, the variable is cleared, the next node follows
    assert texts(result) == ["No answer for you, Ann.", "Main"]
    assert conversation.state.vars["reply"] is None
    assert conversation.state.node == "main"


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en", "Sorry, I can't answer that right now. Please try again later."),
        ("uk", "Вибачте, зараз я не можу на це відповісти. Спробуйте пізніше."),
    ],
)
def test_the_built_in_fallback_is_translated(locale, expected):
    # given a node without a fallback of its own, and no next node
    spec = spec_of(
        {"main": MENU, "answer": {"type": "llm.v1", "prompt": "Hi"}},
        commands={"ask": {"node": "answer"}},
    )
    conversation = Conversation(spec, context(TABLE, locale=locale))
    request = conversation.send(CommandEvent(command="ask")).actions[0]
    assert isinstance(request, RequestLlm)

    # when the answer runs past its budget
    result = conversation.send(
        LlmResultEvent(
            node_id="answer", request_key=request.request_key, error="deadline"
        )
    )

    # then the built-in text is sent and the conversation rests at the start
    assert texts(result) == [expected]
    assert conversation.state.node == "main"
    assert conversation.state.pending_llm is None


def test_an_empty_answer_gets_the_fallback():
    conversation = _conversation()
    request = _asked(conversation).actions[0]

    result = conversation.send(
        LlmResultEvent(node_id="answer", request_key=request.request_key, text=" \n ")
    )

    assert texts(result) == [
        "Sorry, I can't answer that right now. Please try again later.",
        "Main",
    ]


def test_messages_while_waiting_are_asked_to_wait_and_change_nothing():
    # given a conversation waiting for its answer
    conversation = _conversation()
    _asked(conversation)
    before = conversation.state.model_copy(deep=True)

    # when the user writes, presses an old button or sends an unknown command
    by_text = conversation.send(TextEvent(text="hello?"))
    by_button = conversation.send(
        CallbackEvent(callback_id="c1", data="x", message_id=3)
    )
    by_command = conversation.send(CommandEvent(command="ask"))

    # then each is asked to wait and the wait goes on unchanged
    assert texts(by_text) == ["One moment, please…"]
    assert by_button.actions == [
        AnswerCallback(callback_id="c1", text="One moment, please…")
    ]
    assert texts(by_command) == ["One moment, please…"]
    assert conversation.state == before


def test_a_result_for_another_visit_is_ignored():
    # given a conversation that waits at the node a second time
    conversation = _conversation()
    first = _asked(conversation).actions[0]
    conversation.send(
        LlmResultEvent(node_id="answer", request_key=first.request_key, text="One")
    )
    second = _asked(conversation).actions[0]
    before = conversation.state.model_copy(deep=True)

    # when the first visit's result arrives again
    result = conversation.send(
        LlmResultEvent(node_id="answer", request_key=first.request_key, text="Late")
    )

    # then nothing is sent and the second request is still awaited
    assert second.request_key != first.request_key
    assert result.actions == []
    assert conversation.state == before


def test_cancel_abandons_the_wait_and_the_late_answer_is_dropped():
    # given a conversation waiting for its answer
    conversation = _conversation()
    request = _asked(conversation).actions[0]

    # when the user cancels, then the answer arrives
    cancelled = conversation.send(CommandEvent(command="cancel"))
    late = conversation.send(
        LlmResultEvent(node_id="answer", request_key=request.request_key, text="Late")
    )

    # then the cancel is taken and the late answer sends nothing
    assert texts(cancelled) == ["Cancelled.", "Main"]
    assert conversation.state.pending_llm is None
    assert late.actions == []
    assert conversation.state.node == "main"


def test_a_long_answer_is_split_between_paragraphs_and_never_inside_code():
    # given an answer with a code block that would straddle the limit
    conversation = _conversation()
    request = _asked(conversation).actions[0]
    code = "\n".join(f"print({n})" for n in range(300))
    text = ("word " * 700).strip() + "\n\n```python\n" + code + "\n```\n\nDone."

    # when it arrives
    result = conversation.send(
        LlmResultEvent(node_id="answer", request_key=request.request_key, text=text)
    )

    # then the prose and the whole code block go in separate messages
    sent = texts(result)
    assert sent[0] == ("word " * 700).strip()
    assert sent[1] == (
        '<pre><code class="language-python">'
        + code.replace("\n", "\n")
        + "</code></pre>\n\nDone."
    )
    assert sent[2] == "Main"


def test_answer_chunks_keep_each_chunk_under_the_limit_and_blocks_whole():
    # given three paragraphs and a code block longer than one message
    long_code = "\n".join("x = 1  # " + "é" * 30 for _ in range(200))
    text = "Intro.\n\n```\n" + long_code + "\n```\n\nOutro & end."

    # when it is split at a small limit
    chunks = answer_chunks(text, limit=500)

    # then every chunk fits, each code part is a complete block cut at a line
    shown = [html.unescape(re.sub("<[^>]+>", "", chunk)) for chunk in chunks]
    assert all(utf16_length(text) <= 500 for text in shown)
    assert all(c.count("<pre>") == c.count("</pre>") for c in chunks)
    assert chunks[0].startswith("Intro.\n\n<pre>x = 1")
    assert chunks[-1].endswith("</pre>\n\nOutro &amp; end.")
    parts = re.findall(r"<pre>(.*?)</pre>", "".join(chunks), re.S)
    assert len(parts) > 1
    assert "\n".join(parts) == long_code
    assert answer_chunks("  \n\n ") == []


def test_a_template_error_apologises_and_returns_to_the_start():
    conversation = _conversation(
        {**ANSWER, "prompt": "{{ vars.question.upper(1, 2, 3) }}"}
    )

    result = _asked(conversation)

    assert texts(result) == ["Sorry, something went wrong. Let's start over.", "Main"]
    assert [i.code for i in result.incidents] == ["template_error"]
    assert conversation.state.pending_llm is None


def test_the_action_and_the_event_read_back_from_json():
    conversation = _conversation()
    request = _asked(conversation).actions[0]
    event = LlmResultEvent(node_id="answer", request_key="answer#3", error="deadline")

    assert action_from_dict(request.model_dump(mode="json")) == request
    assert event_from_dict(event.model_dump(mode="json")) == event
    state = ConversationState.model_validate(conversation.state.model_dump(mode="json"))
    assert state == conversation.state


def test_invalid_node_fields_are_reported_by_path():
    node = {
        "type": "llm.v1",
        "prompt": "{% if %}",
        "temperature": 3,
        "budget_seconds": 0.5,
        "into": "user_id",
        "thinking": "not a key!",
    }

    with pytest.raises(SpecInvalidError) as raised:
        spec_of({"main": MENU, "answer": node})

    paths = sorted(item.path for item in raised.value.errors)
    assert paths == [
        "nodes.answer.budget_seconds",
        "nodes.answer.into",
        "nodes.answer.prompt",
        "nodes.answer.temperature",
        "nodes.answer.thinking",
    ]


@pytest.mark.parametrize("field", ["prompt", "system"])
@pytest.mark.parametrize("blank", [" ", "\n\t ", "\u3000"])
def test_a_blank_prompt_is_refused_at_its_path(field: str, blank: str) -> None:
    node = {"type": "llm.v1", "prompt": "Answer: {{ vars.q }}", field: blank}

    with pytest.raises(SpecInvalidError) as raised:
        spec_of({"main": MENU, "answer": node})

    assert [(item.path, item.code) for item in raised.value.errors] == [
        (f"nodes.answer.{field}", "blank_prompt")
    ]


def test_lint_reports_missing_nodes_translations_and_loops():
    spec = spec_validate(
        {
            "start": "main",
            "default_locale": "en",
            "locales": ["en", "uk"],
            "commands": {"ask": {"node": "a"}},
            "nodes": {
                "main": MENU,
                "a": {
                    "type": "llm.v1",
                    "prompt": "{{ t('ask.go') }}",
                    "thinking": "ask.thinking",
                    "next": "b",
                },
                "b": {
                    "type": "llm.v1",
                    "prompt": "Again",
                    "fallback": "ask.sorry",
                    "next": "a",
                },
                "c": {"type": "llm.v1", "prompt": "x", "next": "gone"},
            },
        }
    )
    keys = {"en": set(TABLE), "uk": {"main.text", "ask.go"}}

    issues = {(i.path, i.code) for i in spec_lint(spec, translation_keys=keys)}

    assert ("nodes.c.next", "unknown_node") in issues
    assert ("nodes.c", "unreachable_node") in issues
    assert ("nodes.a", "loop_without_input") in issues
    assert ("nodes.a.thinking", "missing_translation") in issues
    assert ("nodes.b.fallback", "missing_translation") in issues
    # the built-in fallback text counts as present
    assert not any(path == "nodes.a.fallback" for path, _code in issues)
    assert ("nodes.a.prompt", "missing_translation") not in issues


def test_markdown_inside_code_stays_literal_and_code_is_escaped():
    chunks = answer_chunks("Use `a **b** <c>` and **bold `x`** here.")

    assert chunks == [
        "Use <code>a **b** &lt;c&gt;</code> and **bold <code>x</code>** here."
    ]
