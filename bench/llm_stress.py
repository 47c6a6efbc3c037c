"""LLM stress benchmark: many conversations asking the demo bot's barista.

Run: ``make bench-llm``, which is ``.venv/bin/python -m bench.llm_stress
--conversations-per-bot 8 --think-ms 5000-15000 [--conversations 32,256]``.

For each level a fresh stack (bench/stack.py) serves the demo bot as
production runs it, against the fake Telegram Bot API and a fake OpenAI
API answering in 200-800 ms. Every conversation is its own private chat
and does, for a fixed number of questions: ``/ask``, wait for the prompt
at the fake Bot API, send the question, wait for the answer there, then
pause for its think time before the next ``/ask``. The think time stands
for a person reading the answer and typing the next question: uniform
over 5-15 s in ``make bench-llm``, shorter than people take to read an
answer of a few sentences and type a question, so the load is heavier
than theirs. ``--think-ms 0`` asks again at once, which measures how many
questions the stack can take rather than how 256 people are served.

The workload is fixed before anything is measured: questions come from 50
fixed questions with Zipf weights (s = 1.1), drawn per conversation from a
seeded generator; conversations start spread evenly over ``--ramp-s``.
All conversations talk to one bot unless ``--conversations-per-bot``
spreads them over copies of the demo bot: the outbox keeps each bot under
Telegram's 30 calls a second, and every question costs three or four
calls (prompt, "thinking…", typing, answer).

Per question it measures the time from the webhook call answering 200 to
the answer's arrival at the fake Bot API (its ``at``). A question is an
error when a webhook call is not a 200, when the answer is not the one
the fake model gives (the fallback text), or when nothing arrives within
``ANSWER_TIMEOUT_SECONDS``. The cache hit rate is the LLM worker's own
``botfactory_cache_requests_total{cache="llm"}``. Results go to
``bench/results/llm_stress.md`` and ``bench/results/llm_stress.json``.
"""

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.llm_report import (
    ANSWER_TIMEOUT_SECONDS,
    RESULTS_DIR,
    LevelResult,
    markdown_render,
    percentile,
    questions_draw,
    questions_per_conversation,
    results_from_json,
    results_write,
    table_render,
    think_times_draw,
)
from bench.profiling import profiled, summary
from bench.stack import PROJECT_ROOT, Stack, StackOptions
from tests.fakes.openai_api import expected_answer

logger = logging.getLogger("bench.llm_stress")

DEMO_TRANSLATIONS = PROJECT_ROOT / "bots" / "demo" / "translations.json"

PROMPT_TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 0.2
CHAT_BASE = 910_000_000
LLM_POOL_MAX = 32


def _demo_texts() -> dict[str, str]:
    english = json.loads(DEMO_TRANSLATIONS.read_text())["en"]

    def text(key: str) -> str:
        value = english[key]
        return str(value["other"] if isinstance(value, dict) else value)

    return {
        "prompt": text("ask.question"),
        "thinking": text("ask.thinking"),
        "system": text("ask.system"),
    }


def _answer_for(question: str, system: str) -> str:
    return expected_answer(
        [{"role": "system", "content": system}, {"role": "user", "content": question}]
    )


class BotApiWatch:
    """Poll the fake Bot API's calls and hand each chat the messages it got."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self._client = client
        self._url = url
        self.by_chat: dict[int, list[dict[str, Any]]] = {}
        self._events: dict[int, asyncio.Event] = {}

    def event(self, chat_id: int) -> asyncio.Event:
        return self._events.setdefault(chat_id, asyncio.Event())

    async def _fetch(self, method: str) -> list[dict[str, Any]]:
        response = await self._client.get(
            f"{self._url}/_calls",
            params={"method": method},
            timeout=30.0,
        )
        response.raise_for_status()

        return list(response.json()["calls"])

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            sent, edited = await asyncio.gather(
                self._fetch("sendMessage"), self._fetch("editMessageText")
            )
            by_chat: dict[int, list[dict[str, Any]]] = {}
            for call in sorted(sent + edited, key=lambda call: call["at"]):
                chat_id = call["params"].get("chat_id")
                if chat_id is not None:
                    by_chat.setdefault(int(chat_id), []).append(call)
            for chat_id, calls in by_chat.items():
                if len(calls) != len(self.by_chat.get(chat_id, ())):
                    self.event(chat_id).set()
            self.by_chat = by_chat
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), POLL_SECONDS)

    async def next_text(
        self, chat_id: int, *, after: int, skip: set[str], timeout: float
    ) -> dict[str, Any] | None:
        """Wait for the chat's first message past index ``after`` not in skip."""
        deadline = time.monotonic() + timeout
        while True:
            for call in self.by_chat.get(chat_id, [])[after:]:
                if call["params"].get("text") not in skip:
                    return call
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            event = self.event(chat_id)
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), left)
            except TimeoutError:
                return None


@dataclass
class _Run:
    stack: Stack
    client: httpx.AsyncClient
    watch: BotApiWatch
    texts: dict[str, str]
    latencies_ms: list[float] = field(default_factory=list)
    thinking_ms: list[float] = field(default_factory=list)
    from_sent_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    answered: int = 0
    update_id: int = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    async def post(self, bot_id: int, chat_id: int, message_id: int, text: str) -> int:
        self.update_id += 1
        sender = {"id": chat_id, "is_bot": False, "first_name": "Bench"}
        update = {
            "update_id": self.update_id,
            "message": {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private"},
                "from": {**sender, "language_code": "en"},
                "text": text,
            },
        }
        try:
            response = await self.client.post(
                f"{self.stack.web_url}/telegram/{bot_id}/webhook",
                content=json.dumps(update).encode(),
                headers={
                    "Content-Type": "application/json",
                    "X-Telegram-Bot-Api-Secret-Token": self.stack.webhook_secret,
                },
                timeout=30.0,
            )
        except httpx.HTTPError:
            return 0

        return response.status_code

    async def conversation(
        self, index: int, questions: list[str], pauses: list[float], delay: float
    ) -> None:
        await asyncio.sleep(delay)
        chat_id = CHAT_BASE + index
        # Chat ids are unique over the run, whichever bot a chat talks to.
        bot_id = self.stack.bot_ids[index % len(self.stack.bot_ids)]
        message_id = 0
        for number, (question, pause) in enumerate(zip(questions, pauses, strict=True)):
            if number and pause:
                await asyncio.sleep(pause)
            seen = len(self.watch.by_chat.get(chat_id, ()))
            message_id += 1
            status = await self.post(bot_id, chat_id, message_id, "/ask")
            if status != 200:
                self.error(f"webhook_{status}")
                continue
            prompt = await self.watch.next_text(
                chat_id, after=seen, skip=set(), timeout=PROMPT_TIMEOUT_SECONDS
            )
            if prompt is None or prompt["params"].get("text") != self.texts["prompt"]:
                self.error("no_prompt")
                continue

            seen = len(self.watch.by_chat.get(chat_id, ()))
            message_id += 1
            sent_at = time.time()
            status = await self.post(bot_id, chat_id, message_id, question)
            accepted_at = time.time()
            if status != 200:
                self.error(f"webhook_{status}")
                continue
            answer = await self.watch.next_text(
                chat_id,
                after=seen,
                skip={self.texts["thinking"]},
                timeout=ANSWER_TIMEOUT_SECONDS,
            )
            if answer is None:
                self.error("no_answer")
                continue
            thinking = [
                call
                for call in self.watch.by_chat.get(chat_id, [])[seen:]
                if call["params"].get("text") == self.texts["thinking"]
            ]
            if thinking:
                self.thinking_ms.append((float(thinking[0]["at"]) - accepted_at) * 1000)
            if answer["params"].get("text") != _answer_for(
                question, self.texts["system"]
            ):
                self.error("fallback")
                continue
            self.answered += 1
            self.latencies_ms.append((float(answer["at"]) - accepted_at) * 1000)
            self.from_sent_ms.append((float(answer["at"]) - sent_at) * 1000)


def _scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    response = httpx.get(url, timeout=30.0)
    response.raise_for_status()

    return [
        (sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def _sum(
    samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str
) -> float:
    return sum(
        value
        for sample_name, sample_labels, value in samples
        if sample_name == name
        and all(sample_labels.get(key) == wanted for key, wanted in labels.items())
    )


async def _drive(
    stack: Stack, plan: list[list[str]], pauses: list[list[float]], ramp_s: float
) -> _Run:
    limits = httpx.Limits(
        max_connections=len(plan) + 8, max_keepalive_connections=len(plan) + 8
    )
    async with httpx.AsyncClient(limits=limits) as client:
        watch = BotApiWatch(client, stack.telegram_url)
        run = _Run(stack=stack, client=client, watch=watch, texts=_demo_texts())
        stopping = asyncio.Event()
        watcher = asyncio.create_task(watch.run(stopping))
        spacing = ramp_s / len(plan)
        try:
            await asyncio.gather(
                *(
                    run.conversation(index, questions, pauses[index], index * spacing)
                    for index, questions in enumerate(plan)
                )
            )
        finally:
            stopping.set()
            await watcher

    return run


def _stages_summary(stages: list[tuple[float, float]]) -> dict[str, float]:
    if not stages:
        return {}
    llm = [first for first, _second in stages]
    outbox = [second for _first, second in stages]

    return {
        "llm_p50": round(percentile(llm, 50), 1),
        "llm_p95": round(percentile(llm, 95), 1),
        "outbox_p50": round(percentile(outbox, 50), 1),
        "outbox_p95": round(percentile(outbox, 95), 1),
    }


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


@contextlib.contextmanager
def _maybe_profiled(
    stack: Stack, profile_dir: Path | None, conversations: int
) -> Iterator[None]:
    if profile_dir is None:
        yield
        return
    out_dir = profile_dir / f"{conversations}-conversations"
    with profiled(stack.pids(), out_dir) as outputs:
        yield
    for name, path in outputs.items():
        if path.exists():
            (out_dir / f"{name}.summary.json").write_text(
                json.dumps(summary(path), indent=1)
            )
    logger.info("Profiles written to %s.", out_dir)


def level_run(
    *,
    conversations: int,
    per_conversation: int,
    ramp_s: float,
    options: StackOptions,
    think_ms: tuple[int, int] = (0, 0),
    profile_dir: Path | None = None,
) -> LevelResult:
    """Start a fresh stack, drive ``conversations`` through it, stop it."""
    # Drawn before any process starts, so nothing measured can shape it.
    plan = questions_draw(
        conversations=conversations, per_conversation=per_conversation
    )
    pauses = think_times_draw(
        conversations=conversations,
        per_conversation=per_conversation,
        think_ms=think_ms,
    )
    stack = Stack(options)
    try:
        logger.info("Starting the stack for %s conversations.", conversations)
        stack.start()
        loadavg_before = list(os.getloadavg())
        cpu_before = {**stack.cpu_seconds(), "load-generator": _own_cpu()}
        started = time.monotonic()
        with _maybe_profiled(stack, profile_dir, conversations):
            run = asyncio.run(_drive(stack, plan, pauses, ramp_s))
        duration = time.monotonic() - started
        cpu_after = {**stack.cpu_seconds(), "load-generator": _own_cpu()}
        loadavg_after = list(os.getloadavg())
        samples = _scrape(stack.llm_metrics_url)
        provider_calls = len(stack.fake_openai_calls())
        stages = stack.stage_times_ms()
        outcomes: dict[str, float] = {}
        for name, labels, value in samples:
            if name == "botfactory_llm_requests_total":
                outcome = labels.get("outcome", "")
                outcomes[outcome] = outcomes.get(outcome, 0.0) + value

        return LevelResult(
            conversations=conversations,
            questions=conversations * per_conversation,
            answered=run.answered,
            errors=run.errors,
            latencies_ms=[round(value, 1) for value in run.latencies_ms],
            thinking_ms=[round(value, 1) for value in run.thinking_ms],
            from_sent_ms=[round(value, 1) for value in run.from_sent_ms],
            cache_hits=_sum(
                samples, "botfactory_cache_requests_total", cache="llm", result="hit"
            ),
            cache_misses=_sum(
                samples, "botfactory_cache_requests_total", cache="llm", result="miss"
            ),
            provider_calls=provider_calls,
            llm_outcomes=outcomes,
            duration_s=round(duration, 2),
            llm_threads=options.llm_threads,
            llm_pool_size=options.llm_pool_size,
            outbox_pool=options.outbox_pool,
            outbox_concurrency=options.outbox_concurrency,
            bots=options.bots,
            think_ms=think_ms,
            loadavg_before=loadavg_before,
            loadavg_after=loadavg_after,
            logged_errors=stack.logged_errors(),
            stages_ms=_stages_summary(stages),
            cpu_seconds={
                name: round(cpu_after[name] - cpu_before.get(name, 0.0), 2)
                for name in cpu_after
            },
        )
    finally:
        if options.keep_logs:
            logger.info("Logs kept in %s.", stack.work_dir)
        stack.stop()


def _levels(value: str) -> list[int]:
    try:
        levels = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("expected numbers such as 32,256") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("expected positive numbers such as 32,256")

    return levels


def _range_ms(value: str) -> tuple[int, int]:
    low, _, high = value.partition("-")
    try:
        bounds = (int(low), int(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected milliseconds such as 2000-6000"
        ) from None
    if bounds[0] < 0 or bounds[1] < bounds[0]:
        raise argparse.ArgumentTypeError("expected 0 <= low <= high, such as 2000-6000")

    return bounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the LLM stress benchmark.")
    parser.add_argument("--conversations", type=_levels, default=[32, 256])
    parser.add_argument(
        "--questions",
        type=int,
        default=0,
        help="questions per conversation (default 8, or 3 from 128 conversations)",
    )
    parser.add_argument("--ramp-s", type=float, default=2.0)
    parser.add_argument(
        "--think-ms",
        type=_range_ms,
        default=(0, 0),
        metavar="LOW-HIGH",
        help="pause after each answer, uniform over LOW-HIGH ms (default 0: "
        "ask again at once)",
    )
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
    parser.add_argument("--web-workers", type=int, default=0)
    parser.add_argument(
        "--outbox-pool", choices=["threads", "prefork"], default="threads"
    )
    parser.add_argument("--outbox-concurrency", type=int, default=8)
    parser.add_argument(
        "--llm-threads",
        type=int,
        default=0,
        help="threads of the LLM worker (default: one per conversation)",
    )
    parser.add_argument(
        "--conversations-per-bot",
        type=int,
        default=0,
        help="spread the conversations over copies of the demo bot, this many "
        "each (default: all on one bot)",
    )
    parser.add_argument(
        "--results-name",
        default="llm_stress",
        help="file name (without suffix) of the results in bench/results/",
    )
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample every process with py-spy while the load runs, into DIR",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--markdown-only",
        action="store_true",
        help="run nothing: rewrite the results' Markdown from their JSON",
    )
    args = parser.parse_args(argv)
    if args.markdown_only:
        json_path = RESULTS_DIR / f"{args.results_name}.json"
        results, document = results_from_json(json_path)
        json_path.with_suffix(".md").write_text(
            markdown_render(
                results,
                command=document["command"],
                when=document["date"],
                cores=document["cores"],
            )
        )
        print(table_render(results), end="")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    # One line per request would drown the progress lines.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    results = []
    for conversations in args.conversations:
        threads = args.llm_threads or conversations
        options = StackOptions(
            postgres_url=args.postgres,
            redis_url=args.redis,
            llm_threads=threads,
            # Threads hold a connection only around short queries.
            llm_pool_size=min(threads, LLM_POOL_MAX),
            web_workers=args.web_workers or None,
            outbox_pool=args.outbox_pool,
            outbox_concurrency=args.outbox_concurrency,
            bots=math.ceil(conversations / args.conversations_per_bot)
            if args.conversations_per_bot > 0
            else 1,
            keep_logs=args.keep_logs,
        )
        per_conversation = args.questions or questions_per_conversation(conversations)
        results.append(
            level_run(
                conversations=conversations,
                per_conversation=per_conversation,
                ramp_s=args.ramp_s,
                options=options,
                think_ms=args.think_ms,
                profile_dir=args.profile,
            )
        )

    command = shlex.join([".venv/bin/python", "-m", "bench.llm_stress", *sys.argv[1:]])
    if args.no_write:
        table = table_render(results)
    else:
        table = results_write(results, command=command, name=args.results_name)
    print(table, end="")
    passed = all(all(result.passes().values()) for result in results)

    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
