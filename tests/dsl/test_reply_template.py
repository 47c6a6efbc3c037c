from dsl import AnswerCallback, CallbackEvent, CommandEvent, EditMessage, SendMessage
from tests.dsl.support import Conversation, context, data_of, spec_of, texts

TABLE = {
    "main.text": "Main",
    "help": "Help",
    "other": "Other",
    "other.text": "Other menu",
}
MENU = {
    "type": "menu.v1",
    "text": "main.text",
    "rows": [[{"label": "help", "goto": "help"}, {"label": "other", "goto": "other"}]],
}
OTHER = {
    "type": "menu.v1",
    "text": "other.text",
    "rows": [[{"label": "help", "goto": "main"}]],
}


def _conversation(template, **fields):
    node = {"type": "reply_template.v1", "template": template, **fields}
    spec = spec_of(
        {"main": MENU, "help": node, "other": OTHER}, commands={"t": {"node": "help"}}
    )
    return Conversation(spec, context(TABLE))


def test_a_reply_is_sent_and_the_conversation_goes_to_next():
    conversation = _conversation("Hi <b>{{ user.first_name }}</b>", next="other")

    result = conversation.send(CommandEvent(command="t"))

    assert texts(result) == ["Hi <b>Ann</b>", "Other menu"]
    assert conversation.state.node == "other"


def test_without_next_the_conversation_rests_at_the_start_node_unsent():
    # given the start menu, whose Help button leads to a reply without next
    conversation = _conversation("Some help")
    menu = conversation.send(CommandEvent(command="start")).actions[0]

    # when Help is pressed
    result = conversation.send(
        CallbackEvent(callback_id="c", data=data_of(menu, "Help"), message_id=9)
    )

    # then only the reply is sent and the conversation is back at the start
    assert result.actions == [
        AnswerCallback(callback_id="c"),
        SendMessage(text="Some help", parse_mode="HTML"),
    ]
    assert conversation.state.node == "main"

    # and the start menu's message above still works
    again = conversation.send(
        CallbackEvent(callback_id="d", data=data_of(menu, "Other"), message_id=9)
    )
    assert isinstance(again.actions[1], EditMessage)
    assert again.actions[1].text == "Other menu"


def test_long_output_is_sent_as_several_messages():
    conversation = _conversation("{% for i in range(900) %}line {{ i }}\n{% endfor %}")

    result = conversation.send(CommandEvent(command="t"))

    sent = texts(result)
    assert len(sent) == 2
    assert all(len(text) <= 4096 for text in sent)
    assert "\n".join(sent) == "\n".join(f"line {i}" for i in range(900))


def test_markdown_replies_keep_their_parse_mode():
    conversation = _conversation("*{{ user.first_name }}*", parse_mode="MarkdownV2")

    result = conversation.send(CommandEvent(command="t"))

    assert result.actions[0] == SendMessage(text="*Ann*", parse_mode="MarkdownV2")


def test_a_failing_template_apologises_and_shows_the_start_node():
    conversation = _conversation("{{ 1 / vars.zero }}")
    conversation.state.vars["zero"] = 0

    result = conversation.send(CommandEvent(command="t"))

    assert texts(result) == ["Sorry, something went wrong. Let's start over.", "Main"]
    assert [(i.node_id, i.code, i.detail) for i in result.incidents] == [
        ("help", "template_error", "division by zero")
    ]
    assert conversation.state.node == "main"


def test_an_empty_reply_sends_nothing():
    conversation = _conversation("{% if false %}never{% endif %}", next="other")

    result = conversation.send(CommandEvent(command="t"))

    assert texts(result) == ["Other menu"]
