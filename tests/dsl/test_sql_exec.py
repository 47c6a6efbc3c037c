from dsl import (
    AnswerCallback,
    CallbackEvent,
    CommandEvent,
    RunSql,
    SendMessage,
    SqlResultEvent,
    TextEvent,
)
from tests.dsl.support import Conversation, context, spec_of, texts

TABLE = {"main.text": "Main", "go": "Go", "rows": "{{ vars.rows }}"}
MENU = {
    "type": "menu.v1",
    "text": "main.text",
    "rows": [[{"label": "go", "goto": "query"}]],
}
QUERY = {
    "type": "sql_exec.v1",
    "statement": "SELECT * FROM t WHERE u = :user_id AND c = :chat_id AND l = :locale "
    "AND n = :first_name AND d = :drink AND m = :missing AND j = :tags",
    "into": "rows",
    "max_rows": 2,
    "timeout_ms": 500,
    "next": "show",
}
SHOW = {
    "type": "reply_template.v1",
    "template": "{{ vars.rows|length }} rows",
    "next": "main",
}


def _conversation(query=QUERY, **nodes):
    spec = spec_of(
        {"main": MENU, "query": query, "show": SHOW, **nodes},
        commands={"q": {"node": "query"}},
    )
    conversation = Conversation(spec, context(TABLE, locale="uk"))
    conversation.state.vars.update({"drink": "tea", "tags": ["a", "b"], "user_id": -1})
    return conversation


def test_entering_a_sql_node_asks_to_run_it_and_waits():
    # given a conversation with variables, one of them shadowing a built-in
    conversation = _conversation()

    # when the SQL node is entered
    result = conversation.send(CommandEvent(command="q"))

    # then RunSql carries variables and built-ins (which win), and nothing else
    assert result.actions == [
        RunSql(
            node_id="query",
            statement=QUERY["statement"],
            params={
                "user_id": 42,
                "chat_id": 42,
                "locale": "uk",
                "first_name": "Ann",
                "drink": "tea",
                "missing": None,
                "tags": '["a", "b"]',
            },
            mode="read",
            timeout_ms=500,
            max_rows=2,
            into="rows",
        )
    ]
    assert conversation.state.pending_sql == "query"
    assert conversation.state.chain == 1


def test_the_result_is_stored_and_the_conversation_goes_on():
    conversation = _conversation()
    conversation.send(CommandEvent(command="q"))

    result = conversation.send(
        SqlResultEvent(node_id="query", rows=[{"a": 1}, {"a": 2}, {"a": 3}])
    )

    assert texts(result) == ["2 rows", "Main"]
    assert conversation.state.vars["rows"] == [{"a": 1}, {"a": 2}]
    assert conversation.state.pending_sql is None
    assert conversation.state.chain == 0


def test_an_error_without_on_error_apologises_and_shows_the_start_node():
    conversation = _conversation()
    conversation.send(CommandEvent(command="q"))

    result = conversation.send(SqlResultEvent(node_id="query", error="syntax error"))

    assert texts(result) == ["Вибачте, щось пішло не так. Почнімо спочатку.", "Main"]
    assert [(i.node_id, i.code, i.detail) for i in result.incidents] == [
        ("query", "sql_error", "syntax error")
    ]
    assert "rows" not in conversation.state.vars
    assert conversation.state.node == "main"


def test_an_error_goes_to_on_error_when_set():
    failed = {"type": "reply_template.v1", "template": "failed", "next": "main"}
    conversation = _conversation({**QUERY, "on_error": "failed"}, failed=failed)
    conversation.send(CommandEvent(command="q"))

    result = conversation.send(SqlResultEvent(node_id="query", error="timeout"))

    assert texts(result) == ["failed", "Main"]


def test_user_events_while_sql_is_pending_are_asked_to_wait():
    # given a conversation waiting for its SQL result
    conversation = _conversation()
    conversation.send(CommandEvent(command="q"))
    before = conversation.state

    # when the user writes, presses a button or sends another command
    typed = conversation.send(TextEvent(text="hello"))
    pressed = conversation.send(CallbackEvent(callback_id="c", data="1:main:0:x"))
    command = conversation.send(CommandEvent(command="help"))

    # then each is asked to wait and the wait goes on
    assert typed.actions == [
        SendMessage(text="Хвилинку, будь ласка…", parse_mode="HTML")
    ]
    assert pressed.actions == [
        AnswerCallback(callback_id="c", text="Хвилинку, будь ласка…")
    ]
    assert command.actions == typed.actions
    assert conversation.state == before


def test_start_abandons_a_pending_sql_node():
    conversation = _conversation()
    conversation.send(CommandEvent(command="q"))

    result = conversation.send(CommandEvent(command="start"))
    late = conversation.send(SqlResultEvent(node_id="query", rows=[]))

    assert texts(result) == ["Main"]
    assert conversation.state.pending_sql is None
    assert late.actions == []


def test_a_result_nobody_waits_for_is_ignored():
    conversation = _conversation()
    conversation.send(CommandEvent(command="q"))
    before = conversation.state

    result = conversation.send(SqlResultEvent(node_id="other", rows=[]))

    assert result.actions == []
    assert conversation.state == before


def test_a_menu_press_leading_through_sql_to_a_menu_edits_in_place():
    # given a menu whose button runs SQL and comes back to a menu
    query = {"type": "sql_exec.v1", "statement": "SELECT 1", "next": "main"}
    conversation = _conversation(query)
    menu = conversation.send(CommandEvent(command="start")).actions[0]
    data = menu.reply_markup["inline_keyboard"][0][0]["callback_data"]

    # when the button is pressed and the result comes back
    pressed = conversation.send(CallbackEvent(callback_id="c", data=data, message_id=3))
    result = conversation.send(SqlResultEvent(node_id="query", rows=[]))

    # then the pressed message is the one edited
    assert [action.kind for action in pressed.actions] == ["answer_callback", "run_sql"]
    assert [action.kind for action in result.actions] == ["edit_message"]
    assert result.actions[0].message_id == 3
    assert conversation.state.edit_target is None


def test_a_loop_of_sql_nodes_is_stopped():
    # given two SQL nodes that lead to each other
    ping = {"type": "sql_exec.v1", "statement": "SELECT 1", "next": "pong"}
    pong = {"type": "sql_exec.v1", "statement": "SELECT 2", "next": "ping"}
    conversation = _conversation(ping=ping, pong=pong)
    conversation.send(CommandEvent(command="start"))
    conversation.state.node = "ping"
    result = conversation.send(TextEvent(text="go"))

    # when the runtime keeps feeding results
    rounds = 0
    while any(isinstance(action, RunSql) for action in result.actions):
        node_id = result.actions[-1].node_id
        result = conversation.send(SqlResultEvent(node_id=node_id, rows=[]))
        rounds += 1

    # then the chain stops with an apology at the start node
    assert rounds == 25
    assert texts(result) == ["Вибачте, щось пішло не так. Почнімо спочатку.", "Main"]
    assert conversation.state.node == "main"
    assert [i.code for i in result.incidents] == ["runaway"]
