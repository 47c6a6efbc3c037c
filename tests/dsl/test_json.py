import json

import pydantic
import pytest

from dsl import (
    AnswerCallback,
    CallbackEvent,
    CommandEvent,
    ContactEvent,
    ConversationState,
    EditMessage,
    MessageRef,
    RunSql,
    SendMessage,
    SqlResultEvent,
    TextEvent,
    UnsupportedEvent,
    action_from_dict,
    event_from_dict,
)


def _through_json(model):
    return json.loads(json.dumps(model.model_dump(mode="json")))


def test_state_round_trips_through_json():
    state = ConversationState(
        node="order",
        step=2,
        attempts=1,
        history=[0, 1],
        page=3,
        generation=17,
        vars={"qty": 2, "price": 2.5, "ok": True, "rows": [{"id": 1}], "none": None},
        pending_sql="save",
        chain=4,
        reply_keyboard=True,
        edit_target=MessageRef(message_id=5),
    )

    assert ConversationState.model_validate(_through_json(state)) == state


def test_state_ignores_keys_it_does_not_know():
    assert ConversationState.model_validate(
        {"node": "a", "future": 1}
    ) == ConversationState(node="a")


@pytest.mark.parametrize(
    "event",
    [
        CommandEvent(command="start", payload="promo-1"),
        CommandEvent(command="help"),
        TextEvent(text="hi <b>"),
        CallbackEvent(callback_id="c", data="1:a:0:x", message_id=3),
        CallbackEvent(callback_id="c", data="1:a:0:x", inline_message_id="in"),
        ContactEvent(phone_number="+1", contact_user_id=9),
        UnsupportedEvent(kind="sticker"),
        SqlResultEvent(node_id="q", rows=[{"a": 1}], error=None),
        SqlResultEvent(node_id="q", error="timeout"),
    ],
)
def test_events_round_trip_through_json(event):
    assert event_from_dict(_through_json(event)) == event


def test_unsupported_events_name_their_content_in_kind():
    assert UnsupportedEvent(kind="voice").model_dump() == {"kind": "voice"}
    with pytest.raises(pydantic.ValidationError):
        UnsupportedEvent(kind="text")


@pytest.mark.parametrize(
    "action",
    [
        SendMessage(
            text="a",
            parse_mode="HTML",
            reply_markup={"force_reply": True, "selective": True},
        ),
        SendMessage(text="b"),
        EditMessage(message_id=1, text="c", parse_mode="MarkdownV2", reply_markup=None),
        EditMessage(inline_message_id="in", text="d"),
        AnswerCallback(callback_id="c", text="no", show_alert=True),
        RunSql(
            node_id="q",
            statement="SELECT :a",
            params={"a": 1},
            mode="write",
            timeout_ms=100,
            max_rows=5,
            into="rows",
        ),
    ],
)
def test_actions_round_trip_through_json(action):
    assert action_from_dict(_through_json(action)) == action


def test_a_malformed_action_is_refused():
    with pytest.raises(pydantic.ValidationError):
        action_from_dict({"kind": "send_photo", "photo": "x"})
