"""Sandboxed Jinja2 templates with bounded output, loops and values.

Templates are written by staff but render values typed by users, so they
run in Jinja's immutable sandbox with three extra bounds, none of which a
reasonable message template comes near:

- every piece of text a template emits (in macros and captured blocks too)
  counts against a budget, and the final output has a cap;
- every ``for`` loop draws from one iteration budget per render;
- the operators, filters and methods that can build a large value from a
  small one (``*``, ``+``, ``~``, ``**``, ``replace``, ``join``...) check
  the size of the result before building it, and the unbounded ones
  (``%`` on strings, ``str.format``, ``center``, ``indent``...) are gone.

The bounds rewrite the template's syntax tree before it is compiled: loop
iterables and ``~`` go through a per-render guard object, and literal text
is counted next to where it is emitted.
"""

import functools
import itertools
import math
import time
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    ValuesView,
)
from contextvars import ContextVar
from typing import Any

from jinja2 import (
    ChainableUndefined,
    Template,
    TemplateSyntaxError,
    Undefined,
    nodes,
    pass_context,
    pass_eval_context,
)
from jinja2 import filters as jinja_filters
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace
from jinja2.visitor import NodeTransformer
from markupsafe import Markup, soft_str

from dsl.context import Translator
from dsl.errors import TemplateRenderError
from dsl.messages import translate
from dsl.text.markup import MarkdownText, ParseMode, escape, mark_safe, value_text

# Four Telegram messages; a longer reply is a document, not a chat message.
MAX_OUTPUT_CHARS = 16_384
# The largest string or list any single operation may build.
MAX_VALUE_CHARS = MAX_OUTPUT_CHARS
# All text emitted anywhere, macros and captured blocks included.
MAX_PRODUCED_CHARS = 4 * MAX_OUTPUT_CHARS
# Counting the conversation's data stops here; state of that size is far
# beyond what a conversation stores.
MAX_DATA_CHARS = 4_000_000
MAX_ITERATIONS = 10_000
# Wall-clock time one render may take. Every bounded operation is cheap, but
# thousands of them (a sort in a long loop, a macro calling itself twice)
# add up; a message template needs milliseconds.
MAX_RENDER_SECONDS = 1.0
MAX_RANGE = 1_000
MAX_INT_BITS = 4_096
MAX_SOURCE_CHARS = 20_000

_GUARD = "_bf_guard"
_RESERVED_PREFIX = "_bf"

# Filters kept from Jinja's defaults. Dropped: those that build text from a
# number (center, indent, format, wordwrap), slice (builds a list per
# requested slice), random (a template must be deterministic), and the
# debugging and HTML helpers (pprint, urlize, xmlattr).
_KEPT_FILTERS = frozenset(
    {
        "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e",
        "escape", "filesizeformat", "first", "float", "forceescape", "groupby",
        "int", "items", "last", "length", "list", "lower", "map", "max", "min",
        "reject", "rejectattr", "reverse", "round", "safe", "select",
        "selectattr", "sort", "string", "striptags", "sum", "title", "tojson",
        "trim", "truncate", "unique", "upper", "urlencode", "wordcount",
    }
)  # fmt: skip

# Methods of built-in values a template may call; everything else on them
# (str.format, str.ljust, int.to_bytes, ...) is refused.
_STR_METHODS = frozenset(
    {
        "capitalize", "casefold", "count", "endswith", "find", "isalnum",
        "isalpha", "isdecimal", "isdigit", "islower", "isnumeric", "isspace",
        "istitle", "isupper", "lower", "lstrip", "partition", "removeprefix",
        "removesuffix", "rfind", "rpartition", "rsplit", "rstrip", "split",
        "splitlines", "startswith", "strip", "swapcase", "title", "upper",
    }
)  # fmt: skip
_SAFE_METHODS: tuple[tuple[type, frozenset[str]], ...] = (
    (str, _STR_METHODS),
    (dict, frozenset({"get", "items", "keys", "values"})),
    (list, frozenset({"count", "index"})),
    (tuple, frozenset({"count", "index"})),
    (int, frozenset()),
    (float, frozenset()),
    (bytes, frozenset()),
    (set, frozenset()),
    (frozenset, frozenset()),
)


# Containers whose text shows every item. A value that holds the same list
# many times takes little memory but renders to text exponentially long, so
# sizes count each item each time it appears, as its text would.
_CONTAINERS = (list, tuple, set, frozenset, KeysView, ValuesView, ItemsView)
_SCALARS = frozenset({type(None), bool, float})

# The bound of one render: the larger of MAX_VALUE_CHARS and the size of the
# conversation's own data, which a template may show whole.
_value_bound: ContextVar[int] = ContextVar("_value_bound", default=MAX_VALUE_CHARS)
_deadline: ContextVar[float] = ContextVar("_deadline", default=math.inf)


def _parts(value: object) -> Iterator[Any] | None:
    if isinstance(value, dict):
        return itertools.chain.from_iterable(value.items())
    if isinstance(value, Namespace):
        attrs = getattr(value, "_Namespace__attrs", {})
        return itertools.chain.from_iterable(attrs.items())
    if isinstance(value, _CONTAINERS):
        return iter(value)

    return None


def _size(value: object, limit: int | None = None) -> int:
    """Return about how many characters the value's text takes.

    Counting stops once it passes ``limit`` (the render's bound unless
    given), so a value built to be huge costs no more than the bound.
    """
    bound = _value_bound.get() if limit is None else limit
    total = 0
    waiting: list[Iterator[Any]] = [iter((value,))]
    while waiting:
        # Resumed where it stopped when an item was a container to enter.
        for item in waiting[-1]:
            kind = type(item)
            if kind is str:
                total += len(item)
            elif kind is int:
                # Decimal digits: about a third of the bits.
                total += item.bit_length() // 3 + 1
            elif kind in _SCALARS:
                total += 1
            elif isinstance(item, str):
                total += len(item)
            else:
                total += 1
                parts = _parts(item)
                if parts is not None:
                    waiting.append(parts)
                    break
            if total > bound:
                return total
        else:
            waiting.pop()

    return total


def _check_time() -> None:
    if time.monotonic() > _deadline.get():
        raise SecurityError(f"the template runs longer than {MAX_RENDER_SECONDS:g} s")


def _check_size(size: int) -> None:
    _check_time()
    bound = _value_bound.get()
    if size > bound:
        raise SecurityError(f"the template builds a value over {bound} characters")


def _checked(value: Any) -> Any:
    _check_size(_size(value))

    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "%" and isinstance(left, str):
        raise SecurityError("the % operator on text is not available; use ~ or t()")
    if operator == "+" and isinstance(left, (str, list, tuple)):
        _check_size(_size(left) + _size(right))
    if operator == "*":
        for sequence, times in ((left, right), (right, left)):
            if isinstance(sequence, (str, list, tuple)) and _is_int(times):
                _check_size(_size(sequence) * max(times, 0))
        if (
            _is_int(left)
            and _is_int(right)
            and (left.bit_length() + right.bit_length() > MAX_INT_BITS)
        ):
            raise SecurityError("the template builds a number that is too large")
    if (
        operator == "**"
        and _is_int(left)
        and _is_int(right)
        and abs(left) > 1
        and right * left.bit_length() > MAX_INT_BITS
    ):
        raise SecurityError("the template builds a number that is too large")


def _guarded_filter(function: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter so that a result over the size bound is refused."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        if isinstance(result, str) or _parts(result) is not None:
            _check_size(_size(result))

        return result

    return wrapper


@pass_eval_context
def _filter_replace(
    eval_ctx: EvalContext, s: Any, old: Any, new: Any, count: int | None = None
) -> str:
    text, before, after = str(s), str(old), str(new)
    hits = text.count(before) if before else len(text) + 1
    if count is not None:
        hits = min(hits, max(count, 0))
    _check_size(len(text) + hits * (len(after) - len(before)))

    return jinja_filters.do_replace(eval_ctx, s, old, new, count)


@pass_eval_context
def _filter_join(
    eval_ctx: EvalContext,
    value: Iterable[Any],
    d: str = "",
    attribute: str | int | None = None,
) -> str:
    items = list(value)
    if attribute is None:
        parts = sum(len(soft_str(item)) for item in items)
        _check_size(parts + len(str(d)) * max(len(items) - 1, 0))
    result = jinja_filters.sync_do_join(eval_ctx, items, d, attribute)
    _check_size(len(result))

    return result


def _filter_batch(
    value: Iterable[Any], linecount: int, fill_with: Any = None
) -> Iterator[list[Any]]:
    if linecount > MAX_RANGE:
        raise SecurityError(f"batch() is limited to {MAX_RANGE} items")

    return jinja_filters.do_batch(value, linecount, fill_with)


def _built_by(factory: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a constructor so that a value over the size bound is refused."""

    def build(*args: Any, **kwargs: Any) -> Any:
        return _checked(factory(*args, **kwargs))

    return build


def _range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise SecurityError(f"range() is limited to {MAX_RANGE} items")

    return numbers


class _Guard:
    """Budgets of one render; reached from the template as ``_bf_guard``."""

    def __init__(self, parse_mode: ParseMode | None) -> None:
        self.parse_mode = parse_mode
        self.produced = 0
        self.iterations = 0

    def iterate(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            _check_time()
            self.iterations += 1
            if self.iterations > MAX_ITERATIONS:
                raise SecurityError(
                    f"the template loops more than {MAX_ITERATIONS} times"
                )
            yield item

    def concat(self, *parts: Any) -> str:
        _check_size(sum(_size(part) for part in parts))
        texts = [soft_str(part) for part in parts]
        if self.parse_mode == "HTML" and any(hasattr(p, "__html__") for p in parts):
            return Markup("").join(parts)
        if self.parse_mode == "MarkdownV2" and any(
            isinstance(part, MarkdownText) for part in parts
        ):
            return MarkdownText("".join(self._markdown(part) for part in parts))

        return "".join(texts)

    def built(self, value: Any) -> Any:
        return _checked(value)

    def count(self, size: int) -> str:
        self._produce(size)

        return ""

    def emit(self, value: Any) -> Any:
        if isinstance(value, Undefined):
            value = None
        _check_time()
        if _parts(value) is not None:
            # Text already built was counted when built; a container's text
            # is built here, so it is measured first.
            _check_size(_size(value))
        is_safe = hasattr(value, "__html__") or isinstance(value, MarkdownText)
        text = value if isinstance(value, str) else value_text(value)
        self._produce(len(text))
        if self.parse_mode == "MarkdownV2":
            return self._markdown(value)

        return value if is_safe else text

    def _markdown(self, value: Any) -> str:
        if isinstance(value, MarkdownText):
            return value
        text = value if isinstance(value, str) else value_text(value)

        return escape(text, "MarkdownV2")

    def _produce(self, size: int) -> None:
        self.produced += size
        if self.produced > MAX_PRODUCED_CHARS:
            raise SecurityError(
                f"the template produces more than {MAX_PRODUCED_CHARS} characters"
            )


@pass_context
def _finalize(context: Context, value: Any) -> Any:
    guard = context.get(_GUARD)
    if not isinstance(guard, _Guard):
        raise SecurityError("the template was rendered without its guard")

    return guard.emit(value)


class _Bounding(NodeTransformer):
    """Route loops, ``~`` and literal text through the render's guard."""

    def _guard_call(
        self, method: str, args: list[nodes.Node], lineno: int
    ) -> nodes.Call:
        guard = nodes.Name(_GUARD, "load", lineno=lineno)
        function = nodes.Getattr(guard, method, "load", lineno=lineno)

        return nodes.Call(function, args, [], None, None, lineno=lineno)

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = self._guard_call("iterate", [node.iter], node.lineno)

        return node

    def _built(self, node: nodes.List | nodes.Tuple | nodes.Dict) -> nodes.Node:
        self.generic_visit(node)
        if isinstance(node, nodes.Tuple) and node.ctx != "load":
            return node

        return self._guard_call("built", [node], node.lineno)

    visit_List = visit_Tuple = visit_Dict = _built

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)

        return self._guard_call("concat", list(node.nodes), node.lineno)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        children: list[nodes.Expr] = []
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                size = nodes.Const(len(child.data), lineno=child.lineno)
                children.append(self._guard_call("count", [size], child.lineno))
            children.append(child)
        node.nodes = children

        return node


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self, parse_mode: ParseMode | None) -> None:
        super().__init__(
            autoescape=parse_mode == "HTML",
            finalize=_finalize,
            undefined=ChainableUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )
        self.filters = {
            name: _guarded_filter(function)
            for name, function in self.filters.items()
            if name in _KEPT_FILTERS
        }
        self.filters["replace"] = _filter_replace
        self.filters["join"] = _filter_join
        self.filters["batch"] = _filter_batch
        self.globals = {
            "range": _range,
            "dict": _built_by(dict),
            "cycler": self.globals["cycler"],
            "joiner": self.globals["joiner"],
            "namespace": _built_by(Namespace),
        }

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        for kind, allowed in _SAFE_METHODS:
            if isinstance(obj, kind):
                return attr in allowed

        return True

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        raise SecurityError(
            f"access to {attribute!r} of a {type(obj).__name__!r} value is not allowed"
        )

    def wrap_str_format(self, value: Any) -> None:
        # str.format can pad to any width; refusing it leaves the method to
        # the attribute check, which rejects it.
        return None

    def call(
        __self,  # Jinja's own names: they leave every keyword free
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        # Every call in a template, macros included, passes here.
        _check_time()

        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)

        return super().call_binop(context, operator, left, right)


_ENVIRONMENTS: dict[ParseMode | None, _Environment] = {
    mode: _Environment(mode) for mode in ("HTML", "MarkdownV2", None)
}


def _check_names(tree: nodes.Template) -> None:
    named: list[nodes.Name | nodes.Macro] = [
        *tree.find_all(nodes.Name),
        *tree.find_all(nodes.Macro),
    ]
    for node in named:
        if node.name.startswith(_RESERVED_PREFIX):
            raise TemplateRenderError(
                f"line {node.lineno}: names starting with "
                f"{_RESERVED_PREFIX} are reserved"
            )
    found = next(
        tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)),
        None,
    )
    if found is not None:
        raise TemplateRenderError(
            f"line {found.lineno}: templates cannot include or import other templates"
        )


def _parse(source: str, parse_mode: ParseMode | None) -> nodes.Template:
    if len(source) > MAX_SOURCE_CHARS:
        raise TemplateRenderError(
            f"a template is limited to {MAX_SOURCE_CHARS} characters"
        )
    try:
        tree = _ENVIRONMENTS[parse_mode].parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateRenderError(f"line {exc.lineno}: {exc.message}") from None
    _check_names(tree)

    return tree


@functools.lru_cache(maxsize=256)
def _compile(source: str, parse_mode: ParseMode | None) -> Template:
    environment = _ENVIRONMENTS[parse_mode]
    tree = _parse(source, parse_mode)
    tree = _Bounding().visit(tree)
    tree.set_environment(environment)
    try:
        return environment.from_string(tree)
    except TemplateSyntaxError as exc:
        raise TemplateRenderError(f"line {exc.lineno}: {exc.message}") from None


def template_check(source: str, *, parse_mode: ParseMode | None = "HTML") -> None:
    """Compile a template to find its mistakes before it is used.

    Raises TemplateRenderError naming the line of a syntax error or of a
    construct templates may not use (includes, reserved names).
    """
    _compile(source, parse_mode)


def template_translation_keys(source: str) -> list[str]:
    """Return the translation keys a template passes literally to ``t()``.

    Keys built at render time (``t('drink.' ~ name)``) cannot be known and
    are left out. Raises TemplateRenderError when the template is invalid.
    """
    tree = _parse(source, None)
    keys: list[str] = []
    for call in tree.find_all(nodes.Call):
        is_t = isinstance(call.node, nodes.Name) and call.node.name == "t"
        if is_t and call.args and isinstance(call.args[0], nodes.Const):
            key = call.args[0].value
            if isinstance(key, str) and key not in keys:
                keys.append(key)

    return keys


def template_literal_size(source: str) -> int:
    """Return how many characters of literal text a template holds.

    Raises TemplateRenderError when the template is invalid.
    """
    tree = _parse(source, None)

    return sum(len(data.data) for data in tree.find_all(nodes.TemplateData))


def _t_function(
    translator: Translator, parse_mode: ParseMode | None
) -> Callable[..., str]:
    def t(key: str, count: int | float | None = None, **params: Any) -> str:
        _check_size(_size(params))
        text = translate(
            translator, str(key), count=count, params=params, parse_mode=parse_mode
        )

        return mark_safe(text, parse_mode)

    return t


def render_template(
    source: str,
    *,
    variables: Mapping[str, Any],
    translator: Translator,
    parse_mode: ParseMode | None = "HTML",
    user: Mapping[str, Any] | None = None,
    locale: str | None = None,
) -> str:
    """Render a sandboxed template to message text.

    The template sees ``vars`` (the conversation variables), ``user``,
    ``locale`` and ``t(key, count=None, **params)``, which returns the
    translated text in the plural form for ``count`` with its placeholders
    filled and escaped. Values are escaped for ``parse_mode``; the
    template's own text may hold markup. Raises TemplateRenderError for a
    syntax error, a refused operation (Python internals, an output or value
    over its bound, too many loop iterations) or any error while rendering.
    """
    template = _compile(source, parse_mode)
    guard = _Guard(parse_mode)
    context = {
        "vars": variables,
        "user": dict(user or {}),
        "locale": locale or translator.locale,
        "t": _t_function(translator, parse_mode),
        _GUARD: guard,
    }

    pieces: list[str] = []
    length = 0
    data_size = _size(variables, MAX_DATA_CHARS) + _size(user, MAX_DATA_CHARS)
    bound = _value_bound.set(max(MAX_VALUE_CHARS, data_size))
    deadline = _deadline.set(time.monotonic() + MAX_RENDER_SECONDS)
    try:
        for piece in template.generate(context):
            length += len(piece)
            if length > MAX_OUTPUT_CHARS:
                raise TemplateRenderError(
                    f"the output is longer than {MAX_OUTPUT_CHARS} characters"
                )
            pieces.append(piece)
    except TemplateRenderError:
        raise
    # Template code is authored data: whatever it raises (a refused
    # operation, a type error, a division by zero, deep recursion) is an
    # error of the template, reported to its author, never a crash.
    except Exception as exc:
        raise TemplateRenderError(str(exc) or type(exc).__name__) from None
    finally:
        _value_bound.reset(bound)
        _deadline.reset(deadline)

    return "".join(pieces)
