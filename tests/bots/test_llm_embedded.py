"""The llm.v1 node on the embedded default: SQLite, tasks in-process and the
built-in echo provider, through the terminal chat in a fresh interpreter."""

from pathlib import Path

from tests.embedded_support import embedded_env, manage


def _manage(env: dict[str, str], *args: str, stdin: str = "") -> str:
    result = manage(env, *args, stdin=stdin)
    assert result.returncode == 0, result.stderr

    return result.stdout


def test_the_terminal_chat_answers_an_ask_with_the_echo_provider(
    tmp_path: Path,
) -> None:
    # given the embedded default with no provider configured
    env = embedded_env(tmp_path)
    _manage(env, "migrate", "--no-input")
    _manage(env, "load_demo_bot")

    # when a user asks in English, then in Ukrainian, and keeps chatting
    english = _manage(
        env,
        "chat",
        "demo",
        "--user-id",
        "5",
        stdin="/ask\nIs espresso strong?\n/help\n",
    )
    ukrainian = _manage(
        env,
        "chat",
        "demo",
        "--locale",
        "uk",
        "--user-id",
        "6",
        stdin="/ask\nЧи міцне еспресо?\n",
    )

    # then the thinking message is shown and then replaced by the answer
    assert english.splitlines()[:6] == [
        "you: /ask",
        "bot: What would you like to ask the barista?",
        "  [#1] ✖ Cancel",
        "you: Is espresso strong?",
        "bot: Let me think…",
        "bot: (edited) Echo: Is espresso strong?",
    ]
    assert english.splitlines()[6:8] == [
        "you: /help",
        "bot: I take drink orders for the café.",
    ]
    assert english.splitlines()[-1] == "chat ended after 3 messages"
    assert ukrainian.splitlines()[3:] == [
        "you: Чи міцне еспресо?",
        "bot: Хвилинку, думаю…",
        "bot: (edited) Echo: Чи міцне еспресо?",
        "chat ended after 2 messages",
    ]
