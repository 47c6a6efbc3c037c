import pytest

from bots.sql.outcome import SqlRunError
from bots.sql.statements import statement_params, statement_render


@pytest.mark.parametrize(
    ("statement", "pyformat", "named"),
    [
        ("SELECT :a", "SELECT %(a)s", "SELECT :a"),
        ("SELECT :a::int, :a", "SELECT %(a)s::int, %(a)s", "SELECT :a::int, :a"),
        ("SELECT x::text", "SELECT x::text", "SELECT x::text"),
        ("SELECT ':a', E'\\':b', :c", "SELECT ':a', E'\\':b', %(c)s", None),
        ("SELECT 'it''s :a'", "SELECT 'it''s :a'", None),
        ('SELECT ":a" FROM t', 'SELECT ":a" FROM t', None),
        ("SELECT 1 -- :a\n, :b", "SELECT 1 -- :a\n, %(b)s", None),
        ("SELECT /* :a /* :b */ :c */ :d", "SELECT /* :a /* :b */ :c */ %(d)s", None),
        ("SELECT $$ :a $$, $x$ :b $x$, :c", "SELECT $$ :a $$, $x$ :b $x$, %(c)s", None),
        ("SELECT $1, a$b, :c", "SELECT $1, a$b, %(c)s", None),
        ("SELECT '50%', :p % 2", "SELECT '50%%', %(p)s %% 2", None),
        ("SELECT '%(a)s', :a", "SELECT '%%(a)s', %(a)s", None),
        ("SELECT f(x := 1), arr[1:2]", "SELECT f(x := 1), arr[1:2]", None),
    ],
)
def test_statement_render_writes_placeholders_only_for_parameters(
    statement: str, pyformat: str, named: str | None
) -> None:
    assert statement_render(statement, "pyformat") == pyformat
    assert statement_render(statement, "named") == (named or statement)


def test_statement_render_refuses_an_unterminated_string() -> None:
    with pytest.raises(SqlRunError) as caught:
        statement_render("SELECT 'unterminated :a", "pyformat")

    assert caught.value.code == "syntax_error"


def test_statement_params_returns_only_the_used_values() -> None:
    values = statement_params(
        "SELECT :a, :b::int, ':c', :a", {"a": "x", "b": 2, "c": "unused", "d": None}
    )

    assert values == {"a": "x", "b": 2}


@pytest.mark.parametrize("value", [None, True, 1.5, -(2**63), 2**63 - 1, "text"])
def test_statement_params_accepts_scalars(value: object) -> None:
    assert statement_params("SELECT :v", {"v": value}) == {"v": value}


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "missing_parameter"),
        ({"v": 2**63}, "unsupported_parameter"),
        ({"v": [1, 2]}, "unsupported_parameter"),
        ({"v": {"a": 1}}, "unsupported_parameter"),
        ({"v": b"raw"}, "unsupported_parameter"),
        ({"v": "nul\x00byte"}, "unsupported_parameter"),
    ],
)
def test_statement_params_refuses_what_a_driver_cannot_bind(
    params: dict[str, object], code: str
) -> None:
    with pytest.raises(SqlRunError) as caught:
        statement_params("SELECT :v", params)

    assert caught.value.code == code
