import pytest

from dsl import split_text
from dsl.text import utf16_length


def test_utf16_length_counts_emoji_as_two_units():
    assert utf16_length("a😀é") == 4


def test_utf16_length_counts_a_lone_surrogate_as_one_unit():
    assert utf16_length("Ann\ud83d") == 4
    assert utf16_length("\udfff") == 1


@pytest.mark.parametrize(
    ("text", "chunk"),
    [
        ("\udfff", "\ufffd"),
        ("Ann\ud83d", "Ann\ufffd"),
        ("<b>\udc00x\ud800</b>", "<b>\ufffdx\ufffd</b>"),
        # a pair written as two code points is one character
        ("\ud83d\ude00!", "😀!"),
    ],
)
def test_lone_surrogates_become_replacement_characters(text, chunk):
    assert split_text(text, parse_mode="HTML") == [chunk]


def test_a_long_text_of_lone_surrogates_splits_into_encodable_chunks():
    chunks = split_text("\ud83d" * 9000, parse_mode=None)

    assert chunks == ["\ufffd" * 4096, "\ufffd" * 4096, "\ufffd" * 808]
    assert all(chunk.encode("utf-8") for chunk in chunks)


def test_text_that_fits_is_returned_whole():
    assert split_text("<b>abcd</b>", parse_mode="HTML", limit=4) == ["<b>abcd</b>"]


def test_emoji_count_as_two_units_and_are_never_cut():
    assert split_text("😀😀😀", parse_mode=None, limit=4) == ["😀😀", "😀"]
    assert split_text("a😀😀", parse_mode=None, limit=4) == ["a😀", "😀"]


def test_split_prefers_a_paragraph_break():
    text = "aaaa bbbb\ncccc\n\ndddd"
    assert split_text(text, parse_mode=None, limit=17) == ["aaaa bbbb\ncccc", "dddd"]


def test_split_falls_back_to_a_line_break():
    text = "aaaa bbbb\ncccc dddd"
    assert split_text(text, parse_mode=None, limit=12) == ["aaaa bbbb", "cccc dddd"]


def test_split_falls_back_to_a_space():
    assert split_text("aaaa bbbb cccc", parse_mode=None, limit=10) == [
        "aaaa bbbb",
        "cccc",
    ]


def test_split_cuts_a_word_longer_than_the_limit():
    assert split_text("abcdefghij", parse_mode=None, limit=4) == ["abcd", "efgh", "ij"]


def test_html_tags_are_closed_and_reopened_across_chunks():
    # given bold text longer than the limit
    text = "<b>aaaa <i>bbbb</i></b>"

    # when split
    chunks = split_text(text, parse_mode="HTML", limit=5)

    # then each chunk is valid HTML on its own
    assert chunks == ["<b>aaaa</b>", "<b><i>bbbb</i></b>"]


def test_a_link_is_reopened_with_its_attributes():
    text = '<a href="https://x.y/?a=1&amp;b=2">link text here</a>'
    assert split_text(text, parse_mode="HTML", limit=9) == [
        '<a href="https://x.y/?a=1&amp;b=2">link text</a>',
        '<a href="https://x.y/?a=1&amp;b=2">here</a>',
    ]


def test_html_entities_count_as_one_character_and_are_never_cut():
    assert split_text("&amp;&lt;&#128512;", parse_mode="HTML", limit=2) == [
        "&amp;&lt;",
        "&#128512;",
    ]


def test_entities_telegram_does_not_read_count_as_written():
    # Telegram reads only &lt; &gt; &amp; &quot; and references to a character
    assert split_text("&nbsp;&#0;", parse_mode="HTML", limit=6) == [
        "&nbsp;",
        "&#0;",
    ]
    assert split_text("&#" + "1" * 5000 + ";", parse_mode="HTML", limit=4096) == [
        "&#" + "1" * 4094,
        "1" * 906 + ";",
    ]


def test_a_markdown_code_block_moves_whole_to_the_next_chunk():
    text = "intro text\n```python\nprint(1)\nprint(2)\n```"
    assert split_text(text, parse_mode="MarkdownV2", limit=20) == [
        "intro text",
        "```python\nprint(1)\nprint(2)\n```",
    ]


def test_a_markdown_code_block_longer_than_a_chunk_is_cut_at_a_line():
    text = "```\nline one\nline two\n```"
    assert split_text(text, parse_mode="MarkdownV2", limit=10) == [
        "```\nline one\n```",
        "```\nline two\n```",
    ]


def test_markdown_markers_are_closed_and_reopened():
    text = "*bold words here*"
    assert split_text(text, parse_mode="MarkdownV2", limit=10) == [
        "*bold words*",
        "*here*",
    ]


def test_markdown_escapes_count_as_one_character_and_are_never_cut():
    assert split_text("a\\.b\\.c", parse_mode="MarkdownV2", limit=2) == [
        "a\\.",
        "b\\.",
        "c",
    ]


def test_telegram_limit_is_the_default():
    # given 4096 characters of text and one more word
    text = "x" * 4090 + " abcdefgh"

    # when split with the default limit
    chunks = split_text(text, parse_mode=None)

    # then the break goes at the space
    assert [len(chunk) for chunk in chunks] == [4090, 8]


def test_limit_must_be_positive():
    with pytest.raises(ValueError, match="limit must be positive"):
        split_text("x", parse_mode=None, limit=0)
