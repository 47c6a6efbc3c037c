import pytest

from dsl import (
    AnswerCallback,
    CallbackEvent,
    CommandEvent,
    ContactEvent,
    SendMessage,
    TextEvent,
    UnsupportedEvent,
)
from tests.dsl.support import Conversation, context, data_of, keyboard, spec_of, texts

TABLE = {
    "main.text": "Main menu",
    "go": "Go",
    "ask": "Your answer?",
    "ask2": "And now?",
    "custom": "Custom error ({min}-{max})",
    "opt.a": "Alpha",
    "opt.b": "Beta",
    "done": "Done",
}
MENU = {
    "type": "menu.v1",
    "text": "main.text",
    "rows": [[{"label": "go", "goto": "wiz"}]],
}
CANCEL_ROW = [("✖ Cancel", "1:wiz:0:x")]


def _wizard(*steps, **extra):
    nodes = {
        "main": MENU,
        "wiz": {"type": "wizard.v1", "steps": list(steps), "next": "end", **extra},
        "end": {
            "type": "reply_template.v1",
            "template": "{{ t('done') }}",
            "next": "main",
        },
    }
    return spec_of(nodes, commands={"go": {"node": "wiz"}})


def _step(step_type, name="x", prompt="ask", **fields):
    return {"name": name, "type": step_type, "prompt": prompt, **fields}


def _started(*steps, ctx=None, **extra):
    conversation = Conversation(_wizard(*steps, **extra), ctx or context(TABLE))
    conversation.send(CommandEvent(command="go"))
    return conversation


def _answer(conversation, text):
    return conversation.send(TextEvent(text=text))


def test_entering_a_wizard_asks_the_first_question_with_a_cancel_button():
    conversation = Conversation(_wizard(_step("text")), context(TABLE))

    result = conversation.send(CommandEvent(command="go"))

    assert result.actions == [
        SendMessage(
            text="Your answer?",
            parse_mode="HTML",
            reply_markup={
                "inline_keyboard": [
                    [{"text": "✖ Cancel", "callback_data": "1:wiz:0:x"}]
                ]
            },
        )
    ]
    assert (conversation.state.node, conversation.state.step) == ("wiz", 0)


def test_a_complete_answer_goes_to_next():
    conversation = _started(_step("text"))

    result = _answer(conversation, "  Ann  ")

    assert texts(result) == ["Done", "Main menu"]
    assert conversation.state.vars["x"] == "Ann"
    assert conversation.state.node == "main"


@pytest.mark.parametrize(
    ("step", "answer", "stored"),
    [
        (
            _step("text", min_length=2, max_length=5, pattern="[A-Z][a-z]+"),
            "Ann",
            "Ann",
        ),
        (_step("integer", min=1, max=10), " 7 ", 7),
        (_step("integer"), "-1 000", -1000),
        (_step("number", min=0.5), "2,5", 2.5),
        (_step("number"), "3", 3.0),
        (_step("email"), "ann@example.com", "ann@example.com"),
        (_step("date"), "2025-12-31", "2025-12-31"),
        (_step("date"), "31.12.2025", "2025-12-31"),
        (_step("date", min="2025-01-01", max="2025-12-31"), "01/02/2025", "2025-02-01"),
        (_step("yes_no"), "Yes", True),
        (_step("yes_no"), "n", False),
        (_step("choice", options=[{"value": "a", "label": "opt.a"}]), "alpha", "a"),
        (_step("choice", options=[{"value": "a", "label": "opt.a"}]), "a", "a"),
    ],
)
def test_valid_answers_are_stored_typed(step, answer, stored):
    conversation = _started(step)

    _answer(conversation, answer)

    assert conversation.state.vars["x"] == stored
    assert type(conversation.state.vars["x"]) is type(stored)


@pytest.mark.parametrize(
    ("step", "answer", "error"),
    [
        (_step("text"), "   ", "Please send your answer as a text message."),
        (
            _step("text", min_length=2),
            "A",
            "That is too short: please send at least 2 characters.",
        ),
        (
            _step("text", max_length=3),
            "Anna",
            "That is too long: please send at most 3 characters.",
        ),
        (
            _step("text", pattern="[0-9]+"),
            "12a",
            "That doesn't look right. Please try again.",
        ),
        (_step("integer"), "1.5", "Please send a whole number, like 3."),
        (_step("integer", min=1), "0", "Please send a number of at least 1."),
        (_step("integer", max=10), "11", "Please send a number of at most 10."),
        (_step("number"), "1.2.3", "Please send a number, like 2.5."),
        (_step("number", min=1.5), "1", "Please send a number of at least 1.5."),
        (_step("number", max=2), "2.01", "Please send a number of at most 2."),
        (
            _step("email"),
            "ann@",
            "Please send a valid email address, like name@example.com.",
        ),
        (
            _step("date"),
            "2025-02-30",
            "Please send a date like 2025-12-31 or 31.12.2025.",
        ),
        (
            _step("date", min="2025-01-01"),
            "2024-12-31",
            "Please send a date no earlier than 2025-01-01.",
        ),
        (
            _step("date", max="2025-01-01"),
            "2025-01-02",
            "Please send a date no later than 2025-01-01.",
        ),
        (_step("yes_no"), "maybe", "Please answer yes or no."),
        (
            _step("choice", options=[{"value": "a", "label": "opt.a"}]),
            "gamma",
            "Please choose one of the options below.",
        ),
        (
            _step("integer", min=1, max=10, error="custom"),
            "zero",
            "Custom error (1-10)",
        ),
    ],
)
def test_invalid_answers_are_refused_with_the_question_again(step, answer, error):
    # given a wizard waiting at its step
    conversation = _started(step)
    before = conversation.state

    # when an invalid answer arrives
    result = _answer(conversation, answer)

    # then the error comes with the question, nothing is stored, one attempt
    # is counted
    assert texts(result) == [f"{error}\n\nYour answer?"]
    assert conversation.state.vars == before.vars
    assert conversation.state.attempts == 1
    assert conversation.state.model_copy(update={"attempts": 0}) == before


def test_too_many_invalid_answers_cancel_the_wizard():
    # given a step allowing two attempts and one already used
    conversation = _started(_step("integer", max_attempts=2))
    _answer(conversation, "x")

    # when the second invalid answer arrives
    result = _answer(conversation, "y")

    # then the wizard is cancelled to the start node
    assert texts(result) == ["Too many attempts. Let's start over.", "Main menu"]
    assert conversation.state.node == "main"
    assert "x" not in conversation.state.vars


def test_too_many_attempts_go_to_the_configured_node():
    conversation = _started(_step("integer", max_attempts=1), on_cancel="end")

    result = _answer(conversation, "x")

    assert texts(result) == [
        "Too many attempts. Let's start over.",
        "Done",
        "Main menu",
    ]


def test_yes_no_answers_can_be_typed_in_the_users_language():
    conversation = _started(_step("yes_no"), ctx=context(TABLE, locale="uk"))

    # Ukrainian for "yes", typed in capitals.
    _answer(conversation, "ТАК")

    assert conversation.state.vars["x"] is True


def test_choice_and_yes_no_steps_offer_buttons():
    conversation = _started(
        _step(
            "choice",
            options=[
                {"value": "a", "label": "opt.a"},
                {"value": "b", "label": "opt.b"},
            ],
            columns=2,
        ),
        _step("yes_no", name="y", prompt="ask2"),
    )
    first = conversation.state

    pressed = conversation.send(
        CallbackEvent(callback_id="c", data="1:wiz:0:ob", message_id=5)
    )

    assert first.vars == {}
    assert pressed.actions[0] == AnswerCallback(callback_id="c")
    assert keyboard(pressed.actions[1]) == [
        [("Yes", "1:wiz:1:y"), ("No", "1:wiz:1:n")],
        [("« Back", "1:wiz:1:k"), ("✖ Cancel", "1:wiz:1:x")],
    ]
    assert conversation.state.vars == {"x": "b"}

    conversation.send(CallbackEvent(callback_id="c", data="1:wiz:1:n", message_id=6))

    assert conversation.state.vars == {"x": "b", "y": False}


def test_a_button_of_an_earlier_step_is_no_longer_active():
    conversation = _started(
        _step("choice", options=[{"value": "a", "label": "opt.a"}]),
        _step("text", name="y", prompt="ask2"),
    )
    conversation.send(CallbackEvent(callback_id="c", data="1:wiz:0:oa"))
    before = conversation.state

    result = conversation.send(CallbackEvent(callback_id="d", data="1:wiz:0:oa"))

    assert result.actions == [
        AnswerCallback(callback_id="d", text="This button is no longer active.")
    ]
    assert conversation.state == before


def test_an_option_removed_by_a_publish_is_no_longer_active():
    conversation = _started(_step("choice", options=[{"value": "a", "label": "opt.a"}]))
    before = conversation.state

    result = conversation.send(CallbackEvent(callback_id="d", data="1:wiz:0:ozzz"))

    assert result.actions == [
        AnswerCallback(callback_id="d", text="This button is no longer active.")
    ]
    assert conversation.state == before


def test_an_optional_step_is_skipped_by_button_or_command():
    conversation = _started(
        _step("text", optional=True),
        _step("text", name="y", prompt="ask2", optional=True),
    )
    first = conversation.send(CommandEvent(command="skip"))
    second_prompt = first.actions[0]

    conversation.send(
        CallbackEvent(callback_id="c", data=data_of(second_prompt, "Skip »"))
    )

    assert keyboard(second_prompt) == [
        [("« Back", "1:wiz:1:k"), ("Skip »", "1:wiz:1:s"), ("✖ Cancel", "1:wiz:1:x")]
    ]
    assert conversation.state.vars == {"x": None, "y": None}
    assert conversation.state.node == "main"


def test_a_required_step_cannot_be_skipped():
    conversation = _started(_step("text"))
    before = conversation.state

    result = conversation.send(CommandEvent(command="skip"))

    assert texts(result) == ["This question can't be skipped.\n\nYour answer?"]
    assert conversation.state == before


def test_back_returns_to_the_previous_step():
    conversation = _started(_step("text"), _step("text", name="y", prompt="ask2"))
    _answer(conversation, "first")

    by_command = conversation.send(CommandEvent(command="back"))
    _answer(conversation, "again")
    by_button = conversation.send(CallbackEvent(callback_id="c", data="1:wiz:1:k"))

    assert texts(by_command) == ["Your answer?"]
    assert by_button.actions[1] == by_command.actions[0]
    assert (conversation.state.step, conversation.state.history) == (0, [])
    assert conversation.state.vars["x"] == "again"


def test_back_at_the_first_step_says_so():
    conversation = _started(_step("text"))
    before = conversation.state

    result = conversation.send(CommandEvent(command="back"))

    assert texts(result) == ["This is the first question.\n\nYour answer?"]
    assert conversation.state == before


def test_cancel_by_command_or_button_goes_to_the_start_node():
    by_command = _started(_step("text"))
    by_button = _started(_step("text"))

    command_result = by_command.send(CommandEvent(command="cancel"))
    button_result = by_button.send(CallbackEvent(callback_id="c", data="1:wiz:0:x"))

    assert texts(command_result) == ["Cancelled.", "Main menu"]
    assert texts(button_result) == ["Cancelled.", "Main menu"]
    assert by_command.state.node == by_button.state.node == "main"


def test_entering_a_wizard_forgets_older_answers_of_its_steps():
    conversation = _started(_step("text", optional=True))
    _answer(conversation, "old")

    conversation.send(CommandEvent(command="go"))

    assert "x" not in conversation.state.vars


def test_an_unsupported_message_repeats_the_question_without_an_attempt():
    conversation = _started(_step("integer"))
    before = conversation.state

    result = conversation.send(UnsupportedEvent(kind="voice"))

    assert texts(result) == [
        "Sorry, I can't handle this kind of message.\n\nYour answer?"
    ]
    assert conversation.state == before


def test_a_phone_step_asks_for_the_users_own_contact():
    conversation = Conversation(_wizard(_step("phone", optional=True)), context(TABLE))

    result = conversation.send(CommandEvent(command="go"))

    assert result.actions == [
        SendMessage(
            text="Your answer?",
            parse_mode="HTML",
            reply_markup={
                "keyboard": [
                    [{"text": "📱 Share my phone number", "request_contact": True}],
                    [{"text": "Skip »"}, {"text": "✖ Cancel"}],
                ],
                "resize_keyboard": True,
                "one_time_keyboard": True,
            },
        )
    ]
    assert conversation.state.reply_keyboard is True


def test_the_users_own_contact_is_stored_and_the_keyboard_removed():
    conversation = _started(_step("phone"))

    result = conversation.send(
        ContactEvent(phone_number="+380501112233", contact_user_id=42)
    )

    assert conversation.state.vars["x"] == "+380501112233"
    assert result.actions[0] == SendMessage(
        text="Done", parse_mode="HTML", reply_markup={"remove_keyboard": True}
    )
    assert conversation.state.reply_keyboard is False


def test_someone_elses_contact_or_typed_text_is_refused():
    conversation = _started(_step("phone"))
    before = conversation.state

    foreign = conversation.send(ContactEvent(phone_number="+1", contact_user_id=99))
    unknown = conversation.send(ContactEvent(phone_number="+1", contact_user_id=None))

    assert texts(foreign) == [
        "Please share your own contact, not someone else's.\n\nYour answer?"
    ]
    assert texts(unknown) == texts(foreign)
    assert conversation.state.attempts == 2
    assert conversation.state.vars == before.vars

    typed = _answer(conversation, "+380501112233")

    assert texts(typed) == ["Too many attempts. Let's start over.", "Main menu"]


def test_the_contact_keyboards_buttons_work_as_typed_labels():
    conversation = _started(_step("phone", optional=True))

    result = _answer(conversation, "Skip »")

    assert conversation.state.vars == {"x": None}
    assert texts(result) == ["Done", "Main menu"]


def test_in_groups_typed_answers_are_asked_with_a_selective_force_reply():
    ctx = context(TABLE, chat_type="supergroup", user_id=7, first_name="<Bo>")
    conversation = Conversation(_wizard(_step("text"), _step("phone", name="p")), ctx)

    first = conversation.send(CommandEvent(command="go"))
    second = _answer(conversation, "hi")

    markup = {"force_reply": True, "selective": True}
    assert first.actions == [
        SendMessage(
            text='<a href="tg://user?id=7">&lt;Bo&gt;</a>, Your answer?',
            parse_mode="HTML",
            reply_markup=markup,
        )
    ]
    assert second.actions[0].reply_markup == markup


def test_in_groups_choices_keep_their_buttons():
    ctx = context(TABLE, chat_type="group")
    conversation = Conversation(
        _wizard(_step("choice", options=[{"value": "a", "label": "opt.a"}])), ctx
    )

    result = conversation.send(CommandEvent(command="go"))

    # the data carries the owner tag of user 42
    assert keyboard(result.actions[0]) == [
        [("Alpha", "1.ui6l:wiz:0:oa")],
        [("✖ Cancel", "1.ui6l:wiz:0:x")],
    ]


def test_the_contact_keyboard_stays_until_a_message_without_buttons():
    # given a phone step followed by a choice and a text step
    conversation = _started(
        _step("phone", name="p"),
        _step("choice", options=[{"value": "a", "label": "opt.a"}]),
        _step("text", name="t", prompt="ask2"),
    )

    # when the contact is shared and the choice answered
    choice = conversation.send(ContactEvent(phone_number="+1", contact_user_id=42))
    text = conversation.send(TextEvent(text="a"))
    done = conversation.send(TextEvent(text="fine"))

    # then the inline keyboards cannot remove it; the first plain message does
    assert "remove_keyboard" not in choice.actions[0].reply_markup
    assert "remove_keyboard" not in text.actions[0].reply_markup
    assert done.actions[0].reply_markup == {"remove_keyboard": True}
    assert conversation.state.reply_keyboard is False


def test_a_button_from_an_earlier_run_of_the_wizard_is_no_longer_active():
    # given a wizard cancelled and entered again, waiting at the same step
    choice = _step("choice", options=[{"value": "a", "label": "opt.a"}])
    conversation = Conversation(_wizard(choice), context(TABLE))
    first_run = conversation.send(CommandEvent(command="go")).actions[0]
    conversation.send(CommandEvent(command="cancel"))
    conversation.send(CommandEvent(command="go"))
    before = conversation.state

    # when a choice of the first run's prompt is pressed
    result = conversation.send(
        CallbackEvent(callback_id="c", data=data_of(first_run, "Alpha"))
    )

    # then it does not answer this run
    assert result.actions == [
        AnswerCallback(callback_id="c", text="This button is no longer active.")
    ]
    assert conversation.state == before


def test_after_back_a_prompt_of_the_same_run_answers_its_step_again():
    # given a choice answered by its button, then Back to it
    choice = _step(
        "choice",
        options=[{"value": "a", "label": "opt.a"}, {"value": "b", "label": "opt.b"}],
    )
    conversation = Conversation(
        _wizard(choice, _step("text", name="y", prompt="ask2")), context(TABLE)
    )
    prompt = conversation.send(CommandEvent(command="go")).actions[0]
    conversation.send(CallbackEvent(callback_id="c", data=data_of(prompt, "Alpha")))
    conversation.send(CommandEvent(command="back"))

    # when the first prompt is pressed again
    result = conversation.send(
        CallbackEvent(callback_id="d", data=data_of(prompt, "Beta"))
    )

    # then it answers: the same step of the same run is asked again
    assert texts(result) == ["And now?"]
    assert (conversation.state.step, conversation.state.vars) == (1, {"x": "b"})


def test_in_a_group_a_button_asked_of_another_member_is_no_longer_active():
    # given Ann and Tom in one group, each at the first step of their wizard
    spec = _wizard(_step("choice", options=[{"value": "a", "label": "opt.a"}]))
    ann = Conversation(spec, context(TABLE, chat_type="supergroup", user_id=7))
    tom = Conversation(spec, context(TABLE, chat_type="supergroup", user_id=8))
    ann_prompt = ann.send(CommandEvent(command="go")).actions[0]
    tom.send(CommandEvent(command="go"))
    before = tom.state

    # when Tom presses a choice of Ann's prompt
    result = tom.send(CallbackEvent(callback_id="t", data=data_of(ann_prompt, "Alpha")))

    # then it does not answer his wizard; Ann's own press still answers hers
    assert result.actions == [
        AnswerCallback(callback_id="t", text="This button is no longer active.")
    ]
    assert tom.state == before
    ann.send(CallbackEvent(callback_id="a", data=data_of(ann_prompt, "Alpha")))
    assert ann.state.vars == {"x": "a"}


@pytest.mark.parametrize(
    ("chat_type", "data"),
    [
        # no owner tag in a group: written before tags or forged
        ("group", "1:wiz:0:oa"),
        # the tag of user 42 in a private chat, which has none
        ("private", "1.ui6l:wiz:0:oa"),
    ],
)
def test_an_owner_tag_missing_in_a_group_or_present_in_private_is_inactive(
    chat_type, data
):
    conversation = _started(
        _step("choice", options=[{"value": "a", "label": "opt.a"}]),
        ctx=context(TABLE, chat_type=chat_type),
    )
    before = conversation.state

    result = conversation.send(CallbackEvent(callback_id="c", data=data))

    assert result.actions == [
        AnswerCallback(callback_id="c", text="This button is no longer active.")
    ]
    assert conversation.state == before
