"""Templates that try to build huge values or leave the sandbox.

Each one must stop while rendering, quickly, with an error that says which
bound it met; a reply node that meets one sends its fallback and leaves the
conversation usable.
"""

import time

import pytest

from dsl import CommandEvent, TemplateRenderError, render_template
from dsl.text import MAX_OUTPUT_CHARS
from dsl.text.template import MAX_RENDER_SECONDS
from tests.dsl.support import Conversation, DictTranslator, context, spec_of, texts

VALUE_BOUND = "the template builds a value over 16384 characters"
NUMBER_BOUND = "the template builds a number that is too large"
# Far above what any of these takes when it is refused early, far below
# what building the value would take.
DEADLINE_SECONDS = 2.0

# Seven levels of eight references to the level below: 8**8 items, a
# string of about 50 million characters, in a few hundred bytes of memory.
_NESTED = "{% set a = [1, 2, 3, 4, 5, 6, 7, 8] %}" + (
    "{% set a = [a, a, a, a, a, a, a, a] %}" * 7
)


def _render(source, variables=None, parse_mode="HTML"):
    return render_template(
        source,
        variables=variables or {},
        translator=DictTranslator({"hi": "Hi, {name}"}, "en"),
        parse_mode=parse_mode,
        user={"id": 7, "first_name": "Ann"},
    )


def _refusal(source, variables=None):
    started = time.monotonic()
    with pytest.raises(TemplateRenderError) as caught:
        _render(source, variables)

    return str(caught.value), time.monotonic() - started


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('{{ "x" * 10**9 }}', VALUE_BOUND),
        ('{{ 10**9 * "x" }}', VALUE_BOUND),
        ('{{ ["x"] * 10**9 }}', VALUE_BOUND),
        ("{{ (1,) * 10**9 }}", VALUE_BOUND),
        ('{{ "a" * 10000 + "b" * 10000 }}', VALUE_BOUND),
        ("{{ 10 ** (10**9) }}", NUMBER_BOUND),
        ("{{ 10**1000 * 10**1000 * 10**1000 * 10**1000 * 10**1000 }}", NUMBER_BOUND),
        (
            "{% for i in range(10**6) %}{% for j in range(10**6) %}"
            "{% endfor %}{% endfor %}",
            "range() is limited to 1000 items",
        ),
        (
            "{% for i in range(1000) %}{% for j in range(1000) %}"
            "{% for k in range(1000) %}{% endfor %}{% endfor %}{% endfor %}",
            "the template loops more than 10000 times",
        ),
        (
            "{% set ns = namespace(s='a') %}{% for i in range(1000) %}"
            "{% set ns.s = 'a' ~ ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
            VALUE_BOUND,
        ),
        (
            "{% set ns = namespace(s='abc') %}{% for i in range(1000) %}"
            "{% set ns.s = ns.s + ns.s %}{% endfor %}",
            VALUE_BOUND,
        ),
        (
            '{{ "%s" % ("x" * 10000) }}',
            "the % operator on text is not available; use ~ or t()",
        ),
        (
            '{{ "%999999999s" % 1 }}',
            "the % operator on text is not available; use ~ or t()",
        ),
        ('{{ "x"|center(10**9) }}', "line 1: No filter named 'center'."),
        ('{{ "%s"|format("x") }}', "line 1: No filter named 'format'."),
        ('{{ "x"|indent(10**9) }}', "line 1: No filter named 'indent'."),
        (
            '{{ "{:>999999999}".format(1) }}',
            "access to 'format' of a 'str' value is not allowed",
        ),
        ('{{ "x".rjust(10**9) }}', "access to 'rjust' of a 'str' value is not allowed"),
        ('{{ ("x" * 10000)|replace("", "yy") }}', VALUE_BOUND),
        ('{{ range(1000)|join("x" * 1000) }}', VALUE_BOUND),
        ("{{ [1]|batch(10**9, 'x')|list }}", "batch() is limited to 1000 items"),
        (
            "{% set a = [range(1000)|list] * 1000 %}{% set b = [a] * 1000 %}",
            VALUE_BOUND,
        ),
        (_NESTED + "{{ a }}", VALUE_BOUND),
        (_NESTED + "{{ 'x' ~ a }}", VALUE_BOUND),
        (_NESTED + "{{ a|tojson }}", VALUE_BOUND),
        (_NESTED + "{{ t('hi', name=a) }}", VALUE_BOUND),
        (
            "{% set ns = namespace(x=[1]) %}{% for i in range(40) %}"
            "{% set ns.x = [ns.x, ns.x] %}{% endfor %}",
            VALUE_BOUND,
        ),
        (
            "{% set d = dict(a='x' * 9000) %}"
            "{% set e = dict(a=d.items(), b=d.items()) %}",
            VALUE_BOUND,
        ),
        ("{{ [10**1000] * 100 }}", VALUE_BOUND),
    ],
)
def test_a_template_building_a_huge_value_stops_quickly_with_the_bound_it_met(
    source, message
):
    refused, seconds = _refusal(source)

    assert refused == message
    assert seconds < DEADLINE_SECONDS


def test_endless_recursion_stops_at_the_interpreter_s_limit():
    refused, seconds = _refusal(
        "{% macro grow(n) %}{{ grow(n + 1) }}{% endmacro %}{{ grow(0) }}"
    )

    # Where the limit is met varies ("... in __instancecheck__").
    assert refused.startswith("maximum recursion depth exceeded")
    assert seconds < DEADLINE_SECONDS


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(
            "{% set l = range(1000)|list|reverse|list %}"
            "{% for i in range(1000) %}{% for j in range(10) %}"
            "{{ l|sort|first }}{% endfor %}{% endfor %}",
            id="sorting_in_a_long_loop",
        ),
        pytest.param(
            "{% macro f(n) %}{% if n %}{% set a = f(n - 1) %}{% set b = f(n - 1) %}"
            "{% endif %}{% endmacro %}{{ f(40) }}",
            id="macro_calling_itself_twice",
        ),
        pytest.param(
            "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
            "{% endmacro %}{{ f(40) }}",
            id="macro_emitting_nothing_twice",
        ),
    ],
)
def test_a_template_made_only_of_small_steps_stops_at_the_time_bound(source):
    # given a template whose every step is within bounds, but with 2**40 of
    # them (or ten thousand sorts of a thousand items)

    # when it is rendered
    refused, seconds = _refusal(source)

    # then it stops once it has run for the render's time bound
    assert refused == f"the template runs longer than {MAX_RENDER_SECONDS:g} s"
    assert MAX_RENDER_SECONDS <= seconds < MAX_RENDER_SECONDS + DEADLINE_SECONDS


def test_output_growing_in_a_loop_stops_at_the_output_cap():
    source = "{% for i in range(1000) %}{% for j in range(9) %}{{ j }}{% endfor %}"
    source += "{{ 'y' * 100 }}{% endfor %}"

    refused, seconds = _refusal(source)

    assert refused == f"the output is longer than {MAX_OUTPUT_CHARS} characters"
    assert seconds < DEADLINE_SECONDS


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "{{ ''.__class__.__mro__ }}",
            "access to '__class__' of a 'str' value is not allowed",
        ),
        (
            "{{ ''.__class__.__mro__[1].__subclasses__() }}",
            "access to '__class__' of a 'str' value is not allowed",
        ),
        (
            "{{ cycler.__init__.__globals__ }}",
            "access to '__init__' of a 'type' value is not allowed",
        ),
        (
            "{{ joiner.__init__.__globals__ }}",
            "access to '__init__' of a 'type' value is not allowed",
        ),
        (
            "{{ namespace.__init__.__globals__ }}",
            "access to '__init__' of a 'function' value is not allowed",
        ),
        (
            "{{ self._TemplateReference__context }}",
            "access to '_TemplateReference__context' of a 'TemplateReference' "
            "value is not allowed",
        ),
        (
            "{{ self._TemplateReference__context.parent }}",
            "access to '_TemplateReference__context' of a 'TemplateReference' "
            "value is not allowed",
        ),
        (
            "{{ t.__globals__ }}",
            "access to '__globals__' of a 'function' value is not allowed",
        ),
        (
            "{{ range.__globals__['__builtins__'] }}",
            "access to '__globals__' of a 'function' value is not allowed",
        ),
        (
            "{{ vars.__class__.__init__ }}",
            "access to '__class__' of a 'dict' value is not allowed",
        ),
        (
            "{{ (1).__class__.__base__.__subclasses__() }}",
            "access to '__class__' of a 'int' value is not allowed",
        ),
        (
            "{{ ''|attr('__class__') }}",
            "access to '__class__' of a 'str' value is not allowed",
        ),
    ],
)
def test_sandbox_escapes_are_refused(source, message):
    refused, _seconds = _refusal(source)

    assert refused == message


@pytest.mark.parametrize("source", ["{{ lipsum.__globals__ }}", "{{ url_for }}"])
def test_globals_jinja_offers_elsewhere_are_not_there(source):
    # Missing names render as nothing, so these leak nothing: the globals
    # are simply absent from the template's world.
    assert _render(source) == ""


def test_calling_a_global_jinja_offers_elsewhere_is_an_error():
    refused, _seconds = _refusal("{{ lipsum(10**9) }}")

    assert refused == "'lipsum' is undefined"


def test_the_conversation_data_may_be_shown_whole_but_not_multiplied():
    # given conversation data well over the value bound (SQL rows)
    rows = [{"id": n, "name": f"Customer number {n:05}"} for n in range(1000)]
    variables = {"rows": rows}

    # when a template counts, sorts and lists them, or repeats them
    shown = _render(
        "{{ vars.rows|length }} {{ (vars.rows|sort(attribute='id')|last).name }}",
        variables,
    )
    names = _render("{{ vars.rows|map(attribute='id')|join(',') }}", variables)
    refused, seconds = _refusal("{{ [vars.rows, vars.rows] }}", variables)

    # then the data itself is usable, a copy of it twice over is not
    assert shown == "1000 Customer number 00999"
    assert names == ",".join(str(n) for n in range(1000))
    assert refused.startswith("the template builds a value over ")
    assert seconds < DEADLINE_SECONDS


def test_ordinary_lists_dicts_and_tuples_still_render():
    source = (
        "{% set a, b = 1, 2 %}{{ a }}{{ b }} {{ [1, 'x'] }} {{ {'k': (1, 2)} }} "
        "{% for k, v in dict(z=3)|items %}{{ k }}={{ v }}{% endfor %}"
    )

    assert _render(source, parse_mode=None) == "12 [1, 'x'] {'k': (1, 2)} z=3"


@pytest.mark.parametrize(
    ("template", "detail"),
    [
        ('{{ "x" * 10**9 }}', VALUE_BOUND),
        (_NESTED + "{{ a }}", VALUE_BOUND),
        (
            "{% for i in range(1000) %}{% for j in range(1000) %}"
            "{% for k in range(1000) %}{% endfor %}{% endfor %}{% endfor %}",
            "the template loops more than 10000 times",
        ),
        ("{{ ''.__class__ }}", "access to '__class__' of a 'str' value is not allowed"),
    ],
)
def test_a_reply_over_a_bound_sends_the_fallback_and_the_conversation_goes_on(
    template, detail
):
    # given a reply node whose template meets a bound
    table = {"main.text": "Main", "go": "Go"}
    menu = {
        "type": "menu.v1",
        "text": "main.text",
        "rows": [[{"label": "go", "goto": "main"}]],
    }
    reply = {"type": "reply_template.v1", "template": template}
    spec = spec_of({"main": menu, "boom": reply}, commands={"boom": {"node": "boom"}})
    conversation = Conversation(spec, context(table))

    # when the user reaches it, and then writes again
    failed = conversation.send(CommandEvent(command="boom"))
    after = conversation.send(CommandEvent(command="start"))

    # then the user gets the apology and the start node, the incident names
    # the bound, and the next message is answered as usual
    assert texts(failed) == ["Sorry, something went wrong. Let's start over.", "Main"]
    assert [(i.node_id, i.code, i.detail) for i in failed.incidents] == [
        ("boom", "template_error", detail)
    ]
    assert conversation.state.node == "main"
    assert texts(after) == ["Main"]
    assert after.incidents == []
