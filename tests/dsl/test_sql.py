import pytest

from dsl import SqlParseError, sql_parse


def test_named_parameters_are_found_in_order_once_each():
    parsed = sql_parse("SELECT * FROM t WHERE a = :a AND b = :b_2 OR a = :a")

    assert parsed.param_names == ("a", "b_2")
    assert (
        parsed.render("named") == "SELECT * FROM t WHERE a = :a AND b = :b_2 OR a = :a"
    )
    assert parsed.render("pyformat") == (
        "SELECT * FROM t WHERE a = %(a)s AND b = %(b_2)s OR a = %(a)s"
    )


def test_casts_are_not_parameters():
    parsed = sql_parse("SELECT :v::int, x::text FROM t")

    assert parsed.param_names == ("v",)
    assert parsed.render("pyformat") == "SELECT %(v)s::int, x::text FROM t"


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT 'a:b', 'it''s :x' FROM t WHERE c = :p",
        "SELECT E'\\':x' FROM t WHERE c = :p",
        'SELECT ":x" FROM t WHERE c = :p',
        "SELECT 1 -- :x\nFROM t WHERE c = :p",
        "SELECT /* :x ; */ 1 FROM t WHERE c = :p",
        "SELECT $$ :x ; $$, $tag$ :y $$ $tag$ FROM t WHERE c = :p",
    ],
)
def test_quoted_text_comments_and_dollar_quotes_hide_colons(statement):
    # given a statement whose only real parameter is :p

    # when parsed
    parsed = sql_parse(statement)

    # then nothing quoted or commented is a parameter, and the text is kept
    assert parsed.param_names == ("p",)
    assert parsed.render("named") == statement


def test_pyformat_doubles_every_literal_percent():
    parsed = sql_parse("SELECT * FROM t WHERE name LIKE '%' || :q || '%' AND r % 2 = 0")

    assert parsed.render("pyformat") == (
        "SELECT * FROM t WHERE name LIKE '%%' || %(q)s || '%%' AND r %% 2 = 0"
    )
    assert parsed.render("named") == (
        "SELECT * FROM t WHERE name LIKE '%' || :q || '%' AND r % 2 = 0"
    )


def test_one_trailing_semicolon_is_accepted():
    parsed = sql_parse("SELECT :a; -- done\n")

    assert parsed.param_names == ("a",)


def test_positional_dollar_parameters_are_not_dollar_quotes():
    assert sql_parse("SELECT $1, :a").param_names == ("a",)


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("SELECT 1; DELETE FROM t", "The statement holds more than one statement."),
        ("SELECT 1;;", "The statement holds more than one statement."),
        ("SELECT 1; 'x'", "The statement holds more than one statement."),
        ("SELECT 'open", "The statement has an unterminated quoted string."),
        ('SELECT "open', "The statement has an unterminated quoted identifier."),
        ("SELECT /* open", "The statement has an unterminated /* comment."),
        ("SELECT $$ open", "The statement has an unterminated dollar-quoted string."),
        ("  -- only a comment\n", "The statement is empty."),
    ],
)
def test_unusable_statements_are_refused(statement, message):
    with pytest.raises(SqlParseError) as caught:
        sql_parse(statement)

    assert str(caught.value) == message


def test_a_semicolon_inside_quotes_is_not_a_second_statement():
    assert sql_parse("INSERT INTO t (a) VALUES ('x;y')").param_names == ()


def test_unknown_render_style_is_refused():
    with pytest.raises(ValueError, match="Unknown parameter style 'qmark'"):
        sql_parse("SELECT 1").render("qmark")  # type: ignore[arg-type]


def test_nested_block_comments_hide_their_parameters() -> None:
    parsed = sql_parse("SELECT /* :a /* :b */ :c */ :d")

    assert parsed.param_names == ("d",)
    assert parsed.render("pyformat") == "SELECT /* :a /* :b */ :c */ %(d)s"
