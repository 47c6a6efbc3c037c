"""Webhook benchmark: the café flow against three web applications.

Run: ``.venv/bin/python -m bench.webhook_bench [--rounds 3 --seconds 20]``.

One stack (bench/stack.py) serves copies of the demo bot as production runs
it; beside it, under the same gunicorn configuration, a bare Django view
that only parses the update (the ceiling, bench/ceiling/) and the same café
written with aiogram 3 (bench/peers/aiogram_cafe.py, in its own virtual
environment, with a fake Bot API of its own). wrk drives each in turn with
bench/webhook_flow.lua, pinned to the last core: a fixed number of
connections, each playing its own private chats in order. Rounds alternate
the targets; medians and ratios come from all rounds.

After each BotFactory run the update each connection left unanswered is
delivered again until it is answered, the outbox is left to drain and every
accepted update is checked (bench/webhook_report.py, ``correctness_count``); a run
that lost or repeated work is marked failed. For up to ten chats that got
more Bot API calls than predicted, the calls the fake API received and the
chat's processed updates and outbox rows are kept with the run (in the
results JSON and in the work directory) before the database is dropped. A
last phase paces wrk at a
fixed rate and measures the delivery lag, from the update's processed-update
row to the fake Bot API receiving each reply. Results go to
``bench/results/webhook.md`` and ``bench/results/webhook.json``.
"""

import argparse
import contextlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.profiling import profiled, summary
from bench.stack import PROJECT_ROOT, Stack, StackOptions
from bench.webhook_report import (
    TARGETS,
    TEXT_PREFIX,
    UPDATES_PER_CHAT,
    ChatExpectation,
    LagResult,
    RunResult,
    UnansweredRequest,
    WrkResult,
    call_describe,
    chat_of_callback,
    chats_over_replied,
    correctness_count,
    lags_match,
    medians_render,
    menu_tokens,
    results_write,
    table_render,
    wrk_output_parse,
)
from tests.fakes.control import (
    start_fake_telegram_subprocess,
    stop_fake_telegram_subprocess,
)

logger = logging.getLogger("bench.webhook_bench")

LUA_SCRIPT = PROJECT_ROOT / "bench" / "webhook_flow.lua"
PEER_PYTHON = PROJECT_ROOT / "bench" / "peers" / ".venv" / "bin" / "python"
CHAT_ID_BASE = 700_000_000
# The outbox sends each chat's messages at most one a second.
DRAIN_SECONDS = 180.0
PEER_SETTLE_SECONDS = 60.0
WRK_TIMEOUT = "10s"
WARM_UP_SECONDS = 5
# How long the check re-delivers the updates left unanswered at the end.
REDELIVER_SECONDS = 60.0


def _cpu_core() -> int | None:
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2 or shutil.which("taskset") is None:
        return None

    return cores[-1]


@dataclass
class _Targets:
    stack: Stack
    urls: dict[str, str]
    paths: dict[str, list[str]]
    tokens: dict[str, list[str]]
    peer_telegram_url: str
    core: int | None
    next_chat: int = 0


def wrk_run(
    *,
    url: str,
    bots: list[str],
    tokens: list[str],
    secret: str,
    first_chat: int,
    per_connection: int,
    connections: int,
    seconds: int,
    core: int | None,
    pace_rps: float = 0.0,
) -> WrkResult:
    """Run wrk with the flow script once; return what its done() printed."""
    command = [
        "wrk",
        "-t",
        str(connections),
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--timeout",
        WRK_TIMEOUT,
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        ",".join(bots),
        str(first_chat),
        str(per_connection),
        *tokens,
    ]
    if core is not None:
        command = ["taskset", "-c", str(core), *command]
    env = {
        **os.environ,
        # Not on the command line, where any process could read it.
        "BENCH_SECRET": secret,
        "BENCH_PACE_RPS": str(pace_rps),
        "BENCH_CONNECTIONS": str(connections),
    }
    done = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-2000:]}")

    return wrk_output_parse(done.stdout)


def _postgres_cpu(stack: Stack) -> dict[int, float]:
    """Return the CPU seconds of each backend connected to the run's database."""
    with psycopg.connect(stack.database_url(), autocommit=True) as conn:
        pids = [
            int(pid)
            for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()"
            ).fetchall()
        ]
    ticks = os.sysconf("SC_CLK_TCK")
    used = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / ticks

    return used


_PROCESSES = {
    "ceiling": ("ceiling",),
    "botfactory": ("gunicorn", "worker-outbox", "beat"),
    "aiogram": ("aiogram",),
}


def _workers_rss_mb(stack: Stack, name: str) -> list[float]:
    """Return the resident memory of each worker of one gunicorn, in MB."""
    master = stack.pids().get(name)
    sizes = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("PPid", "0").strip() or 0) != master:
            continue
        kilobytes = fields.get("VmRSS", "0 kB").split()[0]
        sizes.append(round(int(kilobytes) / 1024, 1))

    return sorted(sizes)


_SERVERS = {"ceiling": "ceiling", "botfactory": "gunicorn", "aiogram": "aiogram"}


def _cpu_snapshot(stack: Stack) -> tuple[dict[str, float], dict[int, float]]:
    return stack.cpu_seconds(), _postgres_cpu(stack)


def _cpu_delta(
    target: str,
    before: tuple[dict[str, float], dict[int, float]],
    after: tuple[dict[str, float], dict[int, float]],
) -> dict[str, float]:
    used = {
        name: round(after[0].get(name, 0.0) - before[0].get(name, 0.0), 2)
        for name in _PROCESSES[target]
    }
    if target == "botfactory":
        used["postgres"] = round(
            sum(cpu - before[1].get(pid, 0.0) for pid, cpu in after[1].items()), 2
        )

    return used


def _fake_call_records(url: str) -> list[tuple[int, dict[str, Any]]]:
    """Return (chat id, call as the fake recorded it) of every reply call,
    in the order received."""
    calls = []
    for method in ("sendMessage", "answerCallbackQuery"):
        response = httpx.get(f"{url}/_calls", params={"method": method}, timeout=60.0)
        response.raise_for_status()
        for call in response.json()["calls"]:
            params = call["params"]
            chat_id: int | None
            if method == "sendMessage":
                chat_id = int(params["chat_id"])
            else:
                chat_id = chat_of_callback(str(params.get("callback_query_id", "")))
            if chat_id is not None:
                calls.append((chat_id, call))
    calls.sort(key=lambda call: float(call[1]["at"]))

    return calls


def _fake_calls(url: str) -> list[tuple[int, str, float]]:
    """Return (chat id, method, time received) of every reply call, in order."""
    return [
        (chat_id, str(call["method"]), float(call["at"]))
        for chat_id, call in _fake_call_records(url)
    ]


def _calls_per_chat(calls: list[tuple[int, str, float]]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for chat_id, _method, _at in calls:
        counts[chat_id] = counts.get(chat_id, 0) + 1

    return counts


def _drain(stack: Stack) -> float:
    """Wait until the outbox has nothing pending; return how long it took."""
    started = time.monotonic()
    with psycopg.connect(stack.database_url(), autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT count(*) FROM bots_outboundmessage"
                " WHERE status IN ('pending', 'in_flight')"
            ).fetchone()
            if row is not None and row[0] == 0:
                return time.monotonic() - started
            if time.monotonic() - started > DRAIN_SECONDS:
                logger.warning("The outbox still had %s rows pending.", row)
                return time.monotonic() - started
            time.sleep(0.5)


def unanswered_redeliver(
    *,
    url: str,
    secret: str,
    requests: list[UnansweredRequest],
    within: float = REDELIVER_SECONDS,
) -> int:
    """Send each unanswered update again until it is answered 200, as
    Telegram re-delivers; return how many deliveries it took in all.

    wrk stops with an update in flight on each connection, and the server
    may still take it afterwards (the request can wait in the listen
    backlog for seconds): a check that read the database before then
    missed its processed row and counted its replies as duplicates. Once a
    re-delivery has its 200, that update is committed, whichever delivery
    won. Raise RuntimeError when one is still refused after ``within``
    seconds.
    """
    headers = {
        "Content-Type": "application/json",
        "X-Telegram-Bot-Api-Secret-Token": secret,
    }
    deadline = time.monotonic() + within
    deliveries = 0
    with httpx.Client(base_url=url, timeout=float(WRK_TIMEOUT.rstrip("s"))) as client:
        for request in requests:
            while True:
                deliveries += 1
                try:
                    status = client.post(
                        request.path, content=request.body.encode(), headers=headers
                    ).status_code
                except httpx.TransportError:
                    status = 0
                if status == 200:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"an update to {request.path} was still refused ({status})"
                    )
                time.sleep(0.5)

    return deliveries


def _chat_range(chats: list[ChatExpectation]) -> tuple[int, int]:
    ids = [chat.chat_id for chat in chats]
    return (min(ids), max(ids) + 1) if ids else (0, 0)


def _botfactory_check(
    stack: Stack, result: WrkResult
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    deliveries = unanswered_redeliver(
        url=stack.web_url, secret=stack.webhook_secret, requests=result.unanswered
    )
    logger.info(
        "Delivered the %s updates left unanswered again (%s deliveries).",
        len(result.unanswered),
        deliveries,
    )
    drained = _drain(stack)
    low, high = _chat_range(result.chats)
    first, last = low - CHAT_ID_BASE, high - CHAT_ID_BASE
    with psycopg.connect(stack.database_url(), autocommit=True) as conn:
        processed = {
            CHAT_ID_BASE + int(index): int(count)
            for index, count in conn.execute(
                "SELECT update_id / %s, count(*) FROM bots_processedupdate"
                " WHERE update_id >= %s AND update_id < %s GROUP BY 1",
                [UPDATES_PER_CHAT, first * UPDATES_PER_CHAT, last * UPDATES_PER_CHAT],
            ).fetchall()
        }
        generations = {
            int(chat_id): int(generation)
            for chat_id, generation in conn.execute(
                "SELECT chat_id, (state->>'generation')::int FROM bots_conversation"
                " WHERE chat_id >= %s AND chat_id < %s",
                [low, high],
            ).fetchall()
        }
        failed_row = conn.execute(
            "SELECT count(*) FROM bots_outboundmessage WHERE status = 'failed'"
        ).fetchone()
        records = _fake_call_records(stack.telegram_url)
        calls = _calls_per_chat([(chat_id, "", 0.0) for chat_id, _call in records])
        counted = correctness_count(
            result.chats, processed=processed, generations=generations, calls=calls
        )
        over = chats_over_replied(result.chats, processed=processed, calls=calls)
        # While the database is still there: what each such chat received,
        # beside what its outbox holds.
        over_replied = [
            _over_replied_describe(
                conn, chat, expected, processed.get(chat.chat_id, 0), records
            )
            for chat, expected in over
        ]

    return {
        **asdict(counted),
        "outbox_failed": int(failed_row[0]) if failed_row else 0,
        "drain_ms": round(drained * 1000),
    }, over_replied


def _timestamp(value: datetime | None) -> float | None:
    return None if value is None else round(value.timestamp(), 3)


def _over_replied_describe(
    conn: psycopg.Connection[Any],
    chat: ChatExpectation,
    expected: int,
    counted: int,
    records: list[tuple[int, dict[str, Any]]],
) -> dict[str, Any]:
    """Return one chat's expectation (with the processed updates the check
    counted for it), the calls the fake API received for it in order, and
    its processed updates and outbox rows as they are now."""
    first_update = (chat.chat_id - CHAT_ID_BASE) * UPDATES_PER_CHAT
    processed = [
        {"update_id": int(update_id), "bot_id": int(bot_id), "at": _timestamp(at)}
        for update_id, bot_id, at in conn.execute(
            "SELECT update_id, bot_id, created_at FROM bots_processedupdate"
            " WHERE update_id >= %s AND update_id < %s ORDER BY update_id",
            [first_update, first_update + UPDATES_PER_CHAT],
        ).fetchall()
    ]
    outbox = [
        {
            "id": int(row[0]),
            "bot_id": int(row[1]),
            "update_id": row[2],
            "method": row[3],
            "status": row[4],
            "attempts": int(row[5]),
            "last_error": row[6],
            "text": row[7][:TEXT_PREFIX] if row[7] is not None else None,
            "callback_query_id": row[8],
            "created_at": _timestamp(row[9]),
            "sent_at": _timestamp(row[10]),
            "next_attempt_at": _timestamp(row[11]),
            "lease_until": _timestamp(row[12]),
        }
        for row in conn.execute(
            "SELECT id, bot_id, update_id, method, status, attempts, last_error,"
            " payload->>'text', payload->>'callback_query_id', created_at,"
            " sent_at, next_attempt_at, lease_until FROM bots_outboundmessage"
            " WHERE chat_id = %s ORDER BY id",
            [chat.chat_id],
        ).fetchall()
    ]

    return {
        "expected": {
            **asdict(chat),
            "expected_calls": expected,
            "processed_counted": counted,
        },
        "calls": [
            call_describe(call) for chat_id, call in records if chat_id == chat.chat_id
        ],
        "processed": processed,
        "outbox": outbox,
    }


def _peer_check(targets: _Targets, result: WrkResult) -> dict[str, int]:
    expected = sum(chat.calls for chat in result.chats)
    deadline = time.monotonic() + PEER_SETTLE_SECONDS
    chats = {chat.chat_id for chat in result.chats}
    while True:
        calls = _calls_per_chat(
            [
                call
                for call in _fake_calls(targets.peer_telegram_url)
                if call[0] in chats
            ]
        )
        if sum(calls.values()) >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    # The peer keeps no record of the updates it took: each accepted one
    # was, and the one in flight at the end if its replies came.
    processed = {
        chat.chat_id: chat.accepted
        + (0 <= chat.flight_calls <= calls.get(chat.chat_id, 0))
        for chat in result.chats
    }
    counted = correctness_count(
        result.chats, processed=processed, generations=None, calls=calls
    )

    return {
        "missing_replies": counted.missing_replies,
        "duplicate_replies": counted.duplicate_replies,
    }


@contextlib.contextmanager
def _maybe_profiled(
    targets: _Targets, target: str, round_number: int, profile_dir: Path | None
) -> Iterator[None]:
    # Only BotFactory's processes: py-spy's own CPU shifts the numbers, so
    # a profiled run is for finding where time goes, not for the table.
    if profile_dir is None or target != "botfactory":
        yield
        return
    pids = {
        name: pid
        for name, pid in targets.stack.pids().items()
        if name in _PROCESSES["botfactory"]
    }
    out_dir = profile_dir / f"round-{round_number}"
    with profiled(pids, out_dir) as outputs:
        yield
    for name, path in outputs.items():
        if path.exists():
            (out_dir / f"{name}.summary.json").write_text(
                json.dumps(summary(path), indent=1)
            )
    logger.info("Profiles written to %s.", out_dir)


def _run_one(
    targets: _Targets,
    target: str,
    *,
    round_number: int,
    connections: int,
    per_connection: int,
    seconds: int,
    profile_dir: Path | None = None,
) -> RunResult:
    first_chat = targets.next_chat
    targets.next_chat += connections * per_connection
    load_before = os.getloadavg()[0]
    rss_before = _workers_rss_mb(targets.stack, _SERVERS[target])
    before = _cpu_snapshot(targets.stack)
    with _maybe_profiled(targets, target, round_number, profile_dir):
        result = wrk_run(
            url=targets.urls[target],
            bots=targets.paths[target],
            tokens=targets.tokens[target],
            secret=targets.stack.webhook_secret,
            first_chat=first_chat,
            per_connection=per_connection,
            connections=connections,
            seconds=seconds,
            core=targets.core,
        )
    after = _cpu_snapshot(targets.stack)

    run = RunResult(
        target=target,
        round=round_number,
        connections=connections,
        requests_per_second=round(result.requests_per_second, 1),
        requests=result.requests,
        latency_ms=result.latency_ms,
        non_2xx=result.non_2xx,
        socket_errors=result.socket_errors,
        resent=result.resent,
        cpu_seconds=_cpu_delta(target, before, after),
        loadavg_before=round(load_before, 2),
        loadavg_after=round(os.getloadavg()[0], 2),
        workers_rss_mb={
            "before": rss_before,
            "after": _workers_rss_mb(targets.stack, _SERVERS[target]),
        },
    )
    if target == "botfactory":
        run.correctness, run.over_replied = _botfactory_check(targets.stack, result)
        if run.over_replied:
            _over_replied_report(targets.stack, run)
        run.passed = not any(
            value
            for key, value in run.correctness.items()
            if key not in ("accepted", "drain_ms")
        )
    elif target == "aiogram":
        run.correctness = _peer_check(targets, result)
        run.passed = not any(run.correctness.values())
    logger.info(
        "%s round %s: %.0f req/s, p99 %.1f ms.",
        target,
        round_number,
        run.requests_per_second,
        run.latency_ms["p99"],
    )

    return run


def _over_replied_report(stack: Stack, run: RunResult) -> None:
    # Kept beside the processes' logs (--keep-logs keeps them) and in the
    # results JSON, which holds every run.
    path = stack.work_dir / f"over-replied-{run.target}-{run.round}.json"
    path.write_text(json.dumps(run.over_replied, indent=1) + "\n")
    logger.warning(
        "%s chats got more Bot API calls than expected; details in %s.",
        len(run.over_replied),
        path,
    )
    for chat in run.over_replied:
        logger.warning("Over-replied chat: %s", json.dumps(chat))


def _lag_run(
    targets: _Targets,
    *,
    rate: float,
    seconds: int,
    connections: int,
    per_connection: int,
) -> LagResult:
    first_chat = targets.next_chat
    targets.next_chat += connections * per_connection
    stack = targets.stack
    result = wrk_run(
        url=targets.urls["botfactory"],
        bots=targets.paths["botfactory"],
        tokens=targets.tokens["botfactory"],
        secret=stack.webhook_secret,
        first_chat=first_chat,
        per_connection=per_connection,
        connections=connections,
        seconds=seconds,
        core=targets.core,
        pace_rps=rate,
    )
    unanswered_redeliver(
        url=stack.web_url, secret=stack.webhook_secret, requests=result.unanswered
    )
    _drain(stack)
    low, high = _chat_range(result.chats)
    with psycopg.connect(stack.database_url(), autocommit=True) as conn:
        outbox = [
            (int(chat_id), str(method), float(accepted_at))
            for chat_id, method, accepted_at in conn.execute(
                "SELECT o.chat_id, o.method, EXTRACT(EPOCH FROM p.created_at)"
                " FROM bots_outboundmessage o JOIN bots_processedupdate p"
                " ON p.bot_id = o.bot_id AND p.update_id = o.update_id"
                " WHERE o.chat_id >= %s AND o.chat_id < %s"
                " AND o.method IN ('sendMessage', 'answerCallbackQuery')"
                " ORDER BY o.id",
                [low, high],
            ).fetchall()
        ]
    calls = [call for call in _fake_calls(stack.telegram_url) if low <= call[0] < high]
    lags, unmatched = lags_match(outbox, calls)

    return LagResult(
        rate=rate,
        achieved_rate=result.requests_per_second,
        updates=sum(chat.accepted for chat in result.chats),
        lags_ms=[round(lag, 1) for lag in lags],
        unmatched=unmatched,
    )


# Conversations put in before the run sit in chats of their own.
FILL_CHAT_BASE = 800_000_000
_FILL_STATE = json.dumps({"node": "main", "generation": 1})


def conversations_fill(stack: Stack, count: int) -> float:
    """Put ``count`` resting conversations over the bots with one COPY.

    They make the tables and indexes as large as a big catalogue's, in
    chats that the run never writes to. Return the seconds it took.
    """
    started = time.monotonic()
    with psycopg.connect(stack.database_url()) as conn:
        bots = conn.execute(
            "SELECT id, live_version_id FROM bots_bot ORDER BY id"
        ).fetchall()
        with conn.cursor().copy(
            "COPY bots_conversation (bot_id, chat_id, thread_id, user_id,"
            " spec_version_id, state, locale, last_update_id, created_at,"
            " updated_at) FROM STDIN"
        ) as copy:
            for number in range(count):
                bot_id, version_id = bots[number % len(bots)]
                chat_id = FILL_CHAT_BASE + number
                copy.write_row(
                    (
                        bot_id,
                        chat_id,
                        0,
                        0,
                        version_id,
                        _FILL_STATE,
                        "en",
                        None,
                        "now",
                        "now",
                    )
                )
        conn.execute("ANALYZE bots_conversation")

    return time.monotonic() - started


def _targets_start(stack: Stack, wanted: list[str], core: int | None) -> _Targets:
    bot_paths = [str(bot_id) for bot_id in stack.bot_ids]
    urls = {"botfactory": stack.web_url}
    paths = {"botfactory": bot_paths, "ceiling": bot_paths}
    botfactory_tokens = menu_tokens()
    tokens = {"botfactory": botfactory_tokens, "ceiling": botfactory_tokens}
    peer_url = ""
    if "ceiling" in wanted:
        urls["ceiling"] = stack.gunicorn_start(
            name="ceiling", app="bench.ceiling.wsgi:application"
        )
    if "aiogram" in wanted:
        peer_url = _peer_telegram_start(stack)
        urls["aiogram"] = stack.gunicorn_start(
            name="aiogram",
            app="bench.peers.aiogram_cafe:app_create",
            python=str(PEER_PYTHON),
            args=("-k", "aiohttp.GunicornWebWorker"),
            extra={
                "PEER_TELEGRAM_URL": peer_url,
                "PEER_REDIS_URL": stack.options.redis_url,
                "PEER_KEY_PREFIX": f"{stack.cache_prefix}:peer",
                "PEER_SECRET": stack.webhook_secret,
                "PEER_BOTS": str(len(bot_paths)),
                "PEER_TOKEN_SECRET": f"PEER{os.urandom(12).hex()}",
            },
        )
        paths["aiogram"] = [str(number) for number in range(1, len(bot_paths) + 1)]
        tokens["aiogram"] = ["order", "orders", "help"]

    return _Targets(
        stack=stack,
        urls=urls,
        paths=paths,
        tokens=tokens,
        peer_telegram_url=peer_url,
        core=core,
    )


_peer_fakes: list["subprocess.Popen[str]"] = []


def _peer_telegram_start(stack: Stack) -> str:
    process, url = start_fake_telegram_subprocess()
    _peer_fakes.append(process)

    return url


def bench_run(args: argparse.Namespace) -> tuple[list[RunResult], LagResult | None]:
    """Start the targets, run the rounds and the lag phase, stop everything."""
    options = StackOptions(
        postgres_url=args.postgres,
        redis_url=args.redis,
        llm_threads=1,
        llm_pool_size=1,
        web_workers=args.web_workers or None,
        outbox_concurrency=args.outbox_concurrency,
        bots=args.bots,
        keep_logs=args.keep_logs,
    )
    stack = Stack(options)
    core = _cpu_core()
    try:
        logger.info("Starting the stack with %s bots.", args.bots)
        stack.start()
        if args.conversations:
            seconds = conversations_fill(stack, args.conversations)
            logger.info(
                "Put in %s conversations in %.0f s.", args.conversations, seconds
            )
        targets = _targets_start(stack, args.targets, core)
        # Not recorded: first requests import code and fill caches, and
        # every bot gets a chat.
        warm_chats = -(-args.bots // args.connections)
        for target in args.targets:
            wrk_run(
                url=targets.urls[target],
                bots=targets.paths[target],
                tokens=targets.tokens[target],
                secret=stack.webhook_secret,
                first_chat=targets.next_chat,
                per_connection=warm_chats,
                connections=args.connections,
                seconds=WARM_UP_SECONDS,
                core=core,
            )
            targets.next_chat += args.connections * warm_chats
        runs = []
        for round_number in range(1, args.rounds + 1):
            for target in args.targets:
                runs.append(
                    _run_one(
                        targets,
                        target,
                        round_number=round_number,
                        connections=args.connections,
                        per_connection=args.chats_per_connection,
                        seconds=args.seconds,
                        profile_dir=args.profile,
                    )
                )
        lag = None
        if args.lag_rate > 0 and "botfactory" in args.targets:
            lag = _lag_run(
                targets,
                rate=args.lag_rate,
                seconds=args.lag_seconds,
                connections=args.connections,
                per_connection=args.chats_per_connection,
            )

        return runs, lag
    finally:
        if args.keep_logs:
            logger.info("Logs kept in %s.", stack.work_dir)
        stack.stop()
        while _peer_fakes:
            stop_fake_telegram_subprocess(_peer_fakes.pop())


def _targets_arg(value: str) -> list[str]:
    names = [part.strip() for part in value.split(",") if part.strip()]
    unknown = sorted(set(names) - set(TARGETS))
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"expected some of {','.join(TARGETS)}; got {value!r}"
        )

    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the webhook benchmark.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=20, help="per run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--chats-per-connection", type=int, default=64)
    parser.add_argument("--bots", type=int, default=100)
    parser.add_argument(
        "--conversations",
        type=int,
        default=0,
        help="resting conversations to put in (one COPY) before the runs",
    )
    parser.add_argument("--targets", type=_targets_arg, default=list(TARGETS))
    parser.add_argument(
        "--lag-rate",
        type=float,
        default=300.0,
        help="updates/s of the delivery-lag phase (0: leave it out)",
    )
    parser.add_argument("--lag-seconds", type=int, default=20)
    parser.add_argument("--web-workers", type=int, default=0)
    parser.add_argument("--outbox-concurrency", type=int, default=8)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432"
        ),
        help="PostgreSQL server root; the run creates and drops its own database",
    )
    parser.add_argument(
        "--redis", default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    )
    parser.add_argument(
        "--results-name",
        default="webhook",
        help="file name (without suffix) of the results in bench/results/",
    )
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample BotFactory's processes with py-spy during its runs, into DIR",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed: run `make deps`")
    if "aiogram" in args.targets and not PEER_PYTHON.exists():
        parser.error("the aiogram peer has no environment: run `make bench-webhook`")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    runs, lag = bench_run(args)
    workload = {
        "connections": args.connections,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "chats_per_connection": args.chats_per_connection,
        "bots": args.bots,
        "conversations_before": args.conversations,
        "web_workers": args.web_workers or (os.cpu_count() or 1) * 2 + 1,
        "generator_core": _cpu_core(),
    }
    command = shlex.join(
        [".venv/bin/python", "-m", "bench.webhook_bench", *sys.argv[1:]]
    )
    if args.no_write:
        output = table_render(runs) + "\n" + medians_render(runs)
    else:
        output = (
            table_render(runs)
            + "\n"
            + results_write(
                runs, lag, command=command, workload=workload, name=args.results_name
            )
        )
    if lag is not None:
        output += f"\nDelivery lag: {lag.summary()}\n"
    print(output, end="")

    return 0 if all(run.passed for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
