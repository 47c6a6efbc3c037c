import pytest

from dsl.callback import (
    CallbackData,
    callback_decode,
    callback_encode,
    callback_max_bytes,
    owner_tag,
)


def test_owner_tags_are_four_base36_digits_fixed_per_user():
    tags = [owner_tag(user_id) for user_id in (7, 8, 42, 7, 2**52)]

    assert tags == ["bnv2", "7z3r", "ui6l", "bnv2", "gon9"]


def test_data_with_and_without_an_owner_reads_back_as_written():
    private = callback_encode(generation=37, node_id="order", step=2, token="oa:b")
    group = callback_encode(
        generation=37, node_id="order", step=2, token="oa:b", owner="ui6l"
    )

    assert (private, group) == ("11:order:2:oa:b", "11.ui6l:order:2:oa:b")
    assert callback_decode(private) == CallbackData(37, "order", 2, "oa:b")
    assert callback_decode(group) == CallbackData(37, "order", 2, "oa:b", "ui6l")


@pytest.mark.parametrize(
    "data",
    [
        "1.:main:0:x",
        "1.ui6:main:0:x",
        "1.ui6lx:main:0:x",
        "1.UI6L:main:0:x",
        "1.ui-l:main:0:x",
        "1.ui6l.ui6l:main:0:x",
        ".ui6l:main:0:x",
    ],
)
def test_data_with_a_malformed_owner_tag_is_not_read(data):
    assert callback_decode(data) is None


def test_the_worst_case_size_counts_a_late_generation_and_an_owner_tag():
    size = callback_max_bytes(node_id="m" * 32, step=0, token="b" + "0" * 8)

    # "zzzzzz.zzzz:" + 32 + ":0:" + 9
    assert size == 56
