import pytest

from dsl import TemplateRenderError, render_template
from dsl.text import MAX_OUTPUT_CHARS, template_check, template_translation_keys
from tests.dsl.support import DictTranslator

TABLE = {
    "cups": {"one": "{count} cup", "other": "{count} cups"},
    "hello": "<b>Hello, {name}</b>",
    "star": "*{name}*",
}


def _render(source, variables=None, parse_mode="HTML", locale="en", table=TABLE):
    return render_template(
        source,
        variables=variables or {},
        translator=DictTranslator(table, locale),
        parse_mode=parse_mode,
        user={"id": 7, "first_name": "Ann"},
    )


def test_html_template_escapes_values_and_keeps_its_own_markup():
    # given a value with every HTML special character
    variables = {"v": "<a href='x'>&</a>"}

    # when rendered in an HTML template
    text = _render("<b>{{ vars.v }}</b>", variables)

    # then the value is escaped and the template's tags are kept
    assert text == "<b>&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;</b>"


def test_markdown_template_escapes_values_and_keeps_its_own_markup():
    # given a value with MarkdownV2's reserved characters
    variables = {"v": "*bold* _it_ `code` 1.5!"}

    # when rendered in a MarkdownV2 template
    text = _render("*{{ vars.v }}*", variables, parse_mode="MarkdownV2")

    # then each reserved character of the value is escaped
    assert text == "*\\*bold\\* \\_it\\_ \\`code\\` 1\\.5\\!*"


def test_plain_template_leaves_values_as_they_are():
    assert _render("{{ vars.v }}", {"v": "<*>"}, parse_mode=None) == "<*>"


def test_t_picks_the_plural_form_and_escapes_its_params():
    # given plural patterns in English and Ukrainian
    uk = {
        "cups": {
            "one": "{count} чашка",
            "few": "{count} чашки",
            "many": "{count} чашок",
        }
    }

    # when t() is called with counts
    english = [_render(f"{{{{ t('cups', count={n}) }}}}") for n in (1, 2)]
    ukrainian = [
        _render(f"{{{{ t('cups', count={n}) }}}}", table=uk, locale="uk")
        for n in (1, 2, 5, 21)
    ]
    escaped = _render("{{ t('hello', name=vars.n) }}", {"n": "<x>"})
    starred = _render(
        "{{ t('star', name=vars.n) }}", {"n": "a*b"}, parse_mode="MarkdownV2"
    )

    # then the form follows CLDR, the pattern's markup is kept, params escaped
    assert english == ["1 cup", "2 cups"]
    assert ukrainian == ["1 чашка", "2 чашки", "5 чашок", "21 чашка"]
    assert escaped == "<b>Hello, &lt;x&gt;</b>"
    assert starred == "*a\\*b*"


def test_t_of_a_missing_key_renders_the_key():
    assert _render("{{ t('no.such.key') }}") == "no.such.key"


def test_template_sees_user_and_locale():
    assert _render("{{ user.first_name }} {{ user.id }} {{ locale }}") == "Ann 7 en"


def test_missing_values_and_none_render_as_nothing():
    assert _render("[{{ vars.nope.deeper }}|{{ none }}]") == "[|]"


def test_loops_and_block_tags_leave_no_blank_lines():
    source = "{% for x in vars.drinks %}\n- {{ x }}\n{% endfor %}"
    assert _render(source, {"drinks": ["a", "b"]}) == "- a\n- b\n"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ ''.__class__ }}", "access to '__class__' of a 'str' value is not allowed"),
        (
            "{{ ''.__class__.__mro__[1].__subclasses__() }}",
            "access to '__class__' of a 'str' value is not allowed",
        ),
        (
            "{{ t.__globals__ }}",
            "access to '__globals__' of a 'function' value is not allowed",
        ),
        (
            "{{ '{:>99}'.format(1) }}",
            "access to 'format' of a 'str' value is not allowed",
        ),
        ("{{ 'x'.ljust(99) }}", "access to 'ljust' of a 'str' value is not allowed"),
        (
            "{{ (1).to_bytes(9, 'big') }}",
            "access to 'to_bytes' of a 'int' value is not allowed",
        ),
        ("{{ '%99s' % 1 }}", "the % operator on text is not available; use ~ or t()"),
        ("{{ 'a' * 20000 }}", "the template builds a value over 16384 characters"),
        ("{{ ['a'] * 20000 }}", "the template builds a value over 16384 characters"),
        ("{{ ['aaaa'] * 5000 }}", "the template builds a value over 16384 characters"),
        ("{{ 2 ** 10000 }}", "the template builds a number that is too large"),
        ("{{ range(5000)|list }}", "range() is limited to 1000 items"),
        ("{{ 'x'|center(99999) }}", "line 1: No filter named 'center'."),
        ("{{ lipsum(1000) }}", "'lipsum' is undefined"),
        ("{{ 1 / 0 }}", "division by zero"),
    ],
)
def test_sandbox_refuses(source, message):
    # given a template reaching for Python internals or building a huge value

    # when it is rendered
    with pytest.raises(TemplateRenderError) as caught:
        _render(source)

    # then it stops with a clear error
    assert str(caught.value) == message


def test_output_is_capped_while_rendering():
    # given a template whose output grows past the cap piece by piece
    source = "{% for i in range(1000) %}{{ 'x' * 100 }}{% endfor %}"

    # when rendered
    with pytest.raises(TemplateRenderError) as caught:
        _render(source)

    # then rendering stops at the cap
    assert (
        str(caught.value) == f"the output is longer than {MAX_OUTPUT_CHARS} characters"
    )


def test_doubling_a_string_in_a_loop_stops_at_the_value_bound():
    source = (
        "{% set ns = namespace(s='ab') %}"
        "{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}"
    )
    with pytest.raises(TemplateRenderError) as caught:
        _render(source)

    assert str(caught.value) == "the template builds a value over 16384 characters"


def test_replace_and_join_check_the_size_they_would_build():
    with pytest.raises(TemplateRenderError) as replaced:
        _render("{{ ('a' * 1000)|replace('a', 'aaaaaaaaaaaaaaaaaaaa') }}")
    with pytest.raises(TemplateRenderError) as joined:
        _render("{{ range(1000)|join('x' * 100) }}")

    assert str(replaced.value) == "the template builds a value over 16384 characters"
    assert str(joined.value) == "the template builds a value over 16384 characters"


def test_nested_loops_draw_from_one_iteration_budget():
    source = (
        "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}"
    )
    with pytest.raises(TemplateRenderError) as caught:
        _render(source)

    assert str(caught.value) == "the template loops more than 10000 times"


def test_text_built_inside_macros_counts_against_the_budget():
    # given macros that double their output at each level, emitting nothing
    # at the top until the end
    source = (
        "{% macro a() %}{{ 'x' * 10000 }}{% endmacro %}"
        "{% macro b() %}{{ a() }}{{ a() }}{% endmacro %}"
        "{% macro c() %}{{ b() }}{{ b() }}{% endmacro %}"
        "{% set captured %}{{ c() }}{{ c() }}{% endset %}{{ captured|length }}"
    )
    with pytest.raises(TemplateRenderError) as caught:
        _render(source)

    assert str(caught.value) == "the template produces more than 65536 characters"


def test_syntax_errors_name_their_line():
    with pytest.raises(TemplateRenderError) as caught:
        template_check("line one\n{% if %}")

    assert (
        str(caught.value)
        == "line 2: Expected an expression, got 'end of statement block'"
    )


def test_reserved_names_and_includes_are_refused():
    with pytest.raises(TemplateRenderError) as reserved:
        template_check("{% set _bf_guard = 1 %}")
    with pytest.raises(TemplateRenderError) as included:
        template_check("{% include 'other.html' %}")

    assert str(reserved.value) == "line 1: names starting with _bf are reserved"
    assert (
        str(included.value)
        == "line 1: templates cannot include or import other templates"
    )


def test_translation_keys_lists_literal_keys_only():
    source = "{{ t('a.b') }}{{ t('c', count=2) }}{{ t('d.' ~ x) }}{{ t('a.b') }}"
    assert template_translation_keys(source) == ["a.b", "c"]


def test_every_special_character_is_escaped_in_both_parse_modes():
    # given a value holding HTML's and MarkdownV2's special characters
    variables = {"v": "<a & b> *c* _d_ `e`"}

    # when it is rendered in each parse mode
    html = _render("{{ vars.v }}", variables, parse_mode="HTML")
    markdown = _render("{{ vars.v }}", variables, parse_mode="MarkdownV2")

    # then each mode escapes exactly its own reserved characters
    assert html == "&lt;a &amp; b&gt; *c* _d_ `e`"
    assert markdown == "<a & b\\> \\*c\\* \\_d\\_ \\`e\\`"
