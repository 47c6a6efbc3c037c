from markupsafe import Markup

from dsl.text import MarkdownText, escape, format_pattern


def test_escape_html_escapes_markup_characters():
    # given a text with HTML's special characters
    text = '<b>Tom & "Jerry"</b>'

    # when it is escaped for HTML
    escaped = escape(text, "HTML")

    # then Telegram shows it literally
    assert escaped == "&lt;b&gt;Tom &amp; &#34;Jerry&#34;&lt;/b&gt;"


def test_escape_markdown_puts_a_backslash_before_every_reserved_character():
    assert escape("a*b_c`d[e](f)~>#+-=|{}.!\\", "MarkdownV2") == (
        "a\\*b\\_c\\`d\\[e\\]\\(f\\)\\~\\>\\#\\+\\-\\=\\|\\{\\}\\.\\!\\\\"
    )


def test_escape_without_parse_mode_keeps_text():
    assert escape("<*>", None) == "<*>"


def test_format_pattern_escapes_values_but_not_the_pattern():
    # given a pattern with markup and a value with markup characters
    pattern = "<b>Hello, {name}</b>"

    # when it is formatted for HTML and for MarkdownV2
    html = format_pattern(pattern, {"name": "<i>&"}, "HTML")
    markdown = format_pattern("*Hello, {name}*", {"name": "_x_"}, "MarkdownV2")

    # then only the values are escaped
    assert html == "<b>Hello, &lt;i&gt;&amp;</b>"
    assert markdown == "*Hello, \\_x\\_*"


def test_format_pattern_leaves_missing_and_complex_placeholders_literal():
    # given placeholders that are missing, indexed or attribute lookups
    pattern = "{known} {missing} {a.b} {a[0]} {0} {{braces}}"

    # when formatted
    text = format_pattern(pattern, {"known": 1, "a": {"b": 2}}, None)

    # then only the simple known name is replaced, and {{ }} are literal braces
    assert text == "1 {missing} {a.b} {a[0]} {0} {braces}"


def test_format_pattern_inserts_safe_values_as_they_are():
    assert format_pattern("{x}", {"x": Markup("<b>y</b>")}, "HTML") == "<b>y</b>"
    assert format_pattern("{x}", {"x": MarkdownText("*y*")}, "MarkdownV2") == "*y*"
    assert format_pattern("{x}", {"x": MarkdownText("*y*")}, "HTML") == "*y*"
    assert format_pattern("{x}", {"x": Markup("<b>")}, "MarkdownV2") == "<b\\>"


def test_format_pattern_shows_none_as_nothing_and_booleans_as_json():
    assert format_pattern("[{a}|{b}|{c}]", {"a": None, "b": True, "c": 2.5}, None) == (
        "[|true|2.5]"
    )
