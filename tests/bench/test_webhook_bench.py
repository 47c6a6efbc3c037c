"""The webhook benchmark's pure parts, and its Lua flow against the executor.

The benchmark itself starts a whole stack; it is run with
``make bench-webhook``, never by the suite. Here wrk plays the flow for a
second against a loopback server that records the updates, and the demo
spec replays them through the executor, as the runtime would.
"""

import json
import shutil
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bench.webhook_bench import LUA_SCRIPT, unanswered_redeliver
from bench.webhook_report import (
    CHAT_ID_BASE,
    ChatExpectation,
    Correctness,
    LagResult,
    RunResult,
    UnansweredRequest,
    call_describe,
    chat_of_callback,
    chat_of_update,
    chats_over_replied,
    correctness_count,
    lags_match,
    markdown_render,
    medians_render,
    menu_tokens,
    ratio,
    results_write,
    target_medians,
    wrk_output_parse,
)
from dsl import (
    AnswerCallback,
    CallbackEvent,
    CommandEvent,
    ConversationState,
    EditMessage,
    ExecutionContext,
    RunSql,
    SendMessage,
    SqlResultEvent,
    TextEvent,
    execute,
)
from tests.dsl.test_demo_flow import SPEC, DemoTranslator

WRK_LINE = (
    'BENCH_JSON {"requests":1200,"duration_us":2000000,"bytes":5,'
    '"errors":{"connect":1,"read":2,"write":0,"status":3,"timeout":4},'
    '"latency_us":{"p50":1500,"p95":4250,"p99":9000,"mean":1800.5,"max":12000},'
    '"threads":[{"chats":[[700000000,11,10,9,15,7,17,8]],"statuses":{"200":9,'
    '"503":3},"resent":3,"flight":{"path":"/telegram/11/webhook",'
    '"body":"{\\u0022update_id\\u0022:9}"}},'
    '{"chats":[[700000001,12,4,4,6,3,-1,-1]],'
    '"statuses":{"200":4},"resent":0,"flight":null}]}'
)


def _chat(**changes: int) -> ChatExpectation:
    values = {
        "chat_id": 700000005,
        "bot_id": 11,
        "sent": 10,
        "accepted": 10,
        "calls": 16,
        "generation": 9,
        "flight_calls": -1,
        "flight_generation": -1,
    }
    values.update(changes)

    return ChatExpectation(**values)


def _run(target: str, rps: float, **changes: Any) -> RunResult:
    values: dict[str, Any] = {
        "target": target,
        "round": 1,
        "connections": 32,
        "requests_per_second": rps,
        "latency_ms": {"p50": 2.0, "p95": 5.0, "p99": 9.0},
        "non_2xx": 0,
        "socket_errors": 0,
        "resent": 0,
        "cpu_seconds": {"gunicorn": 10.0, "postgres": 2.5},
    }
    values.update(changes)

    return RunResult(**values)


# Parsing wrk's output


def test_wrk_output_parse_reads_the_script_line_among_wrk_output():
    stdout = f"Running 2s test @ http://127.0.0.1:1\n{WRK_LINE}\nRequests/sec: 600\n"

    result = wrk_output_parse(stdout)

    assert result.requests == 1200
    assert result.duration_s == 2.0
    assert result.requests_per_second == 600.0
    assert result.latency_ms == {
        "p50": 1.5,
        "p95": 4.25,
        "p99": 9.0,
        "mean": 1.8,
        "max": 12.0,
    }
    assert result.statuses == {"200": 13, "503": 3}
    assert result.non_2xx == 3
    assert result.socket_errors == 7
    assert result.resent == 3
    assert result.chats == [
        ChatExpectation(700000000, 11, 10, 9, 15, 7, 17, 8),
        ChatExpectation(700000001, 12, 4, 4, 6, 3, -1, -1),
    ]
    assert result.unanswered == [
        UnansweredRequest(path="/telegram/11/webhook", body='{"update_id":9}')
    ]


def test_wrk_output_parse_refuses_output_without_the_script_line():
    with pytest.raises(ValueError, match="no benchmark line"):
        wrk_output_parse("Running 2s test\nRequests/sec: 600\n")


# The correctness check


def test_correctness_count_passes_when_everything_is_there():
    result = correctness_count(
        [_chat()],
        processed={700000005: 10},
        generations={700000005: 9},
        calls={700000005: 16},
    )

    assert result == Correctness(accepted=10)
    assert result.passed


def test_correctness_count_takes_the_update_in_flight_either_way():
    chat = _chat(sent=11, flight_calls=18, flight_generation=10)

    taken = correctness_count(
        [chat],
        processed={700000005: 11},
        generations={700000005: 10},
        calls={700000005: 18},
    )
    not_taken = correctness_count(
        [chat],
        processed={700000005: 10},
        generations={700000005: 9},
        calls={700000005: 16},
    )

    assert taken == Correctness(accepted=10)
    assert not_taken == Correctness(accepted=10)


def test_correctness_count_counts_lost_and_repeated_work():
    chats = [_chat(), _chat(chat_id=700000006), _chat(chat_id=700000007)]

    result = correctness_count(
        chats,
        processed={700000005: 8, 700000006: 10, 700000007: 12},
        generations={700000005: 9, 700000006: 8, 700000007: 9},
        calls={700000005: 14, 700000006: 19, 700000007: 16},
    )

    assert result == Correctness(
        accepted=30,
        missing_updates=2,
        unexpected_updates=2,
        wrong_states=1,
        missing_replies=2,
        duplicate_replies=3,
    )
    assert not result.passed


def test_correctness_count_without_state_checks_only_replies():
    result = correctness_count(
        [_chat()], processed={700000005: 10}, generations=None, calls={}
    )

    assert result == Correctness(accepted=10, missing_replies=16)


def test_chats_over_replied_names_the_chats_with_more_calls_than_expected():
    # Given one chat that got what it should, one with two calls too many,
    # and one whose update in flight was processed and answered
    chats = [
        _chat(chat_id=700000007),
        _chat(chat_id=700000006),
        _chat(sent=11, flight_calls=18, flight_generation=10),
    ]

    # When the chats are checked against the calls found
    over = chats_over_replied(
        chats,
        processed={700000005: 11, 700000006: 10, 700000007: 10},
        calls={700000005: 18, 700000006: 16, 700000007: 18},
    )

    # Then only the chat with extra calls is named, with what it expected
    assert over == [(_chat(chat_id=700000007), 16)]


def test_chats_over_replied_keeps_the_first_chats_up_to_the_limit():
    chats = [_chat(chat_id=700000000 + n) for n in range(5, 0, -1)]

    over = chats_over_replied(
        chats,
        processed={chat.chat_id: 10 for chat in chats},
        calls={chat.chat_id: 17 for chat in chats},
        limit=2,
    )

    assert over == [(_chat(chat_id=700000001), 16), (_chat(chat_id=700000002), 16)]


def test_call_describe_keeps_what_tells_calls_apart():
    send = {
        "method": "sendMessage",
        "token": "1:secret",
        "status": 200,
        "at": 1700000000.25,
        "params": {
            "chat_id": 700000005,
            "text": "What would you like to drink? Pick one below, please.",
            "reply_markup": json.dumps(
                {
                    "inline_keyboard": [
                        [{"text": "Latte", "callback_data": "3:order:0:olatte"}],
                        [{"text": "Tea", "callback_data": "3:order:0:otea"}],
                    ]
                }
            ),
        },
    }
    answer = {
        "method": "answerCallbackQuery",
        "token": "1:secret",
        "status": 200,
        "at": 1700000000.5,
        "params": {"callback_query_id": "700000005:12"},
    }

    assert call_describe(send) == {
        "method": "sendMessage",
        "status": 200,
        "at": 1700000000.25,
        "text": "What would you like to drink? Pick one b",
        "buttons": ["3:order:0:olatte", "3:order:0:otea"],
    }
    assert call_describe(answer) == {
        "method": "answerCallbackQuery",
        "status": 200,
        "at": 1700000000.5,
        "callback_query_id": "700000005:12",
    }


def test_ids_lead_back_to_their_chat():
    assert chat_of_update(37 * 100_000 + 12) == CHAT_ID_BASE + 37
    assert chat_of_callback("700000037:12") == 700000037
    assert chat_of_callback("not-ours") is None


# Delivery lag


def test_lags_match_pairs_rows_and_calls_per_chat_and_method_in_order():
    outbox = [
        (1, "answerCallbackQuery", 10.0),
        (1, "sendMessage", 10.0),
        (1, "sendMessage", 11.0),
        (2, "sendMessage", 20.0),
    ]
    calls = [
        (1, "answerCallbackQuery", 10.05),
        (1, "sendMessage", 10.1),
        (2, "sendMessage", 20.5),
        (2, "sendMessage", 20.6),
        (1, "sendMessage", 11.25),
    ]

    lags, unmatched = lags_match(outbox, calls)

    assert [round(lag, 3) for lag in lags] == [50.0, 100.0, 250.0]
    assert unmatched == 1


def test_lag_summary_gives_percentiles_of_the_lags():
    lag = LagResult(
        rate=300.0,
        achieved_rate=298.44,
        updates=6000,
        lags_ms=[float(n) for n in range(1, 101)],
        unmatched=2,
    )

    assert lag.summary() == {
        "rate": 300.0,
        "achieved_rate": 298.4,
        "updates": 6000,
        "replies": 100,
        "unmatched": 2,
        "p50_ms": 50.0,
        "p95_ms": 95.0,
        "p99_ms": 99.0,
        "max_ms": 100.0,
    }


# Medians, ratios, the report


def test_target_medians_and_ratios_come_from_every_round():
    runs = [
        _run("ceiling", 3000.0),
        _run("botfactory", 600.0, requests=2500),
        _run("aiogram", 1200.0),
        _run("ceiling", 3300.0, round=2),
        _run("botfactory", 660.0, round=2),
        _run("aiogram", 1000.0, round=2),
        _run("ceiling", 2700.0, round=3),
        _run("botfactory", 500.0, round=3),
        _run("aiogram", 1100.0, round=3),
    ]

    medians = target_medians(runs)

    assert medians["ceiling"]["requests_per_second"] == 3000.0
    assert medians["botfactory"]["requests_per_second"] == 600.0
    assert medians["aiogram"]["requests_per_second"] == 1100.0
    assert medians["botfactory"]["server_cpu_s"] == 12.5
    # Only the run that counted its requests gives a cost per update.
    assert medians["botfactory"]["cpu_ms_per_request"] == 5.0
    assert medians["aiogram"]["cpu_ms_per_request"] is None
    assert ratio(600.0, 3000.0) == 0.2
    assert ratio(600.0, None) is None
    assert ratio(None, 3000.0) is None
    assert "BotFactory / ceiling: 0.200; BotFactory / aiogram: 0.545" in (
        medians_render(runs)
    )


def test_report_marks_a_run_that_lost_work_as_failed(tmp_path: Path):
    runs = [
        _run("ceiling", 3000.0),
        _run(
            "botfactory",
            600.0,
            correctness={"accepted": 90, "missing_replies": 3, "drain_ms": 800},
            passed=False,
            loadavg_before=1.25,
            loadavg_after=3.5,
            workers_rss_mb={"before": [98.5, 120.0], "after": [99.0, 131.4]},
        ),
    ]
    workload = {
        "connections": 32,
        "seconds": 20,
        "rounds": 1,
        "chats_per_connection": 64,
        "bots": 100,
        "web_workers": 5,
        "generator_core": 1,
    }

    medians = results_write(
        runs, None, command="make bench-webhook", workload=workload, directory=tmp_path
    )

    document = json.loads((tmp_path / "webhook.json").read_text())
    note = (tmp_path / "webhook.md").read_text()
    assert document["ratios"] == {
        "botfactory_to_ceiling": 0.2,
        "botfactory_to_aiogram": None,
    }
    assert [run["passed"] for run in document["runs"]] == [True, False]
    assert "| botfactory | 1 | 600 |" in note
    assert "| 1.2 / 3.5 |" in note
    assert "| 120 → 131 | **FAILED** missing_replies 3 |" in note
    assert "1 run(s) lost or repeated work" in note
    assert medians in note
    assert markdown_render(
        runs, None, command="x", when="now", cores=2, workload=workload
    ).startswith("# Webhook benchmark\n\n`x` on now, 2 cores")


# The Lua flow against the runtime's executor


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server: Any = self.server
        with server.lock:
            server.seen += 1
            refused = server.fail_every and server.seen % server.fail_every == 0
            if refused:
                server.refused += 1
            else:
                server.updates.append((self.path, json.loads(body)))
        status = b"503 Service Unavailable" if refused else b"200 OK"
        self.wfile.write(
            b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
            b'Content-Length: 11\r\n\r\n{"ok":true}'
        )

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(params=[0, 7], ids=["all-accepted", "every-7th-refused"])
def recording_server(request: pytest.FixtureRequest) -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.updates = []
    server.lock = threading.Lock()
    server.seen = 0
    server.refused = 0
    # Every n-th call is answered 503 and forgotten, as by a server that
    # did not take it.
    server.fail_every = request.param
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _event(update: dict[str, Any]) -> Any:
    if "callback_query" in update:
        query = update["callback_query"]
        return CallbackEvent(
            callback_id=query["id"],
            data=query["data"],
            message_id=query["message"]["message_id"],
        )
    text = update["message"]["text"]
    if text.startswith("/"):
        return CommandEvent(command=text[1:])

    return TextEvent(text=text)


def _buttons(action: Any) -> set[str]:
    markup = getattr(action, "reply_markup", None) or {}

    return {
        button["callback_data"]
        for row in markup.get("inline_keyboard", [])
        for button in row
        if "callback_data" in button
    }


class _Replay:
    """One chat run through the demo spec as the runtime runs it."""

    def __init__(self, chat_id: int) -> None:
        self.ctx = ExecutionContext(
            translator=DemoTranslator("en"),
            locale="en",
            chat_type="private",
            user_id=chat_id,
            chat_id=chat_id,
            user_first_name="Guest",
        )
        self.state = ConversationState.initial()
        self.calls = 0
        self.shown: set[str] = set()

    def send(self, event: Any) -> list[Any]:
        actions = []
        while True:
            result = execute(SPEC, self.state, event, self.ctx)
            self.state = result.state
            actions += [a for a in result.actions if not isinstance(a, RunSql)]
            pending = [a for a in result.actions if isinstance(a, RunSql)]
            if not pending:
                break
            event = SqlResultEvent(node_id=pending[0].node_id, rows=[])
        self.calls += sum(
            isinstance(a, (SendMessage, EditMessage, AnswerCallback)) for a in actions
        )
        for action in actions:
            self.shown |= _buttons(action)

        return actions


def test_lua_flow_presses_buttons_the_runtime_sent(recording_server):
    # Given wrk playing two chats on each of two connections for a second,
    # paced to 240 updates a second
    assert shutil.which("wrk"), "wrk is missing: make deps installs it"
    port = recording_server.server_address[1]
    done = subprocess.run(
        [
            "wrk",
            *("-t", "2", "-c", "2", "-d", "1s"),
            *("-s", str(LUA_SCRIPT)),
            f"http://127.0.0.1:{port}",
            "--",
            "11,12,13",
            "40",
            "2",
            *menu_tokens(),
        ],
        # Paced, so that a second holds a few rounds of the flow per chat.
        env={
            "BENCH_SECRET": "s",
            "BENCH_PACE_RPS": "240",
            "BENCH_CONNECTIONS": "2",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = wrk_output_parse(done.stdout)
    report = {chat.chat_id: chat for chat in result.chats}
    # A refused update is sent again, as Telegram does, and only then
    # does the chat move on; when wrk stops, each of the two connections
    # may hold a refusal not yet read, or read and not yet sent again.
    refused = recording_server.refused
    read = result.statuses.get("503", 0)
    assert (refused > 0) == bool(recording_server.fail_every)
    assert refused - 2 <= read <= refused
    assert read - 2 <= result.resent <= read
    assert recording_server.seen <= 240 * result.duration_s * 1.1 + 2

    # When the recorded updates are replayed through the executor
    by_chat: dict[int, list[tuple[str, dict[str, Any]]]] = {}
    for path, update in recording_server.updates:
        body = update.get("message") or update["callback_query"]["message"]
        by_chat.setdefault(body["chat"]["id"], []).append((path, update))
    kinds: Counter[str] = Counter()
    for chat_id, updates in by_chat.items():
        replay = _Replay(chat_id)
        for number, (path, update) in enumerate(updates):
            event = _event(update)
            if isinstance(event, CallbackEvent):
                # Then every press answers a button the runtime really sent
                assert event.data in replay.shown, (chat_id, number, event.data)
            actions = replay.send(event)
            answers = [a for a in actions if isinstance(a, AnswerCallback)]
            assert all(answer.text is None for answer in answers), (chat_id, number)
            if number < 41:
                kinds[type(event).__name__] += 1
                if isinstance(event, TextEvent) and event.text == "lots":
                    kinds["invalid"] += 1
            index = chat_id - CHAT_ID_BASE
            assert path == f"/telegram/{(11, 12, 13)[index % 3]}/webhook"
            assert update["update_id"] == index * 100_000 + number

        # And the script predicts the state and the calls the runtime made
        chat = report[chat_id]
        assert chat.chat_id == chat_id
        if len(updates) == chat.accepted + 1:
            assert (replay.calls, replay.state.generation) == (
                chat.flight_calls,
                chat.flight_generation,
            )
        else:
            assert len(updates) == chat.accepted
            assert (replay.calls, replay.state.generation) == (
                chat.calls,
                chat.generation,
            )
        assert chat.accepted > 41

    # And the update each connection left unanswered is reported, as it
    # was sent: the last one of a chat whose next update was never read
    unanswered = {
        json.loads(request.body)["update_id"]: request for request in result.unanswered
    }
    in_flight = [chat for chat in result.chats if chat.flight_calls >= 0]
    assert len(unanswered) == len(result.unanswered) == len(in_flight) <= 2
    for chat in in_flight:
        index = chat.chat_id - CHAT_ID_BASE
        request = unanswered[index * 100_000 + chat.sent - 1]
        assert request.path == f"/telegram/{(11, 12, 13)[index % 3]}/webhook"
        if len(by_chat[chat.chat_id]) == chat.sent:
            assert json.loads(request.body) == by_chat[chat.chat_id][-1][1]

    # And the first four rounds of each chat hold the announced mix
    assert sorted(by_chat) == [CHAT_ID_BASE + n for n in range(40, 44)]
    assert kinds == {
        "CommandEvent": 4 * 8,
        "CallbackEvent": 4 * 20,
        "TextEvent": 4 * 13,
        "invalid": 4,
    }


# Re-delivering the updates left unanswered


class _Refuser(BaseHTTPRequestHandler):
    """Answers 503 to the first ``refuse`` webhook posts, then 200."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server: Any = self.server
        secret = self.headers["X-Telegram-Bot-Api-Secret-Token"]
        server.posts.append((self.path, body.decode(), secret))
        refused = len(server.posts) <= server.refuse
        self.send_response(503 if refused else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def refusing_server() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Refuser)
    server.posts = []
    server.refuse = 2
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_unanswered_redeliver_sends_each_update_again_until_it_is_answered(
    refusing_server,
):
    # Given two updates left unanswered, and a server that refuses twice
    url = f"http://127.0.0.1:{refusing_server.server_address[1]}"
    requests = [
        UnansweredRequest(path="/telegram/11/webhook", body='{"update_id":4}'),
        UnansweredRequest(path="/telegram/12/webhook", body='{"update_id":7}'),
    ]

    # When they are re-delivered
    deliveries = unanswered_redeliver(url=url, secret="s3", requests=requests)

    # Then the first went until it was taken, the second once, both as sent
    assert deliveries == 4
    assert refusing_server.posts == [
        ("/telegram/11/webhook", '{"update_id":4}', "s3"),
        ("/telegram/11/webhook", '{"update_id":4}', "s3"),
        ("/telegram/11/webhook", '{"update_id":4}', "s3"),
        ("/telegram/12/webhook", '{"update_id":7}', "s3"),
    ]


def test_unanswered_redeliver_gives_up_on_an_update_refused_for_too_long(
    refusing_server,
):
    refusing_server.refuse = 1_000_000
    url = f"http://127.0.0.1:{refusing_server.server_address[1]}"
    request = UnansweredRequest(path="/telegram/11/webhook", body="{}")

    with pytest.raises(RuntimeError, match="still refused \\(503\\)"):
        unanswered_redeliver(url=url, secret="s", requests=[request], within=0.2)

    assert 1 <= len(refusing_server.posts) <= 3
