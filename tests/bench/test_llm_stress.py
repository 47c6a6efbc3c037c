"""The LLM stress benchmark's pure parts: its workload, statistics and table.

The benchmark itself starts a whole stack and runs for minutes; it is run
with ``make bench-llm``, never by the suite.
"""

import argparse
import json
from collections import Counter
from pathlib import Path

import pytest

from bench.llm_report import (
    QUESTIONS,
    LevelResult,
    markdown_render,
    percentile,
    questions_draw,
    questions_per_conversation,
    results_from_json,
    results_write,
    table_render,
    think_times_draw,
    zipf_weights,
)
from bench.llm_stress import _range_ms


def _result(**changes: object) -> LevelResult:
    values: dict[str, object] = {
        "conversations": 32,
        "questions": 100,
        "answered": 98,
        "errors": {"no_answer": 2},
        "latencies_ms": [float(n) for n in range(1, 99)],
        "thinking_ms": [5.0],
        "from_sent_ms": [10.0],
        "cache_hits": 40.0,
        "cache_misses": 60.0,
        "provider_calls": 60,
        "llm_outcomes": {"ok": 60.0, "cached": 40.0},
        "duration_s": 20.0,
        "llm_threads": 32,
        "llm_pool_size": 32,
        "outbox_pool": "threads",
        "outbox_concurrency": 8,
        "bots": 1,
        "loadavg_before": [1.5, 1.0, 1.0],
        "loadavg_after": [2.25, 1.5, 1.0],
        "cpu_seconds": {"gunicorn": 3.0, "worker-llm": 1.25},
        "stages_ms": {
            "llm_p50": 600.0,
            "llm_p95": 900.0,
            "outbox_p50": 40.0,
            "outbox_p95": 80.0,
        },
    }
    values.update(changes)

    return LevelResult(**values)  # type: ignore[arg-type]


def test_the_questions_are_fifty_distinct_texts_a_wizard_step_accepts() -> None:
    assert len(QUESTIONS) == 50
    assert len(set(QUESTIONS)) == 50
    # The demo's question step takes 1 to 500 characters.
    assert all(1 <= len(question) <= 500 for question in QUESTIONS)


def test_zipf_weights_fall_by_rank_to_the_power_s_and_sum_to_one() -> None:
    weights = zipf_weights(50, s=1.1)

    assert len(weights) == 50
    assert sum(weights) == pytest.approx(1.0)
    assert weights[0] / weights[1] == pytest.approx(2**1.1)
    assert weights[0] / weights[9] == pytest.approx(10**1.1)
    assert weights == sorted(weights, reverse=True)


def test_the_draw_is_fixed_by_its_seed() -> None:
    first = questions_draw(conversations=32, per_conversation=8)
    again = questions_draw(conversations=32, per_conversation=8)
    other = questions_draw(conversations=32, per_conversation=8, seed=1)

    assert first == again
    assert first != other
    assert [len(questions) for questions in first] == [8] * 32
    # The stated seed gives these first questions, whatever runs it.
    assert first[0][:3] == [
        "Do you serve cold brew?",
        "What is a flat white?",
        "What is a flat white?",
    ]


def test_think_times_are_seeded_uniform_over_the_range_and_leave_questions_alone() -> (
    None
):
    before = questions_draw(conversations=16, per_conversation=4)
    pauses = think_times_draw(
        conversations=16, per_conversation=4, think_ms=(2000, 6000)
    )
    again = think_times_draw(
        conversations=16, per_conversation=4, think_ms=(2000, 6000)
    )

    assert pauses == again
    assert [len(row) for row in pauses] == [4] * 16
    flat = [pause for row in pauses for pause in row]
    assert min(flat) >= 2.0
    assert max(flat) <= 6.0
    assert len(set(flat)) == 64
    assert questions_draw(conversations=16, per_conversation=4) == before
    assert think_times_draw(conversations=2, per_conversation=3, think_ms=(0, 0)) == [
        [0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0],
    ]


@pytest.mark.parametrize(
    ("text", "expected"), [("0", (0, 0)), ("2000-6000", (2000, 6000)), ("5-5", (5, 5))]
)
def test_a_think_time_range_is_read_from_low_dash_high(
    text: str, expected: tuple[int, int]
) -> None:
    assert _range_ms(text) == expected


@pytest.mark.parametrize("text", ["", "a-b", "6000-2000", "-5", "1-2-3"])
def test_a_malformed_think_time_range_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        _range_ms(text)


def test_the_draw_follows_the_zipf_weights() -> None:
    drawn = [
        question
        for questions in questions_draw(conversations=1000, per_conversation=20)
        for question in questions
    ]
    counts = Counter(drawn)
    weights = zipf_weights(50)

    # 20000 draws: the top question's share is within 1.5 points of its weight.
    assert counts[QUESTIONS[0]] / len(drawn) == pytest.approx(weights[0], abs=0.015)
    assert counts[QUESTIONS[0]] > counts[QUESTIONS[1]] > counts[QUESTIONS[9]]
    assert set(counts) <= set(QUESTIONS)


def test_few_conversations_ask_eight_questions_and_many_ask_three() -> None:
    assert questions_per_conversation(32) == 8
    assert questions_per_conversation(127) == 8
    assert questions_per_conversation(128) == 3
    assert questions_per_conversation(256) == 3


def test_percentile_takes_the_nearest_rank() -> None:
    values = [float(n) for n in range(100, 0, -1)]

    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([1.0, 2.0, 3.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0], 34) == 2.0


@pytest.mark.parametrize("p", [0, -1, 100.5])
def test_percentile_refuses_a_rank_out_of_range(p: float) -> None:
    with pytest.raises(ValueError, match="p must be"):
        percentile([1.0], p)


def test_percentile_refuses_no_values() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_the_table_shows_each_target_with_its_verdict() -> None:
    passing = _result()
    failing = _result(
        conversations=256,
        questions=200,
        answered=190,
        errors={"fallback": 10},
        latencies_ms=[2000.0] * 190,
        cache_hits=10.0,
        cache_misses=90.0,
        provider_calls=90,
        duration_s=40.0,
    )

    table = table_render([passing, failing])

    assert table.splitlines() == [
        "| conversations | questions | p50 ms | p95 ms (≤ 1500) | p99 ms "
        "| errors (≤ 3%) | cache hits (≥ 30%) | provider calls | questions/s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        "| 32 | 100 | 49 | 94 pass | 98 | 2.0% pass | 40.0% pass | 60 | 5.0 |",
        "| 256 | 200 | 2000 | 2000 FAIL | 2000 | 5.0% FAIL | 10.0% FAIL | 90 | 5.0 |",
    ]
    assert passing.passes() == {"p95": True, "error_rate": True, "cache_hit_rate": True}


def test_a_level_with_no_answer_fails_and_shows_no_latency() -> None:
    silent = _result(answered=0, errors={"no_answer": 100}, latencies_ms=[])

    assert silent.passes() == {
        "p95": False,
        "error_rate": False,
        "cache_hit_rate": True,
    }
    assert "| 32 | 100 | n/a | n/a FAIL | n/a | 100.0% FAIL |" in table_render([silent])


def test_results_are_written_as_markdown_and_raw_json(tmp_path: Path) -> None:
    table = results_write([_result()], command="make bench-llm", directory=tmp_path)

    markdown = (tmp_path / "llm_stress.md").read_text()
    document = json.loads((tmp_path / "llm_stress.json").read_text())
    assert table in markdown
    assert "`make bench-llm`" in markdown
    assert (
        "| 32 | 1 | 0-0 | 10 | 5 / 5 | 600 / 900 | 40 / 80 | 1.5 / 2.2 "
        "| gunicorn 3.0, worker-llm 1.2 |"
    ) in markdown
    assert document["command"] == "make bench-llm"
    assert document["targets"] == {
        "p95_ms": 1500.0,
        "error_rate": 0.03,
        "cache_hit_rate": 0.3,
    }
    assert document["workload"]["zipf_s"] == 1.1
    (level,) = document["levels"]
    assert (level["p50_ms"], level["p95_ms"], level["p99_ms"]) == (49.0, 94.0, 98.0)
    assert level["error_rate"] == 0.02
    assert level["cache_hit_rate"] == 0.4
    assert level["latencies_ms"] == [float(n) for n in range(1, 99)]
    assert isinstance(document["cores"], int)


def test_the_markdown_can_be_rendered_again_from_the_json(tmp_path: Path) -> None:
    written = _result()
    results_write([written], command="make bench-llm", directory=tmp_path)

    levels, document = results_from_json(tmp_path / "llm_stress.json")

    assert levels == [written]
    markdown = markdown_render(
        levels,
        command=document["command"],
        when=document["date"],
        cores=document["cores"],
    )
    assert markdown == (tmp_path / "llm_stress.md").read_text()
