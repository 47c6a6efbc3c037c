"""The linter: what a valid spec can still get wrong.

Errors block publishing (the spec would fail at run time); warnings are
shown to staff (the spec runs, perhaps not as meant).
"""

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet

from dsl.callback import MAX_CALLBACK_BYTES, callback_max_bytes
from dsl.fields import BUILTIN_VARS
from dsl.issues import LintIssue
from dsl.messages import builtin_has
from dsl.paths import path_join
from dsl.spec import Spec
from dsl.text import TELEGRAM_TEXT_LIMIT


def _node_path(node_id: str, path: str = "") -> str:
    return path_join("nodes", node_id, *([path] if path else []))


def spec_entry_points(spec: Spec) -> list[tuple[str, str]]:
    """Return (path, node id) of every way into the spec from outside.

    The start node comes first, then commands, then deep links. Never
    raises.
    """
    entries = [("start", spec.start)]
    entries += [
        (path_join("commands", name, "node"), command.node)
        for name, command in spec.commands.items()
        if command.node is not None
    ]
    entries += [
        (path_join("deep_links", index, "node"), link.node)
        for index, link in enumerate(spec.deep_links)
    ]

    return entries


def _missing_nodes(spec: Spec) -> Iterable[LintIssue]:
    refs = list(spec_entry_points(spec))
    for node_id, node in spec.nodes.items():
        refs += [(_node_path(node_id, path), target) for path, target in node.targets()]
    for path, target in refs:
        if target not in spec.nodes:
            yield LintIssue(
                path, f"There is no node {target!r}.", "unknown_node", "error"
            )


def spec_reached_nodes(spec: Spec) -> set[str]:
    """Return the ids of the nodes some command, link or node leads to.

    Never raises.
    """
    reached: set[str] = set()
    waiting = [target for _path, target in spec_entry_points(spec)]
    while waiting:
        node_id = waiting.pop()
        node = spec.nodes.get(node_id)
        if node is None or node_id in reached:
            continue
        reached.add(node_id)
        waiting += [target for _path, target in node.targets()]

    return reached


def _unreachable_nodes(spec: Spec) -> Iterable[LintIssue]:
    reached = spec_reached_nodes(spec)
    for node_id in spec.nodes:
        if node_id not in reached:
            yield LintIssue(
                _node_path(node_id),
                "No command, link or node leads here.",
                "unreachable_node",
                "warning",
            )


def _missing_translations(
    spec: Spec, translation_keys: Mapping[str, AbstractSet[str]]
) -> Iterable[LintIssue]:
    # Every locale the spec serves counts, including one with no texts at
    # all (the bot's translations do not name it); the bot's other locales
    # are served to nobody.
    served = {
        locale: translation_keys.get(locale, frozenset()) for locale in spec.locales
    }
    for path, key in spec_translation_refs(spec):
        missing = sorted(
            locale
            for locale, keys in served.items()
            if key not in keys and not builtin_has(key, locale)
        )
        if missing:
            yield LintIssue(
                path,
                f"The translation {key!r} is missing in: {', '.join(missing)}.",
                "missing_translation",
                "warning",
            )


def _long_texts(
    spec: Spec, translation_lengths: Mapping[str, Mapping[str, int]]
) -> Iterable[LintIssue]:
    # A text over Telegram's limit still reaches the user, split into
    # several messages, which is seldom what its author meant.
    for path, key in spec_translation_refs(spec):
        over = sorted(
            locale
            for locale in spec.locales
            if translation_lengths.get(locale, {}).get(key, 0) > TELEGRAM_TEXT_LIMIT
        )
        if over:
            yield LintIssue(
                path,
                f"The translation {key!r} is longer than Telegram's "
                f"{TELEGRAM_TEXT_LIMIT} characters in: {', '.join(over)}; it will "
                "be sent as several messages.",
                "text_too_long",
                "warning",
            )


def _long_callback_data(spec: Spec) -> Iterable[LintIssue]:
    for node_id, node in spec.nodes.items():
        for path, step, token in node.callback_refs():
            size = callback_max_bytes(node_id=node_id, step=step, token=token)
            if size > MAX_CALLBACK_BYTES:
                yield LintIssue(
                    _node_path(node_id, path),
                    f"This button's callback data can reach {size} bytes; Telegram "
                    f"allows {MAX_CALLBACK_BYTES}. Shorten the node id or the value.",
                    "callback_data_too_long",
                    "error",
                )


def _node_issues(spec: Spec) -> Iterable[LintIssue]:
    for node_id, node in spec.nodes.items():
        for issue in node.lint():
            yield issue.under(_node_path(node_id))


def _unprovided_sql_params(spec: Spec) -> Iterable[LintIssue]:
    provided = set(BUILTIN_VARS)
    provided.update(link.into for link in spec.deep_links if link.into is not None)
    for node in spec.nodes.values():
        provided.update(node.provided_vars())
    for node_id, node in spec.nodes.items():
        for path, name in node.required_vars():
            if name not in provided:
                yield LintIssue(
                    _node_path(node_id, path),
                    f"No step, button or built-in sets :{name}; it will be NULL.",
                    "unprovided_parameter",
                    "warning",
                )


def _loops_without_input(spec: Spec) -> Iterable[LintIssue]:
    automatic = {
        node_id: [t for t in node.continuations() if t in spec.nodes]
        for node_id, node in spec.nodes.items()
        if not node.waits_for_input
    }

    def reachable(origin: str) -> set[str]:
        found: set[str] = set()
        waiting = list(automatic[origin])
        while waiting:
            node_id = waiting.pop()
            if node_id in found or node_id not in automatic:
                continue
            found.add(node_id)
            waiting += automatic[node_id]
        return found

    reach = {node_id: reachable(node_id) for node_id in automatic}
    looping = sorted(node_id for node_id in automatic if node_id in reach[node_id])
    reported: set[str] = set()
    for node_id in looping:
        if node_id in reported:
            continue
        group = [
            other
            for other in looping
            if other in reach[node_id] and node_id in reach[other]
        ]
        reported.update(group)
        cycle = " → ".join([*group, group[0]])
        yield LintIssue(
            _node_path(node_id),
            f"Nodes {cycle} never wait for input: the conversation would loop.",
            "loop_without_input",
            "error",
        )


def spec_translation_refs(spec: Spec) -> list[tuple[str, str]]:
    """Return (path, key) of every translation the spec uses, in spec order.

    Command descriptions come first, then each node's texts; a key used in
    several places appears once per place. Never raises.
    """
    refs = [
        (path_join("commands", name, "description"), command.description)
        for name, command in spec.commands.items()
        if command.description is not None
    ]
    for node_id, node in spec.nodes.items():
        refs += [
            (_node_path(node_id, path), key) for path, key in node.translation_refs()
        ]

    return refs


def spec_lint(
    spec: Spec,
    *,
    translation_keys: Mapping[str, AbstractSet[str]] | None = None,
    translation_lengths: Mapping[str, Mapping[str, int]] | None = None,
) -> list[LintIssue]:
    """Return the problems of a validated spec, errors and warnings.

    ``translation_keys`` maps each locale to the keys the bot has; without
    it translations are not checked. Each of the spec's locales is checked,
    one missing from the mapping as a locale without any texts. Keys with a
    built-in text (``bf.*``) count as present. ``translation_lengths`` maps
    each locale to each key's longest text (in UTF-16 units, as Telegram
    counts); with it texts over Telegram's limit are reported. Raises
    nothing.
    """
    issues: list[LintIssue] = [
        *_missing_nodes(spec),
        *_unreachable_nodes(spec),
        *_long_callback_data(spec),
        *_node_issues(spec),
        *_unprovided_sql_params(spec),
        *_loops_without_input(spec),
    ]
    if translation_keys is not None:
        issues += _missing_translations(spec, translation_keys)
    if translation_lengths is not None:
        issues += _long_texts(spec, translation_lengths)

    return sorted(issues, key=lambda issue: (issue.path, issue.code))
