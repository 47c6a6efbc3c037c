# The page buttons use typographic arrows, which the ambiguous-character check
# would flag.

from dsl import (
    AnswerCallback,
    CallbackEvent,
    CommandEvent,
    ContactEvent,
    ConversationState,
    EditMessage,
    SendMessage,
    TextEvent,
    UnsupportedEvent,
)
from dsl.callback import MAX_CALLBACK_BYTES
from tests.dsl.support import Conversation, context, data_of, keyboard, spec_of

TABLE = {
    "main.text": "Hi {first_name}, drink: {drink}",
    "go.shop": "Shop",
    "go.site": "Site",
    "set.tea": "Tea",
    "shop.text": "Pick <b>one</b>",
    "product": "{name} <{price}>",
    "back": "Back",
}
MAIN = {
    "type": "menu.v1",
    "text": "main.text",
    "rows": [
        [
            {"label": "go.shop", "goto": "shop"},
            {"label": "go.site", "url": "https://example.com"},
        ],
        [{"label": "set.tea", "set": {"drink": "tea"}}],
    ],
}
SHOP = {
    "type": "menu.v1",
    "text": "shop.text",
    "items": {
        "source": "products",
        "label": "product",
        "value": "id",
        "into": "product_id",
        "goto": "main",
    },
    "page_size": 2,
    "rows": [[{"label": "back", "goto": "main"}]],
}
PRODUCTS = [{"id": i, "name": f"P{i}", "price": i * 10} for i in range(5)]


def _conversation(main=MAIN, shop=SHOP):
    conversation = Conversation(spec_of({"main": main, "shop": shop}), context(TABLE))
    conversation.state = ConversationState(vars={"products": PRODUCTS})
    return conversation


def _press(conversation, data, message_id=10, callback_id="cb"):
    return conversation.send(
        CallbackEvent(callback_id=callback_id, data=data, message_id=message_id)
    )


def test_menu_shows_its_text_and_buttons():
    # given a conversation that has not started
    conversation = _conversation()

    # when it starts
    result = conversation.send(CommandEvent(command="start"))

    # then the menu is sent with its placeholders filled and its keyboard
    assert result.actions == [
        SendMessage(
            text="Hi Ann, drink: {drink}",
            parse_mode="HTML",
            reply_markup={
                "inline_keyboard": [
                    [
                        {"text": "Shop", "callback_data": "1:main:0:b90ad665e"},
                        {"text": "Site", "url": "https://example.com"},
                    ],
                    [{"text": "Tea", "callback_data": "1:main:0:b9ec2ce60"}],
                ]
            },
        )
    ]
    assert conversation.state.node == "main"
    assert conversation.state.generation == 1


def test_a_press_leading_to_a_menu_edits_the_message_in_place():
    # given the main menu on screen
    conversation = _conversation()
    menu = conversation.send(CommandEvent(command="start")).actions[0]

    # when Shop is pressed
    result = _press(conversation, data_of(menu, "Shop"))

    # then the press is answered first and the same message becomes the shop
    assert result.actions == [
        AnswerCallback(callback_id="cb"),
        EditMessage(
            message_id=10,
            text="Pick <b>one</b>",
            parse_mode="HTML",
            reply_markup={
                "inline_keyboard": [
                    [{"text": "P0 <0>", "callback_data": "2:shop:0:i0"}],
                    [{"text": "P1 <10>", "callback_data": "2:shop:0:i1"}],
                    [{"text": "Next ›", "callback_data": "2:shop:0:p1"}],
                    [{"text": "Back", "callback_data": "2:shop:0:b1cff9be1"}],
                ]
            },
        ),
    ]
    assert conversation.state.node == "shop"


def test_an_inline_message_is_edited_by_its_inline_id():
    conversation = _conversation()
    menu = conversation.send(CommandEvent(command="start")).actions[0]

    result = conversation.send(
        CallbackEvent(
            callback_id="cb", data=data_of(menu, "Shop"), inline_message_id="in-1"
        )
    )

    edit = result.actions[1]
    assert isinstance(edit, EditMessage)
    assert (edit.message_id, edit.inline_message_id) == (None, "in-1")


def test_a_set_button_stores_variables_and_redraws_the_menu():
    conversation = _conversation()
    menu = conversation.send(CommandEvent(command="start")).actions[0]

    result = _press(conversation, data_of(menu, "Tea"))

    assert [type(action) for action in result.actions] == [AnswerCallback, EditMessage]
    assert result.actions[1].text == "Hi Ann, drink: tea"
    assert keyboard(result.actions[1])[1] == [("Tea", "2:main:0:b9ec2ce60")]
    assert conversation.state.vars["drink"] == "tea"
    assert conversation.state.generation == 2


def test_pages_turn_in_place_and_keep_the_static_rows():
    # given the shop's first page
    conversation = _conversation()
    menu = conversation.send(CommandEvent(command="start")).actions[0]
    shop = _press(conversation, data_of(menu, "Shop")).actions[1]

    # when Next is pressed twice
    second = _press(conversation, data_of(shop, "Next ›"), callback_id="n1").actions[1]
    third = _press(conversation, data_of(second, "Next ›"), callback_id="n2").actions[1]

    # then each page replaces the message, with the navigation it needs
    assert isinstance(second, EditMessage)
    assert keyboard(second) == [
        [("P2 <20>", "2:shop:0:i2")],
        [("P3 <30>", "2:shop:0:i3")],
        [("‹ Previous", "2:shop:0:p0"), ("Next ›", "2:shop:0:p2")],
        [("Back", "2:shop:0:b1cff9be1")],
    ]
    assert keyboard(third) == [
        [("P4 <40>", "2:shop:0:i4")],
        [("‹ Previous", "2:shop:0:p1")],
        [("Back", "2:shop:0:b1cff9be1")],
    ]
    assert conversation.state.page == 2


def test_a_generated_button_stores_its_value_and_goes_on():
    conversation = _conversation()
    menu = conversation.send(CommandEvent(command="start")).actions[0]
    shop = _press(conversation, data_of(menu, "Shop")).actions[1]

    result = _press(conversation, data_of(shop, "P1 <10>"))

    assert conversation.state.vars["product_id"] == 1
    assert conversation.state.node == "main"
    assert result.actions[1] == EditMessage(
        message_id=10,
        text="Hi Ann, drink: {drink}",
        parse_mode="HTML",
        reply_markup={
            "inline_keyboard": [
                [
                    {"text": "Shop", "callback_data": "3:main:0:b90ad665e"},
                    {"text": "Site", "url": "https://example.com"},
                ],
                [{"text": "Tea", "callback_data": "3:main:0:b9ec2ce60"}],
            ]
        },
    )


def test_a_button_of_another_node_is_no_longer_active():
    # given the conversation moved from the main menu to the shop
    conversation = _conversation()
    menu = conversation.send(CommandEvent(command="start")).actions[0]
    _press(conversation, data_of(menu, "Shop"))
    before = conversation.state

    # when a button of the old main menu message is pressed
    result = _press(conversation, data_of(menu, "Tea"))

    # then it is answered as stale and nothing changes
    assert result.actions == [
        AnswerCallback(callback_id="cb", text="This button is no longer active.")
    ]
    assert conversation.state == before


def test_a_button_changed_by_a_publish_is_no_longer_active():
    # given a menu message sent before its button changed
    conversation = _conversation()
    menu = conversation.send(CommandEvent(command="start")).actions[0]
    changed = {**MAIN, "rows": [[{"label": "go.shop", "goto": "main"}]]}
    republished = _conversation(main=changed)
    republished.state = conversation.state
    before = republished.state

    # when the old button is pressed against the new spec
    result = _press(republished, data_of(menu, "Shop"))

    # then it is not mistaken for the new one
    assert result.actions == [
        AnswerCallback(callback_id="cb", text="This button is no longer active.")
    ]
    assert republished.state == before


def test_an_unchanged_button_of_an_older_message_still_works():
    conversation = _conversation()
    first = conversation.send(CommandEvent(command="start")).actions[0]
    conversation.send(CommandEvent(command="start"))

    result = _press(conversation, data_of(first, "Shop"))

    assert conversation.state.node == "shop"
    assert isinstance(result.actions[1], EditMessage)


def test_a_generated_button_of_an_older_visit_is_no_longer_active():
    # given the shop shown, left and shown again (its list may have changed)
    conversation = _conversation()
    menu = conversation.send(CommandEvent(command="start")).actions[0]
    old_shop = _press(conversation, data_of(menu, "Shop")).actions[1]
    back = _press(conversation, data_of(old_shop, "Back")).actions[1]
    _press(conversation, data_of(back, "Shop"))
    before = conversation.state

    # when an item of the first visit is pressed
    result = _press(conversation, data_of(old_shop, "P0 <0>"))

    # then it is refused
    assert result.actions == [
        AnswerCallback(callback_id="cb", text="This button is no longer active.")
    ]
    assert conversation.state == before


def test_foreign_or_out_of_range_callback_data_is_no_longer_active():
    conversation = _conversation()
    conversation.send(CommandEvent(command="start"))
    before = conversation.state

    results = [
        _press(conversation, data)
        for data in (
            "garbage",
            "1:main:0:p9",
            "1:main:0:bffffffff",
            "1:main:0:i0",
            "zz:main:0:",
        )
    ]

    assert [result.actions for result in results] == [
        [AnswerCallback(callback_id="cb", text="This button is no longer active.")]
    ] * 5
    assert conversation.state == before


def test_text_and_contacts_at_a_menu_get_the_buttons_again():
    conversation = _conversation()
    menu = conversation.send(CommandEvent(command="start")).actions[0]
    before = conversation.state

    typed = conversation.send(TextEvent(text="hello"))
    contact = conversation.send(ContactEvent(phone_number="+1", contact_user_id=42))

    expected = SendMessage(
        text="Please use the buttons below.",
        parse_mode="HTML",
        reply_markup=menu.reply_markup,
    )
    assert typed.actions == [expected]
    assert contact.actions == [expected]
    assert conversation.state == before


def test_an_unsupported_message_at_a_menu_gets_a_polite_answer():
    conversation = _conversation()
    menu = conversation.send(CommandEvent(command="start")).actions[0]
    before = conversation.state

    result = conversation.send(UnsupportedEvent(kind="sticker"))

    assert result.actions == [
        SendMessage(
            text="Sorry, I can't handle this kind of message.",
            parse_mode="HTML",
            reply_markup=menu.reply_markup,
        )
    ]
    assert conversation.state == before


def test_callback_data_stays_under_64_bytes_for_the_longest_node_id():
    # given a menu with the longest node id and a late generation
    node_id = "m" * 32
    conversation = Conversation(spec_of({node_id: MAIN, "shop": SHOP}), context(TABLE))
    conversation.state = ConversationState(generation=36**6 - 2)

    # when it is shown
    menu = conversation.send(CommandEvent(command="start")).actions[0]

    # then its data is the longest possible and still fits
    data = data_of(menu, "Shop")
    assert data == f"zzzzzz:{node_id}:0:b90ad665e"
    assert len(data.encode()) == 51 < MAX_CALLBACK_BYTES


def test_group_callback_data_with_its_owner_tag_stays_under_64_bytes():
    # given a menu with the longest node id and a late generation in a group
    node_id = "m" * 32
    ctx = context(TABLE, chat_type="supergroup", user_id=42)
    conversation = Conversation(spec_of({node_id: MAIN, "shop": SHOP}), ctx)
    conversation.state = ConversationState(generation=36**6 - 2)

    # when it is shown
    menu = conversation.send(CommandEvent(command="start")).actions[0]

    # then its data names user 42 as the owner and still fits
    data = data_of(menu, "Shop")
    assert data == f"zzzzzz.ui6l:{node_id}:0:b90ad665e"
    assert len(data.encode()) == 56 < MAX_CALLBACK_BYTES


def test_in_a_group_a_menu_button_shown_to_another_member_is_no_longer_active():
    # given Ann and Tom in one group, both at the main menu
    spec = spec_of({"main": MAIN, "shop": SHOP})
    ann = Conversation(spec, context(TABLE, chat_type="group", user_id=7))
    tom = Conversation(spec, context(TABLE, chat_type="group", user_id=8))
    ann_menu = ann.send(CommandEvent(command="start")).actions[0]
    tom.send(CommandEvent(command="start"))
    before = tom.state

    # when Tom presses a button of Ann's menu
    result = _press(tom, data_of(ann_menu, "Tea"))

    # then it is not his; Ann's own press still works
    assert result.actions == [
        AnswerCallback(callback_id="cb", text="This button is no longer active.")
    ]
    assert tom.state == before
    _press(ann, data_of(ann_menu, "Tea"))
    assert ann.state.vars["drink"] == "tea"


def test_a_lone_surrogate_in_a_first_name_is_shown_as_a_replacement_character():
    # given a user whose first name is half of an emoji
    spec = spec_of({"main": MAIN, "shop": SHOP})
    conversation = Conversation(spec, context(TABLE, first_name="Ann\ud83d"))

    # when the menu is shown, then edited by a press
    sent = conversation.send(CommandEvent(command="start")).actions[0]
    edited = _press(conversation, data_of(sent, "Tea")).actions[1]

    # then both texts can be encoded
    assert isinstance(sent, SendMessage) and isinstance(edited, EditMessage)
    assert sent.text == "Hi Ann\ufffd, drink: {drink}"
    assert edited.text == "Hi Ann\ufffd, drink: tea"
