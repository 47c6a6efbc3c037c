"""Reading py-spy's collapsed stacks into the heaviest functions."""

from pathlib import Path

from bench.profiling import summary

COLLAPSED = (
    'process 10:"python -m gunicorn";handle (gunicorn/workers/sync.py:184);'
    "webhook (bots/webhook.py:12);"
    "execute (venv/lib/python3.11/site-packages/psycopg/cursor.py:97) 7\n"
    'process 10:"python -m gunicorn";handle (gunicorn/workers/sync.py:184);'
    "webhook (bots/webhook.py:15);"
    "dumps (lib/python3.11/json/__init__.py:231) 3\n"
    'process 10:"python -m gunicorn";handle (gunicorn/workers/sync.py:190) 2\n'
    "a line without a count\n"
)


def test_a_summary_counts_inclusive_and_top_of_stack_samples(tmp_path: Path) -> None:
    path = tmp_path / "gunicorn.txt"
    path.write_text(COLLAPSED)

    result = summary(path, top=3)

    assert result["samples"] == 12
    # Line numbers are dropped, so a function's samples add up.
    assert result["inclusive"] == [
        ("handle (gunicorn/workers/sync.py)", 12),
        ("webhook (bots/webhook.py)", 10),
        ("execute (psycopg/cursor.py)", 7),
    ]
    assert result["self"] == [
        ("execute (psycopg/cursor.py)", 7),
        ("dumps (json/__init__.py)", 3),
        ("handle (gunicorn/workers/sync.py)", 2),
    ]
