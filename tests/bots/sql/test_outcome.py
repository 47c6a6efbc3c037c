import datetime
import ipaddress
import uuid
from decimal import Decimal

import pytest

from bots.sql import SqlOutcome
from bots.sql.outcome import ERROR_MESSAGES, SqlRunError, rows_to_json


def test_rows_to_json_converts_each_value() -> None:
    columns = ["price", "at", "day", "id", "ip", "wait", "nested", "inf"]
    row = (
        Decimal("12.50"),
        datetime.datetime(2024, 5, 1, 10, 30, tzinfo=datetime.UTC),
        datetime.date(2024, 5, 1),
        uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        ipaddress.ip_address("10.0.0.1"),
        datetime.timedelta(minutes=2),
        {"a": [Decimal("1.0"), None]},
        float("-inf"),
    )

    rows = rows_to_json(columns, [row])

    assert rows == [
        {
            "price": "12.50",
            "at": "2024-05-01T10:30:00+00:00",
            "day": "2024-05-01",
            "id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "ip": "10.0.0.1",
            "wait": 120.0,
            "nested": {"a": ["1.0", None]},
            "inf": "-Infinity",
        }
    ]


@pytest.mark.parametrize("value", [b"raw", memoryview(b"raw"), object()])
def test_rows_to_json_refuses_other_types(value: object) -> None:
    with pytest.raises(SqlRunError) as caught:
        rows_to_json(["v"], [(value,)])

    assert caught.value.code == "unsupported_value"


def test_rows_to_json_refuses_duplicate_columns() -> None:
    with pytest.raises(SqlRunError) as caught:
        rows_to_json(["a", "a"], [(1, 2)])

    assert caught.value.code == "duplicate_column"


def test_failure_carries_the_fixed_message() -> None:
    assert SqlOutcome.failure("timeout") == SqlOutcome(
        error=ERROR_MESSAGES["timeout"], error_code="timeout"
    )
