"""The LLM stress benchmark's workload, statistics and report, without I/O
beyond writing the results."""

import json
import math
import os
import random
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


# The targets of the benchmark, printed beside the numbers.
TARGET_P95_MS = 1500.0
TARGET_ERROR_RATE = 0.03
TARGET_CACHE_HIT_RATE = 0.30

ZIPF_S = 1.1
QUESTION_SEED = 20261204
# Per conversation: more for few conversations, so both levels ask a few
# hundred questions at least.
QUESTIONS_FEW = 8
QUESTIONS_MANY = 3
MANY_FROM = 128
# The node's budget is 20 s; its fallback comes by then.
ANSWER_TIMEOUT_SECONDS = 30.0

QUESTIONS: tuple[str, ...] = (
    "What is a flat white?",
    "Do you have oat milk?",
    "What is the difference between a latte and a cappuccino?",
    "Is the espresso strong?",
    "What time do you open?",
    "Do you have decaf?",
    "What is a cortado?",
    "Which tea do you recommend?",
    "Is there sugar in the mocha?",
    "Can I get an extra shot?",
    "What beans do you use?",
    "Do you serve cold brew?",
    "Is the chai latte spicy?",
    "What is a macchiato?",
    "Do you have almond milk?",
    "How much caffeine is in a double espresso?",
    "What is a ristretto?",
    "Do you sell beans to take home?",
    "Is the matcha sweetened?",
    "What size is a large?",
    "Do you have vegan pastries?",
    "What is an americano?",
    "Can I bring my own cup?",
    "Is the hot chocolate made with milk?",
    "What is your most popular drink?",
    "Do you have soy milk?",
    "What is a lungo?",
    "Are your beans fair trade?",
    "Do you have green tea?",
    "What is an affogato?",
    "Can I order ahead?",
    "Is there Wi-Fi?",
    "What is a piccolo?",
    "Do you have iced tea?",
    "How is your coffee roasted?",
    "What is a red eye?",
    "Do you have gluten-free cakes?",
    "Is the cold brew strong?",
    "What milk goes best with espresso?",
    "Do you have herbal tea?",
    "What is a long black?",
    "Can I get my latte extra hot?",
    "What is in a dirty chai?",
    "Do you roast your own beans?",
    "What is a Turkish coffee?",
    "Is the café dog friendly?",
    "What is a doppio?",
    "Do you have lactose-free milk?",
    "What is a Gibraltar?",
    "Do you close on Sundays?",
)


# The pure parts: the workload, the statistics and the table.


def zipf_weights(count: int, *, s: float = ZIPF_S) -> list[float]:
    """Return the Zipf weights 1/k^s of ranks 1..count, normalised to sum 1."""
    raw = [1.0 / (rank**s) for rank in range(1, count + 1)]
    total = sum(raw)

    return [weight / total for weight in raw]


def questions_draw(
    *, conversations: int, per_conversation: int, seed: int = QUESTION_SEED
) -> list[list[str]]:
    """Draw every conversation's questions, in order, from one seeded RNG."""
    rng = random.Random(seed)
    weights = zipf_weights(len(QUESTIONS))

    return [
        rng.choices(QUESTIONS, weights=weights, k=per_conversation)
        for _ in range(conversations)
    ]


def think_times_draw(
    *, conversations: int, per_conversation: int, think_ms: tuple[int, int]
) -> list[list[float]]:
    """Draw each conversation's pauses (seconds) after each answer.

    Uniform over ``think_ms``, from a generator of its own so the questions
    stay the same whatever the pauses are.
    """
    rng = random.Random(QUESTION_SEED + 1)
    low, high = think_ms

    return [
        [rng.uniform(low, high) / 1000 for _ in range(per_conversation)]
        for _ in range(conversations)
    ]


def questions_per_conversation(conversations: int) -> int:
    return QUESTIONS_MANY if conversations >= MANY_FROM else QUESTIONS_FEW


def percentile(values: list[float], p: float) -> float:
    """Return the nearest-rank ``p``-th percentile (0 < p <= 100) of values.

    Raises ValueError on an empty list or a ``p`` out of range.
    """
    if not values:
        raise ValueError("no values")
    if not 0 < p <= 100:
        raise ValueError("p must be in (0, 100]")
    ordered = sorted(values)
    rank = math.ceil(p / 100 * len(ordered))

    return ordered[rank - 1]


@dataclass
class LevelResult:
    conversations: int
    questions: int
    answered: int
    errors: dict[str, int]
    latencies_ms: list[float]
    thinking_ms: list[float]
    from_sent_ms: list[float]
    cache_hits: float
    cache_misses: float
    provider_calls: int
    llm_outcomes: dict[str, float]
    duration_s: float
    llm_threads: int
    llm_pool_size: int
    outbox_pool: str
    outbox_concurrency: int
    bots: int
    # The pause of a conversation between an answer and its next question.
    think_ms: tuple[int, int] = (0, 0)
    loadavg_before: list[float] = field(default_factory=list)
    loadavg_after: list[float] = field(default_factory=list)
    logged_errors: dict[str, int] = field(default_factory=dict)
    # From the database: request written to answer written (queue, model,
    # conversation update), and answer written to sent (outbox).
    stages_ms: dict[str, float] = field(default_factory=dict)
    # CPU time each process used while the conversations ran.
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        return sum(self.errors.values()) / self.questions if self.questions else 1.0

    @property
    def cache_hit_rate(self) -> float:
        looked_up = self.cache_hits + self.cache_misses
        return self.cache_hits / looked_up if looked_up else 0.0

    def p(self, q: float) -> float | None:
        return percentile(self.latencies_ms, q) if self.latencies_ms else None

    def passes(self) -> dict[str, bool]:
        p95 = self.p(95)
        return {
            "p95": p95 is not None and p95 <= TARGET_P95_MS,
            "error_rate": self.error_rate <= TARGET_ERROR_RATE,
            "cache_hit_rate": self.cache_hit_rate >= TARGET_CACHE_HIT_RATE,
        }

    def summary(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "p50_ms": self.p(50),
            "p95_ms": self.p(95),
            "p99_ms": self.p(99),
            "from_sent_p95_ms": percentile(self.from_sent_ms, 95)
            if self.from_sent_ms
            else None,
            "thinking_p50_ms": percentile(self.thinking_ms, 50)
            if self.thinking_ms
            else None,
            "thinking_p95_ms": percentile(self.thinking_ms, 95)
            if self.thinking_ms
            else None,
            "error_rate": self.error_rate,
            "cache_hit_rate": self.cache_hit_rate,
            "questions_per_second": self.questions / self.duration_s
            if self.duration_s
            else 0.0,
            "passes": self.passes(),
        }


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def _verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def table_render(results: list[LevelResult]) -> str:
    """Render the levels as a Markdown table with each target's verdict."""
    lines = [
        f"| conversations | questions | p50 ms | p95 ms (≤ {TARGET_P95_MS:.0f}) "
        f"| p99 ms | errors (≤ {TARGET_ERROR_RATE:.0%}) "
        f"| cache hits (≥ {TARGET_CACHE_HIT_RATE:.0%}) | provider calls "
        "| questions/s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        passes = result.passes()
        rate = result.questions / result.duration_s if result.duration_s else 0.0
        lines.append(
            f"| {result.conversations} | {result.questions} | {_ms(result.p(50))} "
            f"| {_ms(result.p(95))} {_verdict(passes['p95'])} "
            f"| {_ms(result.p(99))} "
            f"| {result.error_rate:.1%} {_verdict(passes['error_rate'])} "
            f"| {result.cache_hit_rate:.1%} {_verdict(passes['cache_hit_rate'])} "
            f"| {result.provider_calls} | {rate:.1f} |"
        )

    return "\n".join(lines) + "\n"


def markdown_render(
    results: list[LevelResult], *, command: str, when: str, cores: int
) -> str:
    """Render the results note: the table, the workload and the details."""
    table = table_render(results)
    details = [
        "| conversations | bots | think time ms | from POST sent p95 ms "
        "| thinking… p50 / p95 ms "
        "| request to answer written p50 / p95 ms "
        "| answer written to sent p50 / p95 ms "
        "| load average before / after | CPU seconds while running |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for result in results:
        summary = result.summary()
        low, high = result.think_ms
        stages = result.stages_ms
        cpu = ", ".join(
            f"{name} {value:.1f}" for name, value in result.cpu_seconds.items()
        )
        details.append(
            f"| {result.conversations} | {result.bots} | {low}-{high} "
            f"| {_ms(summary['from_sent_p95_ms'])} "
            f"| {_ms(summary['thinking_p50_ms'])} / {_ms(summary['thinking_p95_ms'])} "
            f"| {_ms(stages.get('llm_p50'))} / {_ms(stages.get('llm_p95'))} "
            f"| {_ms(stages.get('outbox_p50'))} / {_ms(stages.get('outbox_p95'))} "
            f"| {result.loadavg_before[0]:.1f} / {result.loadavg_after[0]:.1f} "
            f"| {cpu} |"
        )
    return (
        "# LLM stress benchmark\n\n"
        f"`{command}` on {when}, {cores} cores (the load averages below show "
        "what else ran).\n\n"
        f"{table}\n"
        "Latency: from the webhook call answering 200 to the answer's arrival at "
        "the fake Bot API. Fake model latency 200-800 ms; questions Zipf "
        f"(s = {ZIPF_S}) over {len(QUESTIONS)} fixed questions, seed "
        f"{QUESTION_SEED}; after each answer a conversation pauses for its "
        "think time (uniform over the range in the table below, seeded; 0-0 "
        "asks again at once) before its next question. Errors: a webhook call "
        "that is not "
        "200, no prompt or answer within 30 s, or the fallback instead of the "
        "answer. Cache hits: the LLM worker's "
        '`botfactory_cache_requests_total{cache="llm"}`.\n\n'
        "Where the time goes:\n\n" + "\n".join(details) + "\n\n"
        "A negative time to the thinking message means the fake Bot API got it "
        "before the load generator saw its webhook call's 200: on a loaded "
        "machine the generator lags, which makes the latencies above shorter "
        "by that lag, never longer. The column before it (from the moment the "
        "question was sent) bounds them from above.\n"
    )


def results_write(
    results: list[LevelResult],
    *,
    command: str,
    directory: Path = RESULTS_DIR,
    name: str = "llm_stress",
) -> str:
    """Write the Markdown table and the raw JSON; return the table."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cores = os.cpu_count() or 0
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.md").write_text(
        markdown_render(results, command=command, when=when, cores=cores)
    )
    document = {
        "date": when,
        "command": command,
        "cores": cores,
        "workload": {
            "questions": len(QUESTIONS),
            "zipf_s": ZIPF_S,
            "seed": QUESTION_SEED,
            "fake_latency_ms": "200-800",
            "answer_timeout_s": ANSWER_TIMEOUT_SECONDS,
        },
        "targets": {
            "p95_ms": TARGET_P95_MS,
            "error_rate": TARGET_ERROR_RATE,
            "cache_hit_rate": TARGET_CACHE_HIT_RATE,
        },
        "levels": [result.summary() for result in results],
    }
    (directory / f"{name}.json").write_text(json.dumps(document, indent=2) + "\n")

    return table_render(results)


def results_from_json(path: Path) -> tuple[list[LevelResult], dict[str, Any]]:
    """Read back the levels and the document that results_write wrote."""
    document = json.loads(path.read_text())
    names = {item.name for item in fields(LevelResult)}
    levels = [
        LevelResult(**{key: value for key, value in level.items() if key in names})
        for level in document["levels"]
    ]
    for level in levels:
        level.think_ms = (int(level.think_ms[0]), int(level.think_ms[1]))

    return levels, document
