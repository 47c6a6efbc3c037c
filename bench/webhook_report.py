"""The webhook benchmark's parsing, statistics, checks and report, without
I/O beyond writing the results."""

import json
import os
import statistics
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.llm_report import RESULTS_DIR, percentile
from dsl.callback import button_token
from dsl.components.menu import MenuNode
from dsl.spec import spec_validate

# What each target promises about an update it answered 200, printed beside
# its numbers.
GUARANTEES = {
    "ceiling": "nothing: parses the JSON and answers 200",
    "botfactory": "state, dedup and replies committed in PostgreSQL before "
    "the 200; replies sent at least once from the outbox, within Telegram's "
    "limits",
    "aiogram": "handles the update before the 200; FSM state and orders in "
    "Redis; no dedup (a re-delivery is handled again); replies sent once "
    "from the handler, lost if a call fails or the process dies",
}
TARGETS = ("ceiling", "botfactory", "aiogram")
DEMO_SPEC = Path(__file__).resolve().parents[1] / "bots" / "demo" / "spec.json"
# The main menu's buttons the flow presses, in the script's argument order.
MENU_BUTTONS = ("order", "my_orders", "help")
# Where the Lua script prints its JSON line.
JSON_MARK = "BENCH_JSON "
# Chat ids and update ids as bench/webhook_flow.lua builds them.
CHAT_ID_BASE = 700_000_000
UPDATES_PER_CHAT = 100_000


def menu_tokens(spec_path: Path = DEMO_SPEC) -> list[str]:
    """Return the callback tokens of the demo main menu's order, orders and
    help buttons, as the runtime computes them from the spec.

    Raise KeyError when the menu has no button going to one of them.
    """
    spec = spec_validate(json.loads(spec_path.read_text(encoding="utf-8")))
    menu = spec.nodes[spec.start]
    if not isinstance(menu, MenuNode):
        raise KeyError(spec.start)
    by_target = {
        button.goto: button_token(button.model_dump(mode="json"))
        for row in menu.rows
        for button in row
        if button.goto is not None
    }

    return [by_target[target] for target in MENU_BUTTONS]


@dataclass(frozen=True)
class ChatExpectation:
    """What one chat of the generator should have left behind."""

    chat_id: int
    bot_id: int
    sent: int
    accepted: int
    calls: int
    generation: int
    # The same if the update in flight when wrk stopped was processed.
    flight_calls: int
    flight_generation: int


@dataclass(frozen=True)
class UnansweredRequest:
    """A webhook request that had no 200 when the generator stopped."""

    path: str
    body: str


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    errors: dict[str, int]
    latency_ms: dict[str, float]
    statuses: dict[str, int]
    resent: int
    chats: list[ChatExpectation]
    # At most one per connection. The target may take such an update after
    # wrk has stopped: until it answers a re-delivery, what it left behind
    # can still change.
    unanswered: list[UnansweredRequest] = field(default_factory=list)

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def non_2xx(self) -> int:
        return sum(count for status, count in self.statuses.items() if status[0] != "2")

    @property
    def socket_errors(self) -> int:
        return sum(
            self.errors.get(kind, 0) for kind in ("connect", "read", "write", "timeout")
        )


def wrk_output_parse(stdout: str) -> WrkResult:
    """Read the JSON line the Lua script's done() printed among wrk's output.

    Raise ValueError when there is none.
    """
    lines = [line for line in stdout.splitlines() if line.startswith(JSON_MARK)]
    if not lines:
        raise ValueError("wrk printed no benchmark line; did the script fail?")
    document = json.loads(lines[-1].removeprefix(JSON_MARK))

    statuses: dict[str, int] = {}
    resent = 0
    chats = []
    unanswered = []
    for thread in document["threads"]:
        for status, count in thread["statuses"].items():
            statuses[status] = statuses.get(status, 0) + int(count)
        resent += int(thread["resent"])
        chats += [ChatExpectation(*row) for row in thread["chats"]]
        if thread["flight"] is not None:
            unanswered.append(UnansweredRequest(**thread["flight"]))
    latency = document["latency_us"]

    return WrkResult(
        requests=int(document["requests"]),
        duration_s=document["duration_us"] / 1e6,
        errors={key: int(value) for key, value in document["errors"].items()},
        latency_ms={key: round(latency[key] / 1000, 2) for key in latency},
        statuses=statuses,
        resent=resent,
        chats=chats,
        unanswered=unanswered,
    )


@dataclass
class Correctness:
    """Accepted updates checked against what the runtime left behind."""

    accepted: int = 0
    missing_updates: int = 0
    unexpected_updates: int = 0
    wrong_states: int = 0
    missing_replies: int = 0
    duplicate_replies: int = 0

    @property
    def passed(self) -> bool:
        return not (
            self.missing_updates
            or self.unexpected_updates
            or self.wrong_states
            or self.missing_replies
            or self.duplicate_replies
        )


def _took_flight(chat: ChatExpectation, rows: int) -> bool:
    return chat.flight_calls >= 0 and rows == chat.accepted + 1


def _expected(chat: ChatExpectation, rows: int) -> tuple[int, int]:
    """Return the calls and generation the chat should show, given that the
    target left ``rows`` processed updates for it."""
    if _took_flight(chat, rows):
        return chat.flight_calls, chat.flight_generation

    return chat.calls, chat.generation


def correctness_count(
    chats: list[ChatExpectation],
    *,
    processed: dict[int, int],
    generations: dict[int, int] | None,
    calls: dict[int, int],
) -> Correctness:
    """Compare each chat's expectation with what was found for it.

    ``processed``: processed-update rows per chat id; ``generations``: the
    conversation's generation per chat id (None where the target keeps no
    state to read); ``calls``: Bot API calls the fake received per chat id.
    The update in flight when the generator stopped may or may not have been
    processed; either is right if the rest agrees with it.
    """
    result = Correctness()
    for chat in chats:
        result.accepted += chat.accepted
        rows = processed.get(chat.chat_id, 0)
        expected_calls, expected_generation = _expected(chat, rows)
        if not _took_flight(chat, rows):
            result.missing_updates += max(chat.accepted - rows, 0)
            result.unexpected_updates += max(rows - chat.accepted, 0)

        got = calls.get(chat.chat_id, 0)
        result.missing_replies += max(expected_calls - got, 0)
        result.duplicate_replies += max(got - expected_calls, 0)
        touched = chat.accepted + rows > 0
        if generations is not None and touched:
            result.wrong_states += generations.get(chat.chat_id) != expected_generation

    return result


def chat_of_update(update_id: int) -> int:
    """Return the chat id whose updates carry ``update_id``."""
    return CHAT_ID_BASE + update_id // UPDATES_PER_CHAT


def chat_of_callback(callback_query_id: str) -> int | None:
    """Return the chat id in a callback query id of the generator's."""
    head, _, _ = callback_query_id.partition(":")

    return int(head) if head.isdigit() else None


def lags_match(
    outbox: list[tuple[int, str, float]], calls: list[tuple[int, str, float]]
) -> tuple[list[float], int]:
    """Pair each outbox row with the call the fake received for it.

    ``outbox``: (chat id, method, time its update was accepted) in outbox
    order; ``calls``: (chat id, method, time the fake got it) in arrival
    order. Rows of one chat and method are sent in order, so the n-th row
    pairs with the n-th call. Return the lags in milliseconds and the rows
    of chats whose counts differ, which are left out.
    """
    rows: dict[tuple[int, str], list[float]] = {}
    for chat_id, method, accepted_at in outbox:
        rows.setdefault((chat_id, method), []).append(accepted_at)
    received: dict[tuple[int, str], list[float]] = {}
    for chat_id, method, at in calls:
        received.setdefault((chat_id, method), []).append(at)

    lags: list[float] = []
    unmatched = 0
    for key, accepted in rows.items():
        arrived = received.get(key, [])
        if len(arrived) != len(accepted):
            unmatched += len(accepted)
            continue
        lags += [(at - when) * 1000 for when, at in zip(accepted, arrived, strict=True)]

    return lags, unmatched


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None

    return round(numerator / denominator, 3)


@dataclass
class RunResult:
    """One run of the generator against one target."""

    target: str
    round: int
    connections: int
    requests_per_second: float
    latency_ms: dict[str, float]
    non_2xx: int
    socket_errors: int
    resent: int
    cpu_seconds: dict[str, float]
    correctness: dict[str, int] | None = None
    passed: bool = True
    # One-minute load averages: what else ran shows here.
    loadavg_before: float = 0.0
    loadavg_after: float = 0.0
    # Resident memory of each web worker before and after the run.
    workers_rss_mb: dict[str, list[float]] = field(default_factory=dict)
    requests: int = 0
    # Chats that got more Bot API calls than expected: what the fake API
    # received for each, and its outbox rows (see webhook_bench).
    over_replied: list[dict[str, Any]] = field(default_factory=list)

    @property
    def cpu_ms_per_request(self) -> float | None:
        if not self.requests:
            return None

        return 1000 * sum(self.cpu_seconds.values()) / self.requests


@dataclass
class LagResult:
    rate: float
    achieved_rate: float
    updates: int
    lags_ms: list[float] = field(default_factory=list)
    unmatched: int = 0

    def summary(self) -> dict[str, Any]:
        lags = self.lags_ms
        return {
            "rate": self.rate,
            "achieved_rate": round(self.achieved_rate, 1),
            "updates": self.updates,
            "replies": len(lags),
            "unmatched": self.unmatched,
            "p50_ms": round(percentile(lags, 50), 1) if lags else None,
            "p95_ms": round(percentile(lags, 95), 1) if lags else None,
            "p99_ms": round(percentile(lags, 99), 1) if lags else None,
            "max_ms": round(max(lags), 1) if lags else None,
        }


def target_medians(runs: list[RunResult]) -> dict[str, dict[str, float | None]]:
    """Return per target the median requests/s, latencies and server CPU."""
    medians: dict[str, dict[str, float | None]] = {}
    for target in TARGETS:
        mine = [run for run in runs if run.target == target]
        if not mine:
            continue
        medians[target] = {
            "requests_per_second": median([run.requests_per_second for run in mine]),
            **{
                f"{q}_ms": median([run.latency_ms[q] for run in mine])
                for q in ("p50", "p95", "p99")
            },
            "server_cpu_s": median([sum(run.cpu_seconds.values()) for run in mine]),
            "cpu_ms_per_request": median(
                [
                    run.cpu_ms_per_request
                    for run in mine
                    if run.cpu_ms_per_request is not None
                ]
            ),
        }

    return medians


def _number(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


# Correctness fields that are figures, not faults.
_NOT_FAULTS = ("accepted", "drain_ms")


def _rss(sizes: dict[str, list[float]]) -> str:
    if not sizes:
        return "–"
    before, after = sizes.get("before", []), sizes.get("after", [])

    return f"{max(before, default=0):.0f} → {max(after, default=0):.0f}"


def _check(run: RunResult) -> str:
    if run.correctness is None:
        return "–"
    if run.passed:
        return "passed"
    faults = [
        f"{key} {value}"
        for key, value in run.correctness.items()
        if value and key not in _NOT_FAULTS
    ]

    return "**FAILED** " + ", ".join(faults)


def table_render(runs: list[RunResult]) -> str:
    lines = [
        "| target | round | req/s | p50 ms | p95 ms | p99 ms | non-2xx "
        "| socket errors | load before / after | CPU s (server + database) "
        "| largest worker RSS MB before → after | check |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- "
        "| --- | --- |",
    ]
    for run in runs:
        cpu = ", ".join(
            f"{name} {value:.1f}" for name, value in run.cpu_seconds.items()
        )
        lines.append(
            f"| {run.target} | {run.round} | {run.requests_per_second:.0f} "
            f"| {_number(run.latency_ms['p50'])} | {_number(run.latency_ms['p95'])} "
            f"| {_number(run.latency_ms['p99'])} | {run.non_2xx} "
            f"| {run.socket_errors} "
            f"| {run.loadavg_before:.1f} / {run.loadavg_after:.1f} "
            f"| {cpu} | {_rss(run.workers_rss_mb)} | {_check(run)} |"
        )

    return "\n".join(lines) + "\n"


def medians_render(runs: list[RunResult]) -> str:
    medians = target_medians(runs)
    lines = [
        "| target | req/s | p50 ms | p95 ms | p99 ms | CPU s | CPU ms per update "
        "| guarantees |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for target, values in medians.items():
        lines.append(
            f"| {target} | {_number(values['requests_per_second'], 0)} "
            f"| {_number(values['p50_ms'])} | {_number(values['p95_ms'])} "
            f"| {_number(values['p99_ms'])} | {_number(values['server_cpu_s'])} "
            f"| {_number(values['cpu_ms_per_request'])} "
            f"| {GUARANTEES[target]} |"
        )
    rps = {target: values["requests_per_second"] for target, values in medians.items()}
    lines.append("")
    lines.append(
        "BotFactory / ceiling: "
        f"{_number(ratio(rps.get('botfactory'), rps.get('ceiling')), 3)}; "
        "BotFactory / aiogram: "
        f"{_number(ratio(rps.get('botfactory'), rps.get('aiogram')), 3)} "
        "(median requests/s)."
    )

    return "\n".join(lines) + "\n"


def markdown_render(
    runs: list[RunResult],
    lag: LagResult | None,
    *,
    command: str,
    when: str,
    cores: int,
    workload: dict[str, Any],
) -> str:
    lag_text = "Not measured in this run.\n"
    if lag is not None:
        summary = lag.summary()
        lag_text = (
            f"At {summary['rate']:.0f} updates/s asked ({summary['achieved_rate']} "
            f"achieved, {summary['updates']} updates), from the update's "
            "processed-update row (accepted) to the fake Bot API receiving the "
            f"reply, over {summary['replies']} replies: p50 "
            f"{_number(summary['p50_ms'])} ms, p95 {_number(summary['p95_ms'])} "
            f"ms, p99 {_number(summary['p99_ms'])} ms, max "
            f"{_number(summary['max_ms'])} ms; {summary['unmatched']} replies "
            "left unmatched. Paced by wrk itself: the Lua script's delay() "
            "spaces each connection's requests on a schedule.\n"
        )
        if summary["achieved_rate"] < 0.9 * summary["rate"]:
            lag_text += (
                "\nThe webhook did not keep up with the asked rate here, so "
                "this is the lag at the achieved rate, with the web workers "
                "saturated.\n"
            )
    failed = [run for run in runs if not run.passed]
    verdict = (
        "Every BotFactory run passed the check."
        if not failed
        else f"{len(failed)} run(s) lost or repeated work: marked FAILED above."
    )
    return (
        "# Webhook benchmark\n\n"
        f"`{command}` on {when}, {cores} cores; the generator pinned with "
        f"`taskset` to core {workload['generator_core']}.\n\n"
        "## Medians\n\n"
        f"{medians_render(runs)}\n"
        "## Every run\n\n"
        f"{table_render(runs)}\n"
        f"{verdict} The check, once the update each connection left unanswered "
        "was delivered again until answered 200 (as Telegram re-delivers) and "
        "the outbox drained: every update answered "
        "200 has its processed-update row, its conversation's generation is the "
        "one the flow predicts, and the fake Bot API got exactly the predicted "
        "number of calls per chat (messages and callback answers). The aiogram "
        "peer's replies are counted the same way (it keeps no row to check, and "
        "nothing is delivered again: it would handle a re-delivery twice).\n\n"
        "## Delivery lag (BotFactory)\n\n"
        f"{lag_text}\n"
        "## Workload\n\n"
        f"{workload['connections']} connections (one wrk thread each), "
        f"{workload['seconds']} s per run, {workload['chats_per_connection']} chats "
        f"per connection over {workload['bots']} copies of the demo bot "
        f"({workload.get('conversations_before', 0)} resting conversations put "
        "in before the runs); each "
        "chat plays the café in order (per four rounds of the flow: 8 `/start`, "
        "20 presses of buttons the bot sent, 12 wizard answers, 1 invalid "
        "answer), a fresh range of chats per run. Same gunicorn configuration "
        "(`docker/gunicorn.conf.py`, "
        f"{workload['web_workers']} workers) for every target. CPU: the target's "
        "processes and children, plus for BotFactory the outbox worker, beat "
        "and the PostgreSQL backends of the run's database (backends that "
        "ended during the run are not counted). The fake Bot API and the "
        "shared Redis are not counted. The load averages show what else ran: "
        "on a machine shared with other work the numbers are lower bounds, "
        "and a pipeline of several processes (BotFactory) loses more to "
        "contention than one process does.\n"
    )


def results_write(
    runs: list[RunResult],
    lag: LagResult | None,
    *,
    command: str,
    workload: dict[str, Any],
    directory: Path = RESULTS_DIR,
    name: str = "webhook",
) -> str:
    """Write the Markdown note and the raw JSON; return the medians table."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cores = os.cpu_count() or 0
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.md").write_text(
        markdown_render(
            runs, lag, command=command, when=when, cores=cores, workload=workload
        )
    )
    medians = target_medians(runs)
    document = {
        "date": when,
        "command": command,
        "cores": cores,
        "workload": workload,
        "guarantees": GUARANTEES,
        "medians": medians,
        "ratios": {
            "botfactory_to_ceiling": ratio(
                medians.get("botfactory", {}).get("requests_per_second"),
                medians.get("ceiling", {}).get("requests_per_second"),
            ),
            "botfactory_to_aiogram": ratio(
                medians.get("botfactory", {}).get("requests_per_second"),
                medians.get("aiogram", {}).get("requests_per_second"),
            ),
        },
        "runs": [asdict(run) for run in runs],
        "lag": lag.summary() if lag is not None else None,
    }
    (directory / f"{name}.json").write_text(json.dumps(document, indent=2) + "\n")

    return medians_render(runs)


def chats_over_replied(
    chats: list[ChatExpectation],
    *,
    processed: dict[int, int],
    calls: dict[int, int],
    limit: int = 10,
) -> list[tuple[ChatExpectation, int]]:
    """Return up to ``limit`` chats that got more Bot API calls than
    expected, each with the number expected, in chat order."""
    over = []
    for chat in sorted(chats, key=lambda chat: chat.chat_id):
        expected_calls, _ = _expected(chat, processed.get(chat.chat_id, 0))
        if calls.get(chat.chat_id, 0) > expected_calls:
            over.append((chat, expected_calls))

    return over[:limit]


# Enough of a reply's text to tell the demo bot's messages apart.
TEXT_PREFIX = 40


def call_describe(call: dict[str, Any]) -> dict[str, Any]:
    """Return what tells one recorded fake Bot API call from another: its
    method, answer status, time and the parameters that identify it."""
    params = call.get("params") or {}
    described: dict[str, Any] = {
        "method": call["method"],
        "status": call.get("status"),
        "at": call["at"],
    }
    if "text" in params:
        described["text"] = str(params["text"])[:TEXT_PREFIX]
    if "callback_query_id" in params:
        described["callback_query_id"] = params["callback_query_id"]
    markup = params.get("reply_markup")
    if isinstance(markup, str):
        markup = json.loads(markup)
    if isinstance(markup, dict) and markup.get("inline_keyboard"):
        described["buttons"] = [
            button.get("callback_data")
            for row in markup["inline_keyboard"]
            for button in row
        ]

    return described
