"""A spec as a graph: its nodes, the ways between them and the ways in.

The flow diagram is drawn from this; it answers what staff ask of a bot at
a glance: where a command leads, what a button opens, what nothing reaches
and which target does not exist.
"""

import re
from dataclasses import dataclass
from typing import Literal

from dsl.components.base import ContinuesAtNext, NodeBase
from dsl.components.llm import LlmNode
from dsl.components.menu import MenuNode
from dsl.components.reply_template import ReplyTemplateNode
from dsl.components.sql_exec import SqlExecNode
from dsl.components.wizard import WizardNode
from dsl.context import Translator
from dsl.lint import spec_entry_points, spec_reached_nodes
from dsl.spec import Spec

EdgeKind = Literal[
    "start",
    "command",
    "deep_link",
    "button",
    "items",
    "next",
    "cancel",
    "error",
    "return",
    "goto",
]

# Labels are read in a box a couple of hundred pixels wide.
MAX_LABEL_CHARS = 60

_BUTTON_PATH_RE = re.compile(r"^rows\[(\d+)\]\[(\d+)\]\.goto$")
_COMMAND_PATH_RE = re.compile(r"^commands\.(.+)\.node$")
_DEEP_LINK_PATH_RE = re.compile(r"^deep_links\[(\d+)\]\.node$")
_TAG_RE = re.compile(r"<[^>]+>")
_SPACE_RE = re.compile(r"\s+")
_PATH_KINDS: dict[str, EdgeKind] = {
    "next": "next",
    "on_cancel": "cancel",
    "on_error": "error",
    "items.goto": "items",
}


@dataclass(frozen=True)
class GraphNode:
    id: str
    type: str
    label: str
    is_unreachable: bool = False


@dataclass(frozen=True)
class GraphEdge:
    """A way to ``target``: from the node ``source``, or from outside (None).

    ``is_missing`` marks a target that is no node of the spec;
    ``is_implicit`` a way the spec does not name (a reply without ``next``
    returns to the start node).
    """

    source: str | None
    target: str
    kind: EdgeKind
    label: str = ""
    is_missing: bool = False
    is_implicit: bool = False


@dataclass(frozen=True)
class SpecGraph:
    start: str
    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]
    entries: tuple[GraphEdge, ...]
    unreachable: tuple[str, ...]
    missing: tuple[str, ...]


def _short(text: str) -> str:
    text = _SPACE_RE.sub(" ", _TAG_RE.sub("", text)).strip()
    if len(text) <= MAX_LABEL_CHARS:
        return text

    return text[: MAX_LABEL_CHARS - 1].rstrip() + "…"


def _text(key: str, translator: Translator | None) -> str:
    pattern = translator.pattern(key) if translator is not None else None

    return _short(pattern) if pattern else key


def _node_label(node: NodeBase, translator: Translator | None) -> str:
    if isinstance(node, MenuNode):
        return _text(node.text, translator)
    if isinstance(node, WizardNode):
        return _short("Asks: " + ", ".join(step.name for step in node.steps))
    if isinstance(node, SqlExecNode):
        return _short(node.statement)
    if isinstance(node, LlmNode):
        return _short("Model: " + node.prompt)
    refs = node.translation_refs()
    if refs:
        return _text(refs[0][1], translator)
    if isinstance(node, ReplyTemplateNode):
        return _short(node.template)

    return node.type


def _entry(path: str, target: str, spec: Spec) -> GraphEdge:
    command = _COMMAND_PATH_RE.match(path)
    link = _DEEP_LINK_PATH_RE.match(path)
    if command is not None:
        kind: EdgeKind = "command"
        label = f"/{command.group(1)}"
    elif link is not None:
        kind = "deep_link"
        label = f"link {spec.deep_links[int(link.group(1))].prefix or '*'}"
    else:
        kind, label = "start", "start"

    return GraphEdge(
        source=None,
        target=target,
        kind=kind,
        label=label,
        is_missing=target not in spec.nodes,
    )


def _node_edges(
    node_id: str, node: NodeBase, spec: Spec, translator: Translator | None
) -> list[GraphEdge]:
    edges: list[GraphEdge] = []
    for path, target in node.targets():
        button = _BUTTON_PATH_RE.match(path)
        kind: EdgeKind = _PATH_KINDS.get(path, "goto")
        label: str = "" if kind == "next" else kind
        if isinstance(node, MenuNode) and button is not None:
            row, column = int(button.group(1)), int(button.group(2))
            kind = "button"
            label = _text(node.rows[row][column].label, translator)
        elif isinstance(node, MenuNode) and node.items is not None and kind == "items":
            label = f"each of {node.items.source}"
        elif kind == "goto":
            label = path
        edges.append(
            GraphEdge(
                source=node_id,
                target=target,
                kind=kind,
                label=label,
                is_missing=target not in spec.nodes,
            )
        )

    # Where the conversation goes when the spec names no target: the start
    # node, which is easy to forget when reading the spec.
    if isinstance(node, ContinuesAtNext) and node.next is None:
        edges.append(
            GraphEdge(
                source=node_id,
                target=spec.start,
                kind="return",
                label="start",
                is_implicit=True,
            )
        )
    if isinstance(node, WizardNode) and node.on_cancel is None:
        edges.append(
            GraphEdge(
                source=node_id,
                target=spec.start,
                kind="cancel",
                label="cancel",
                is_implicit=True,
            )
        )

    return edges


def spec_graph(spec: Spec, *, translator: Translator | None = None) -> SpecGraph:
    """Return the nodes of a validated spec and every way between them.

    Labels are the texts of ``translator`` where it has them, the keys
    otherwise. Entry points come in the linter's order (start, commands,
    deep links); nodes and edges in spec order. Never raises.
    """
    reached = spec_reached_nodes(spec)
    nodes = tuple(
        GraphNode(
            id=node_id,
            type=node.type,
            label=_node_label(node, translator),
            is_unreachable=node_id not in reached,
        )
        for node_id, node in spec.nodes.items()
    )
    entries = tuple(
        _entry(path, target, spec) for path, target in spec_entry_points(spec)
    )
    edges = tuple(
        edge
        for node_id, node in spec.nodes.items()
        for edge in _node_edges(node_id, node, spec, translator)
    )
    missing = sorted({edge.target for edge in (*entries, *edges) if edge.is_missing})

    return SpecGraph(
        start=spec.start,
        nodes=nodes,
        edges=edges,
        entries=entries,
        unreachable=tuple(node.id for node in nodes if node.is_unreachable),
        missing=tuple(missing),
    )
