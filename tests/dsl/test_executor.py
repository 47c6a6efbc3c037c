from dsl import (
    AnswerCallback,
    CallbackEvent,
    CommandEvent,
    ContactEvent,
    ConversationState,
    SendMessage,
    SqlResultEvent,
    TextEvent,
    UnsupportedEvent,
)
from tests.dsl.support import Conversation, context, spec_of, texts

TABLE = {"main.text": "Main", "help.text": "Help", "go": "Go", "ask": "Name?"}
MENU = {
    "type": "menu.v1",
    "text": "main.text",
    "rows": [[{"label": "go", "goto": "wiz"}]],
}
HELP = {"type": "reply_template.v1", "template": "{{ t('help.text') }}", "next": "main"}
WIZ = {
    "type": "wizard.v1",
    "steps": [
        {"name": "a", "type": "text", "prompt": "ask"},
        {"name": "b", "type": "text", "prompt": "ask"},
    ],
    "next": "main",
}
PROMO = {
    "type": "reply_template.v1",
    "template": "Promo {{ vars.code }}",
    "next": "main",
}
INACTIVE = "This button is no longer active."


def _conversation(nodes=None, **top):
    top.setdefault(
        "commands", {"help": {"node": "help"}, "cancel": {"description": "help.text"}}
    )
    top.setdefault(
        "deep_links",
        [
            {"prefix": "promo-", "node": "promo", "into": "code"},
            {"prefix": "help", "node": "help"},
        ],
    )
    spec = spec_of(
        nodes or {"main": MENU, "help": HELP, "wiz": WIZ, "promo": PROMO}, **top
    )
    return Conversation(spec, context(TABLE))


def test_any_first_message_starts_the_conversation():
    for event in (
        TextEvent(text="hi"),
        UnsupportedEvent(kind="sticker"),
        ContactEvent(phone_number="+1", contact_user_id=42),
    ):
        conversation = _conversation()

        result = conversation.send(event)

        assert texts(result) == ["Main"]
        assert conversation.state.node == "main"


def test_a_press_before_the_first_node_is_no_longer_active():
    conversation = _conversation()

    result = conversation.send(
        CallbackEvent(callback_id="c", data="1:main:0:b00000000")
    )

    assert result.actions == [AnswerCallback(callback_id="c", text=INACTIVE)]
    assert conversation.state == ConversationState.initial()


def test_a_sql_result_before_the_first_node_is_ignored():
    conversation = _conversation()

    result = conversation.send(SqlResultEvent(node_id="x"))

    assert result.actions == []
    assert conversation.state == ConversationState.initial()


def test_commands_of_the_spec_open_their_node():
    conversation = _conversation()
    conversation.send(CommandEvent(command="start"))

    result = conversation.send(CommandEvent(command="help"))

    assert texts(result) == ["Help", "Main"]


def test_an_unknown_command_at_a_node_is_answered_and_the_node_waits():
    conversation = _conversation()
    menu = conversation.send(CommandEvent(command="start")).actions[0]
    before = conversation.state

    result = conversation.send(CommandEvent(command="nope"))

    assert result.actions == [
        SendMessage(
            text="Sorry, I don't know this command.",
            parse_mode="HTML",
            reply_markup=menu.reply_markup,
        )
    ]
    assert conversation.state == before


def test_an_unknown_command_before_the_first_node_starts_the_conversation():
    conversation = _conversation()

    result = conversation.send(CommandEvent(command="nope"))

    assert texts(result) == ["Sorry, I don't know this command.", "Main"]


def test_cancel_outside_a_wizard_says_so_and_shows_the_start_node():
    conversation = _conversation()
    conversation.send(CommandEvent(command="start"))

    result = conversation.send(CommandEvent(command="cancel"))

    assert texts(result) == ["Cancelled.", "Main"]


def test_a_command_in_a_wizard_leaves_it():
    conversation = _conversation()
    conversation.send(CommandEvent(command="start"))
    conversation.state.node = "wiz"

    result = conversation.send(CommandEvent(command="help"))

    assert texts(result) == ["Help", "Main"]
    assert conversation.state.step == 0


def test_deep_links_open_their_node_and_store_the_payload():
    conversation = _conversation()

    result = conversation.send(CommandEvent(command="start", payload="promo-SUMMER_25"))

    assert texts(result) == ["Promo SUMMER_25", "Main"]
    assert conversation.state.vars == {"code": "SUMMER_25"}


def test_the_first_matching_deep_link_wins_and_others_start_normally():
    conversation = _conversation()

    helped = conversation.send(CommandEvent(command="start", payload="helpme"))
    unmatched = conversation.send(CommandEvent(command="start", payload="other"))
    malformed = conversation.send(CommandEvent(command="start", payload="promo-a b"))
    too_long = conversation.send(
        CommandEvent(command="start", payload="promo-" + "x" * 60)
    )

    assert texts(helped) == ["Help", "Main"]
    assert texts(unmatched) == ["Main"]
    assert texts(malformed) == ["Main"]
    assert texts(too_long) == ["Main"]
    assert conversation.state.vars == {}


def test_a_state_whose_node_left_the_spec_restarts_politely():
    # given a state at a node the new spec no longer has
    conversation = _conversation()
    conversation.state = ConversationState(node="gone", generation=4, vars={"k": 1})

    # when the user writes or presses an old button
    typed = conversation.send(TextEvent(text="hi"))
    conversation.state = ConversationState(node="gone")
    pressed = conversation.send(CallbackEvent(callback_id="c", data="1:gone:0:x"))

    # then they are told and the start node is shown again
    assert texts(typed) == ["This bot has been updated. Let's start over.", "Main"]
    assert conversation.state.node == "main"
    assert pressed.actions[0] == AnswerCallback(callback_id="c", text=INACTIVE)
    assert texts(pressed) == texts(typed)
    assert [i.code for i in typed.incidents] == ["restarted"]


def test_a_wizard_step_that_left_the_spec_restarts_politely():
    conversation = _conversation()
    conversation.state = ConversationState(node="wiz", step=5)

    result = conversation.send(TextEvent(text="answer"))

    assert texts(result) == ["This bot has been updated. Let's start over.", "Main"]


def test_a_command_after_the_node_left_the_spec_is_handled():
    conversation = _conversation()
    conversation.state = ConversationState(node="gone")

    result = conversation.send(CommandEvent(command="help"))

    assert texts(result) == ["Help", "Main"]


def test_a_chain_of_nodes_without_input_is_cut():
    # given two replies that lead to each other and never wait
    loop_a = {
        "type": "reply_template.v1",
        "template": "{% if false %}{% endif %}",
        "next": "b",
    }
    loop_b = {**loop_a, "next": "a"}
    conversation = _conversation(
        {
            "main": MENU,
            "help": HELP,
            "wiz": WIZ,
            "promo": PROMO,
            "a": loop_a,
            "b": loop_b,
        },
        commands={"loop": {"node": "a"}},
    )

    # when the chain is entered
    result = conversation.send(CommandEvent(command="loop"))

    # then it stops with an apology instead of looping
    assert texts(result) == ["Sorry, something went wrong. Let's start over.", "Main"]
    assert [i.code for i in result.incidents] == ["runaway"]
    assert (conversation.state.node, conversation.state.chain) == ("main", 0)


def test_is_at_start_lets_a_conversation_follow_a_new_version_only_at_rest():
    spec = _conversation().spec

    assert ConversationState.initial().is_at_start(spec)
    assert ConversationState(node="main").is_at_start(spec)
    assert not ConversationState(node="wiz").is_at_start(spec)
    assert not ConversationState(node="main", pending_sql="main").is_at_start(spec)


def test_every_press_gets_exactly_one_answer_first():
    # given presses in every situation a conversation can be in
    cases = []
    fresh = _conversation()
    cases.append((fresh, "1:main:0:x"))
    at_menu = _conversation()
    menu = at_menu.send(CommandEvent(command="start")).actions[0]
    cases.append((at_menu, menu.reply_markup["inline_keyboard"][0][0]["callback_data"]))
    stale = _conversation()
    stale.send(CommandEvent(command="start"))
    cases.append((stale, "1:wiz:0:x"))
    in_wizard = _conversation()
    in_wizard.send(CommandEvent(command="start"))
    in_wizard.state.node = "wiz"
    cases.append((in_wizard, f"{in_wizard.state.generation}:wiz:0:x"))
    gone = _conversation()
    gone.state = ConversationState(node="gone")
    cases.append((gone, "1:gone:0:x"))

    for conversation, data in cases:
        # when the button is pressed
        result = conversation.send(CallbackEvent(callback_id="only", data=data))

        # then exactly one answer is sent, before anything else
        answers = [a for a in result.actions if isinstance(a, AnswerCallback)]
        assert len(answers) == 1
        assert result.actions[0] is answers[0]
