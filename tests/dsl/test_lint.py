from dsl import LintIssue, spec_lint
from tests.dsl.support import spec_of

MENU = {
    "type": "menu.v1",
    "text": "main.text",
    "rows": [[{"label": "go", "goto": "reply"}]],
}
REPLY = {"type": "reply_template.v1", "template": "{{ t('reply.text') }}"}


def _lint(nodes, translation_keys=None, **top):
    return spec_lint(
        spec_of({"main": MENU, "reply": REPLY, **nodes}, **top),
        translation_keys=translation_keys,
    )


def test_a_clean_spec_has_no_issues():
    keys = {"en": {"main.text", "go", "reply.text"}}

    assert _lint({}, keys) == []


def test_references_to_missing_nodes_are_errors():
    menu = {
        **MENU,
        "rows": [
            [{"label": "go", "goto": "reply"}, {"label": "go", "goto": "nowhere"}]
        ],
    }

    issues = spec_lint(
        spec_of(
            {"main": menu, "reply": REPLY},
            commands={"help": {"node": "gone"}},
            deep_links=[{"prefix": "x", "node": "lost"}],
        )
    )

    assert issues == [
        LintIssue(
            "commands.help.node", "There is no node 'gone'.", "unknown_node", "error"
        ),
        LintIssue(
            "deep_links[0].node", "There is no node 'lost'.", "unknown_node", "error"
        ),
        LintIssue(
            "nodes.main.rows[0][1].goto",
            "There is no node 'nowhere'.",
            "unknown_node",
            "error",
        ),
    ]


def test_unreachable_nodes_are_warnings():
    issues = _lint({"island": REPLY})

    assert issues == [
        LintIssue(
            "nodes.island",
            "No command, link or node leads here.",
            "unreachable_node",
            "warning",
        )
    ]


def test_translations_missing_in_any_locale_are_warnings():
    # given keys present in English only, and a built-in key used by a button
    menu = {
        **MENU,
        "rows": [
            [{"label": "go", "goto": "reply"}, {"label": "bf.cancel", "goto": "main"}]
        ],
    }
    keys = {
        "en": {"main.text", "go", "reply.text", "cmd.help"},
        "uk": {"main.text"},
        "de": set(),
    }

    # when linted
    issues = spec_lint(
        spec_of(
            {"main": menu, "reply": REPLY},
            locales=["en", "uk", "de"],
            commands={"help": {"node": "reply", "description": "cmd.help"}},
        ),
        translation_keys=keys,
    )

    # then each use of a missing key is reported with the locales missing it;
    # the built-in key is missing only where no built-in text exists either
    assert issues == [
        LintIssue(
            "commands.help.description",
            "The translation 'cmd.help' is missing in: de, uk.",
            "missing_translation",
            "warning",
        ),
        LintIssue(
            "nodes.main.rows[0][0].label",
            "The translation 'go' is missing in: de, uk.",
            "missing_translation",
            "warning",
        ),
        LintIssue(
            "nodes.main.text",
            "The translation 'main.text' is missing in: de.",
            "missing_translation",
            "warning",
        ),
        LintIssue(
            "nodes.reply.template",
            "The translation 'reply.text' is missing in: de, uk.",
            "missing_translation",
            "warning",
        ),
    ]


def test_callback_data_that_can_exceed_64_bytes_is_an_error():
    # given a choice whose value fits in a private chat (61 bytes) but not
    # with the owner tag its button carries in a group
    wizard = {
        "type": "wizard.v1",
        "steps": [
            {
                "name": "x",
                "type": "choice",
                "prompt": "p",
                "options": [
                    {"value": "short", "label": "a"},
                    {"value": "v" * 25, "label": "b"},
                ],
            }
        ],
        "next": "main",
    }
    node_id = "a_rather_long_wizard_node"

    # when linted
    issues = _lint({node_id: wizard}, commands={"w": {"node": node_id}})

    # then the long one is reported with its worst-case size
    assert issues == [
        LintIssue(
            f"nodes.{node_id}.steps[0].options[1].value",
            "This button's callback data can reach 66 bytes; Telegram allows 64. "
            "Shorten the node id or the value.",
            "callback_data_too_long",
            "error",
        )
    ]


def test_template_text_longer_than_any_output_is_an_error():
    long_reply = {"type": "reply_template.v1", "template": "x" * 17000}

    issues = _lint({"reply": long_reply})

    assert issues == [
        LintIssue(
            "nodes.reply.template",
            "The template's own text is 17000 characters; its output cannot "
            "exceed 16384.",
            "text_too_long",
            "error",
        )
    ]


def test_a_keyboard_over_telegram_limit_is_an_error():
    row = [{"label": "go", "goto": "reply"}] * 8
    big = {"type": "menu.v1", "text": "main.text", "rows": [row] * 13}
    paged = {**big, "page_size": 5}

    issues = _lint({"main": big, "paged": paged}, commands={"p": {"node": "paged"}})

    assert issues == [
        LintIssue(
            "nodes.main.rows",
            "A page can show 104 buttons; Telegram allows 100. "
            "Set a smaller page_size.",
            "keyboard_too_large",
            "error",
        )
    ]


def test_sql_parameters_nothing_provides_are_warnings():
    # given SQL using built-ins, a step's answer, a button's variable and an
    # unknown name
    menu = {**MENU, "rows": [[{"label": "go", "goto": "ask", "set": {"kind": "x"}}]]}
    ask = {
        "type": "wizard.v1",
        "steps": [{"name": "qty", "type": "integer", "prompt": "p"}],
        "next": "save",
    }
    save = {
        "type": "sql_exec.v1",
        "statement": "INSERT INTO t "
        "VALUES (:user_id, :chat_id, :locale, :qty, :kind, :colour)",
        "mode": "write",
        "next": "main",
    }

    # when linted
    issues = _lint({"main": menu, "ask": ask, "save": save, "reply": REPLY})

    # then only the unknown one is reported
    assert issues == [
        LintIssue(
            "nodes.reply",
            "No command, link or node leads here.",
            "unreachable_node",
            "warning",
        ),
        LintIssue(
            "nodes.save.statement",
            "No step, button or built-in sets :colour; it will be NULL.",
            "unprovided_parameter",
            "warning",
        ),
    ]


def test_cycles_of_nodes_that_never_wait_are_errors():
    # given SQL and reply nodes leading to each other, and a waiting node in
    # another cycle
    ping = {"type": "sql_exec.v1", "statement": "SELECT 1", "next": "pong"}
    pong = {"type": "reply_template.v1", "template": "x", "next": "ping"}
    self_loop = {"type": "reply_template.v1", "template": "y", "next": "again"}
    menu = {
        **MENU,
        "rows": [[{"label": "go", "goto": "ping"}, {"label": "go", "goto": "again"}]],
    }
    reply_to_menu = {"type": "reply_template.v1", "template": "z", "next": "main"}

    # when linted
    issues = _lint(
        {
            "main": menu,
            "ping": ping,
            "pong": pong,
            "again": self_loop,
            "reply": reply_to_menu,
        }
    )

    # then each loop is reported once, the one through the menu is fine
    assert issues == [
        LintIssue(
            "nodes.again",
            "Nodes again → again never wait for input: the conversation would loop.",
            "loop_without_input",
            "error",
        ),
        LintIssue(
            "nodes.ping",
            "Nodes ping → pong → ping never wait for input: "
            "the conversation would loop.",
            "loop_without_input",
            "error",
        ),
        LintIssue(
            "nodes.reply",
            "No command, link or node leads here.",
            "unreachable_node",
            "warning",
        ),
    ]


def test_translations_longer_than_a_telegram_message_are_warnings():
    # given a reply text of 4096 characters in English and 4097 in Ukrainian
    lengths = {"en": {"main.text": 10, "reply.text": 4096}, "uk": {"reply.text": 4097}}

    # when linted
    issues = spec_lint(
        spec_of({"main": MENU, "reply": REPLY}, locales=["en", "uk"]),
        translation_lengths=lengths,
    )

    # then only the text over the limit is reported, with its locale
    assert [(issue.code, issue.severity) for issue in issues] == [
        ("text_too_long", "warning")
    ]
    assert issues[0].message == (
        "The translation 'reply.text' is longer than Telegram's 4096 characters "
        "in: uk; it will be sent as several messages."
    )
