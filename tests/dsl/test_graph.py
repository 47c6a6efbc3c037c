"""The spec as a graph, and the SVG drawn from it."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from dsl import spec_lint, spec_validate
from dsl.graph import GraphEdge, GraphNode, spec_graph
from dsl.graph_svg import graph_svg
from tests.dsl.support import DictTranslator, spec_of

DEMO = Path(__file__).resolve().parents[2] / "bots" / "demo"
DEMO_SPEC = spec_validate(json.loads((DEMO / "spec.json").read_text(encoding="utf-8")))
DEMO_EN = json.loads((DEMO / "translations.json").read_text(encoding="utf-8"))["en"]
SVG = "{http://www.w3.org/2000/svg}"


def _edges(edges: tuple[GraphEdge, ...]) -> set[tuple[Any, ...]]:
    return {
        (e.source, e.target, e.kind, e.label, e.is_missing, e.is_implicit)
        for e in edges
    }


def _texts(root: ET.Element) -> list[str]:
    return [element.text or "" for element in root.iter(f"{SVG}text")]


def test_the_demo_graph_has_every_node_way_and_entry() -> None:
    graph = spec_graph(DEMO_SPEC, translator=DictTranslator(DEMO_EN))

    assert graph.start == "main"
    assert graph.nodes == (
        GraphNode(
            "main",
            "menu.v1",
            "Welcome to the Café Bot, {first_name}! What would you like?",
        ),
        GraphNode("order", "wizard.v1", "Asks: drink, size, quantity, name, phone"),
        GraphNode(
            "save_order",
            "sql_exec.v1",
            "INSERT INTO orders (user_id, chat_id, drink, size, quantity…",
        ),
        GraphNode(
            "order_done",
            "reply_template.v1",
            "Thank you, {name}! Your order: {drink}, {size} — {count} cu…",
        ),
        GraphNode(
            "my_orders",
            "sql_exec.v1",
            "SELECT id, drink, size, quantity FROM orders WHERE user_id…",
        ),
        GraphNode("orders_list", "reply_template.v1", "Your last orders:"),
        GraphNode(
            "help",
            "reply_template.v1",
            "I take drink orders for the café. Press Order a drink and a…",
        ),
        GraphNode("ask", "wizard.v1", "Asks: question"),
        GraphNode("ask_answer", "llm.v1", "Model: {{ vars.question }}"),
    )
    assert _edges(graph.entries) == {
        (None, "main", "start", "start", False, False),
        (None, "order", "command", "/order", False, False),
        (None, "my_orders", "command", "/orders", False, False),
        (None, "help", "command", "/help", False, False),
        (None, "ask", "command", "/ask", False, False),
        (None, "order", "deep_link", "link order", False, False),
        (None, "help", "deep_link", "link help", False, False),
    }
    assert _edges(graph.edges) == {
        ("main", "order", "button", "☕ Order a drink", False, False),
        ("main", "my_orders", "button", "🧾 My orders", False, False),
        ("main", "help", "button", "❓ Help", False, False),
        ("order", "save_order", "next", "", False, False),
        ("order", "main", "cancel", "cancel", False, False),
        ("save_order", "order_done", "next", "", False, False),
        ("order_done", "main", "next", "", False, False),
        ("my_orders", "orders_list", "next", "", False, False),
        ("orders_list", "main", "return", "start", False, True),
        ("help", "main", "return", "start", False, True),
        ("ask", "ask_answer", "next", "", False, False),
        ("ask", "main", "cancel", "cancel", False, False),
        ("ask_answer", "main", "return", "start", False, True),
    }
    assert len(graph.edges) == 13
    assert graph.unreachable == ()
    assert graph.missing == ()


def test_labels_are_the_keys_without_translations() -> None:
    graph = spec_graph(DEMO_SPEC)

    assert graph.nodes[0].label == "main.text"
    assert [e.label for e in graph.edges if e.kind == "button"] == [
        "main.order",
        "main.orders",
        "main.help",
    ]


def _broken_spec() -> Any:
    return spec_of(
        {
            "main": {
                "type": "menu.v1",
                "text": "main.text",
                "rows": [
                    [
                        {"label": "main.ghost", "goto": "ghost"},
                        {"label": "main.help", "goto": "help"},
                    ]
                ],
            },
            "help": {"type": "reply_template.v1", "template": "Help", "next": "main"},
            "old": {"type": "reply_template.v1", "template": "Old", "next": "older"},
            "older": {
                "type": "wizard.v1",
                "steps": [{"name": "a", "type": "text", "prompt": "p.a"}],
                "next": "old",
            },
        },
        commands={"promo": {"node": "nowhere"}},
    )


def test_unreachable_nodes_and_missing_targets_are_marked_as_the_linter_finds() -> None:
    spec = _broken_spec()

    graph = spec_graph(spec)

    assert graph.unreachable == ("old", "older")
    assert [node.id for node in graph.nodes if node.is_unreachable] == [
        "old",
        "older",
    ]
    assert graph.missing == ("ghost", "nowhere")
    assert _edges(graph.entries) == {
        (None, "main", "start", "start", False, False),
        (None, "nowhere", "command", "/promo", True, False),
    }
    assert ("main", "ghost", "button", "main.ghost", True, False) in _edges(graph.edges)
    lint = {(issue.path, issue.code) for issue in spec_lint(spec)}
    assert {
        ("nodes.old", "unreachable_node"),
        ("nodes.older", "unreachable_node"),
        ("nodes.main.rows[0][0].goto", "unknown_node"),
        ("commands.promo.node", "unknown_node"),
    } <= lint


def test_the_svg_is_well_formed_with_a_box_for_every_node_and_missing_target() -> None:
    graph = spec_graph(_broken_spec())

    root = ET.fromstring(graph_svg(graph, title="Broken"))

    assert root.tag == f"{SVG}svg"
    groups = {
        element.get("id"): element.get("class")
        for element in root.iter(f"{SVG}g")
        if element.get("id")
    }
    assert groups == {
        "node-main": "node node-menu",
        "node-help": "node node-reply_template",
        "node-old": "node node-reply_template unreachable",
        "node-older": "node node-wizard unreachable",
        "missing-ghost": "missing",
        "missing-nowhere": "missing",
    }
    texts = _texts(root)
    assert "missing: ghost" in texts
    assert "missing: nowhere" in texts
    assert "▶ /promo" in texts
    assert texts.count("unreachable") == 2
    paths = [
        (p.get("data-source"), p.get("data-target"), p.get("class"))
        for p in root.iter(f"{SVG}path")
        if p.get("data-target")
    ]
    assert sorted(paths) == [
        ("help", "main", "edge edge-next"),
        ("main", "ghost", "edge edge-button"),
        ("main", "help", "edge edge-button"),
        ("old", "older", "edge edge-next"),
        ("older", "old", "edge edge-next"),
    ]


def test_the_demo_svg_draws_implicit_returns_as_notes_not_arrows() -> None:
    graph = spec_graph(DEMO_SPEC, translator=DictTranslator(DEMO_EN))

    root = ET.fromstring(graph_svg(graph))

    arrows = [p for p in root.iter(f"{SVG}path") if p.get("data-target")]
    assert len(arrows) == 10
    texts = _texts(root)
    assert texts.count("↩ returns to main") == 3
    assert "▶ /order · link order" in texts
    assert "▶ start" in texts


def test_every_text_is_escaped_in_the_svg() -> None:
    hostile = 'Tom & "Jerry" 1 < 2'
    spec = spec_of(
        {
            "main": {
                "type": "menu.v1",
                "text": "main.text",
                "rows": [[{"label": "main.go", "goto": "main"}]],
            }
        }
    )
    translator = DictTranslator({"main.text": hostile, "main.go": hostile})

    svg = graph_svg(spec_graph(spec, translator=translator), title="<script>")

    root = ET.fromstring(svg)
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert 'Tom &amp; "Jerry" 1 &lt; 2' in svg
    assert _texts(root).count(hostile) == 2
    title = root.find(f"{SVG}title")
    assert title is not None and title.text == "<script>"
