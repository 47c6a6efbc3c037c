"""Draw a spec's graph as SVG: a layered layout, left to right.

Each node sits one column right of the first node found leading to it,
breadth first from the start node and then from the other entry points,
which are drawn as green tags on the nodes they open (start, commands,
deep links). An edge to a later column is a curve between the boxes; any
other (back to the start menu, within a column) leaves the box on the
right, runs in a lane above the diagram and comes in from the left, so it
never crosses a box. A way the spec leaves implicit (a reply without
``next`` returns to the start node) is a note in the box, not an arrow.
Every text goes through ElementTree, which escapes it.
"""

import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass

from dsl.graph import GraphEdge, SpecGraph

SVG_NS = "http://www.w3.org/2000/svg"

NODE_WIDTH = 220
NODE_HEIGHT = 70
MISSING_HEIGHT = 38
TAG_HEIGHT = 18
COLUMN_GAP = 150
ROW_GAP = 40
MARGIN = 24
LANE_GAP = 14
# Side gutters of a column where back edges run up to their lane.
GUTTER_STEP = 7
# An average glyph of the 11 px label font, for the label backgrounds.
CHAR_WIDTH = 6.4
MAX_BOX_CHARS = 32

TYPE_COLOURS = {
    "menu": ("#e8f0fe", "#1a73e8"),
    "wizard": ("#f3e8fd", "#8430ce"),
    "sql_exec": ("#e6f4ea", "#188038"),
    "reply_template": ("#e4f7fb", "#007b83"),
    "llm": ("#fef7e0", "#b06000"),
}
OTHER_COLOURS = ("#f1f3f4", "#5f6368")
EDGE_STYLES = {
    "start": ("#188038", ""),
    "command": ("#188038", ""),
    "deep_link": ("#188038", "2 3"),
    "button": ("#1a73e8", ""),
    "items": ("#1a73e8", "6 3"),
    "next": ("#3c4043", ""),
    "cancel": ("#80868b", "6 3"),
    "error": ("#d93025", ""),
    "return": ("#80868b", "2 3"),
    "goto": ("#3c4043", ""),
}
MISSING_COLOUR = "#d93025"
UNREACHABLE_COLOUR = "#e37400"


@dataclass
class _Box:
    key: str
    column: int
    width: float
    height: float
    x: float = 0.0
    y: float = 0.0

    @property
    def mid_y(self) -> float:
        return self.y + self.height / 2

    @property
    def right(self) -> float:
        return self.x + self.width


def _missing_key(target: str) -> str:
    return f"missing:{target}"


def _columns(graph: SpecGraph) -> dict[str, int]:
    """Return the column of every node and missing target."""
    known = {node.id for node in graph.nodes}
    forward: dict[str, list[str]] = defaultdict(list)
    for edge in graph.edges:
        if edge.source is not None and not edge.is_missing and not edge.is_implicit:
            forward[edge.source].append(edge.target)

    column: dict[str, int] = {}

    def spread(seeds: list[str]) -> None:
        waiting = [seed for seed in seeds if seed in known and seed not in column]
        for seed in waiting:
            column[seed] = 0
        while waiting:
            later: list[str] = []
            for node_id in waiting:
                for target in forward[node_id]:
                    if target not in column:
                        column[target] = column[node_id] + 1
                        later.append(target)
            waiting = later

    spread([graph.start])
    spread([edge.target for edge in graph.entries])
    # What nothing leads to: from the nodes no other unplaced node leads to,
    # or from any one of them when they only lead to each other.
    while len(column) < len(known):
        left = [node.id for node in graph.nodes if node.id not in column]
        led_to = {target for node_id in left for target in forward[node_id]}
        roots = [node_id for node_id in left if node_id not in led_to]
        spread(roots or left[:1])

    for edge in graph.edges:
        if edge.is_missing and edge.source is not None:
            key = _missing_key(edge.target)
            column[key] = max(column.get(key, 0), column[edge.source] + 1)
    for edge in graph.entries:
        if edge.is_missing:
            column.setdefault(_missing_key(edge.target), 0)

    return column


def _boxes(graph: SpecGraph) -> dict[str, _Box]:
    """Return a box per node and missing target, in the order found."""
    known = {node.id for node in graph.nodes}
    # In the order the search found them, which follows the buttons' order:
    # the spec's own order of nodes may be lost (PostgreSQL's jsonb sorts
    # an object's keys).
    return {
        key: _Box(
            key,
            column,
            NODE_WIDTH,
            NODE_HEIGHT if key in known else MISSING_HEIGHT,
        )
        for key, column in _columns(graph).items()
    }


def _targets_of(edge: GraphEdge) -> str:
    return _missing_key(edge.target) if edge.is_missing else edge.target


def _sources_of(edge: GraphEdge) -> str:
    assert edge.source is not None
    return edge.source


def _place(
    edges: list[GraphEdge], boxes: dict[str, _Box], left: float, top: float
) -> None:
    """Give every box its position, ordering each column by its sources."""
    sources: dict[str, list[str]] = defaultdict(list)
    for edge in edges:
        sources[_targets_of(edge)].append(_sources_of(edge))
    order = {key: index for index, key in enumerate(boxes)}
    columns: dict[int, list[_Box]] = defaultdict(list)
    for box in boxes.values():
        columns[box.column].append(box)

    x = left
    for index in sorted(columns):
        width = max(box.width for box in columns[index])

        def rank(box: _Box) -> tuple[float, int]:
            placed = [
                boxes[key].mid_y
                for key in sources[box.key]
                if boxes[key].column < box.column
            ]
            mean = sum(placed) / len(placed) if placed else float("inf")
            return mean, order[box.key]

        y = top
        for box in sorted(columns[index], key=rank):
            box.x, box.y = x + (width - box.width) / 2, y
            y += box.height + ROW_GAP
        x += width + COLUMN_GAP


def _clip(text: str, limit: int = MAX_BOX_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _label(parent: ET.Element, x: float, y: float, text: str, colour: str) -> None:
    if not text:
        return
    text = _clip(text, 24)
    width = len(text) * CHAR_WIDTH + 8
    group = ET.SubElement(parent, "g", {"class": "edge-label"})
    ET.SubElement(
        group,
        "rect",
        {
            "x": f"{x - width / 2:.1f}",
            "y": f"{y - 9:.1f}",
            "width": f"{width:.1f}",
            "height": "16",
            "rx": "3",
            "fill": "#ffffff",
            "fill-opacity": "0.9",
        },
    )
    ET.SubElement(
        group,
        "text",
        {
            "x": f"{x:.1f}",
            "y": f"{y + 3:.1f}",
            "text-anchor": "middle",
            "font-size": "11",
            "fill": colour,
        },
    ).text = text


def _arrow_defs(svg: ET.Element) -> None:
    defs = ET.SubElement(svg, "defs")
    for name, colour in {
        **{kind: style[0] for kind, style in EDGE_STYLES.items()},
        "missing": MISSING_COLOUR,
    }.items():
        marker = ET.SubElement(
            defs,
            "marker",
            {
                "id": f"arrow-{name}",
                "viewBox": "0 0 10 10",
                "refX": "9",
                "refY": "5",
                "markerWidth": "7",
                "markerHeight": "7",
                "orient": "auto-start-reverse",
            },
        )
        ET.SubElement(marker, "path", {"d": "M0,0 L10,5 L0,10 z", "fill": colour})


def _ports(
    edges: list[GraphEdge], boxes: dict[str, _Box]
) -> tuple[dict[int, float], dict[int, float]]:
    """Spread the ends of a box's edges along its side, ordered by the far end."""
    leaving: dict[str, list[int]] = defaultdict(list)
    arriving: dict[str, list[int]] = defaultdict(list)
    for index, edge in enumerate(edges):
        leaving[_sources_of(edge)].append(index)
        arriving[_targets_of(edge)].append(index)

    def spread(groups: dict[str, list[int]], far: dict[int, float]) -> dict[int, float]:
        ends: dict[int, float] = {}
        for key, indexes in groups.items():
            box = boxes[key]
            indexes.sort(key=lambda i: far[i])
            step = box.height / (len(indexes) + 1)
            for position, index in enumerate(indexes, start=1):
                ends[index] = box.y + step * position
        return ends

    far_target = {i: boxes[_targets_of(e)].mid_y for i, e in enumerate(edges)}
    far_source = {i: boxes[_sources_of(e)].mid_y for i, e in enumerate(edges)}

    return spread(leaving, far_target), spread(arriving, far_source)


def _draw_edges(
    svg: ET.Element, edges: list[GraphEdge], boxes: dict[str, _Box]
) -> None:
    layer = ET.SubElement(svg, "g", {"class": "edges"})
    starts, ends = _ports(edges, boxes)
    back = [
        index
        for index, edge in enumerate(edges)
        if boxes[_targets_of(edge)].column <= boxes[_sources_of(edge)].column
    ]
    lane_of = {index: lane for lane, index in enumerate(back)}
    gutter_out: dict[int, int] = defaultdict(int)
    gutter_in: dict[int, int] = defaultdict(int)

    for index, edge in enumerate(edges):
        source, target = boxes[_sources_of(edge)], boxes[_targets_of(edge)]
        colour, dash = EDGE_STYLES[edge.kind]
        marker: str = edge.kind
        if edge.is_missing:
            colour, marker = MISSING_COLOUR, "missing"
        x1, y1 = source.right, starts[index]
        x2, y2 = target.x, ends[index]
        if index in lane_of:
            lane = float(MARGIN + lane_of[index] * LANE_GAP)
            out_x = x1 + 12 + gutter_out[source.column] * GUTTER_STEP
            in_x = x2 - 12 - gutter_in[target.column] * GUTTER_STEP
            gutter_out[source.column] += 1
            gutter_in[target.column] += 1
            d = (
                f"M{x1:.1f},{y1:.1f} H{out_x - 6:.1f} "
                f"Q{out_x:.1f},{y1:.1f} {out_x:.1f},{y1 - 6:.1f} "
                f"V{lane + 6:.1f} Q{out_x:.1f},{lane:.1f} {out_x - 6:.1f},{lane:.1f} "
                f"H{in_x + 6:.1f} Q{in_x:.1f},{lane:.1f} {in_x:.1f},{lane + 6:.1f} "
                f"V{y2 - 6:.1f} Q{in_x:.1f},{y2:.1f} {in_x + 6:.1f},{y2:.1f} "
                f"H{x2:.1f}"
            )
            label_x, label_y = out_x - 40, lane
        else:
            bend = (x2 - x1) / 2
            d = (
                f"M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} "
                f"{x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
            )
            # The curve's midpoint, where it is easiest to tell apart.
            label_x, label_y = (x1 + x2) / 2, (y1 + y2) / 2
        attributes = {
            "d": d,
            "fill": "none",
            "stroke": colour,
            "stroke-width": "1.6",
            "marker-end": f"url(#arrow-{marker})",
            "class": f"edge edge-{edge.kind}",
            "data-source": edge.source or "",
            "data-target": edge.target,
        }
        if dash:
            attributes["stroke-dasharray"] = dash
        ET.SubElement(layer, "path", attributes)
        _label(layer, label_x, label_y, edge.label, colour)


def _text(parent: ET.Element, x: float, y: float, text: str, **attributes: str) -> None:
    ET.SubElement(
        parent, "text", {"x": f"{x:.1f}", "y": f"{y:.1f}", **attributes}
    ).text = text


def _draw_tag(
    parent: ET.Element, box: _Box, text: str, *, fill: str, colour: str
) -> None:
    text = _clip(text, 30)
    width = len(text) * CHAR_WIDTH + 14
    ET.SubElement(
        parent,
        "rect",
        {
            "x": f"{box.x:.1f}",
            "y": f"{box.y - TAG_HEIGHT - 2:.1f}",
            "width": f"{width:.1f}",
            "height": f"{TAG_HEIGHT}",
            "rx": f"{TAG_HEIGHT / 2:.1f}",
            "fill": fill,
            "stroke": colour,
        },
    )
    _text(
        parent,
        box.x + 7,
        box.y - 7,
        text,
        **{"font-size": "11", "fill": colour, "class": "entry"},
    )


def _draw_nodes(svg: ET.Element, graph: SpecGraph, boxes: dict[str, _Box]) -> None:
    entries: dict[str, list[str]] = defaultdict(list)
    for entry in graph.entries:
        entries[entry.target].append(entry.label)
    notes: dict[str, list[str]] = defaultdict(list)
    for edge in graph.edges:
        if edge.is_implicit and edge.source is not None:
            note = (
                f"✖ cancel → {edge.target}"
                if edge.kind == "cancel"
                else f"↩ returns to {edge.target}"
            )
            notes[edge.source].append(note)

    layer = ET.SubElement(svg, "g", {"class": "nodes"})
    for node in graph.nodes:
        box = boxes[node.id]
        family = node.type.split(".")[0]
        fill, stroke = TYPE_COLOURS.get(family, OTHER_COLOURS)
        classes = f"node node-{family}" + (
            " unreachable" if node.is_unreachable else ""
        )
        group = ET.SubElement(layer, "g", {"class": classes, "id": f"node-{node.id}"})
        ET.SubElement(group, "title").text = f"{node.id} ({node.type})\n{node.label}"
        rect = {
            "x": f"{box.x:.1f}",
            "y": f"{box.y:.1f}",
            "width": f"{box.width:.1f}",
            "height": f"{box.height:.1f}",
            "rx": "6",
            "fill": fill,
            "stroke": stroke,
            "stroke-width": "2.5" if node.id == graph.start else "1.4",
        }
        if node.is_unreachable:
            rect.update(stroke=UNREACHABLE_COLOUR, **{"stroke-dasharray": "5 3"})
        ET.SubElement(group, "rect", rect)
        _text(
            group,
            box.x + 10,
            box.y + 20,
            _clip(node.id, 22),
            **{"font-size": "13", "font-weight": "bold", "fill": "#202124"},
        )
        _text(
            group,
            box.right - 10,
            box.y + 20,
            "unreachable" if node.is_unreachable else node.type,
            **{
                "font-size": "10",
                "text-anchor": "end",
                "fill": UNREACHABLE_COLOUR if node.is_unreachable else stroke,
            },
        )
        _text(
            group,
            box.x + 10,
            box.y + 42,
            _clip(node.label),
            **{"font-size": "12", "fill": "#3c4043"},
        )
        if notes[node.id]:
            _text(
                group,
                box.right - 10,
                box.y + 61,
                " · ".join(notes[node.id]),
                **{"font-size": "10", "text-anchor": "end", "fill": "#5f6368"},
            )
        if entries[node.id]:
            _draw_tag(
                group,
                box,
                "▶ " + " · ".join(entries[node.id]),
                fill="#e6f4ea",
                colour="#188038",
            )

    for target in graph.missing:
        box = boxes[_missing_key(target)]
        group = ET.SubElement(
            layer, "g", {"class": "missing", "id": f"missing-{target}"}
        )
        ET.SubElement(
            group,
            "rect",
            {
                "x": f"{box.x:.1f}",
                "y": f"{box.y:.1f}",
                "width": f"{box.width:.1f}",
                "height": f"{box.height:.1f}",
                "rx": "6",
                "fill": "#fce8e6",
                "stroke": MISSING_COLOUR,
                "stroke-dasharray": "5 3",
            },
        )
        _text(
            group,
            box.x + 10,
            box.mid_y + 4,
            _clip(f"missing: {target}"),
            **{"font-size": "12", "font-weight": "bold", "fill": MISSING_COLOUR},
        )
        if entries[target]:
            _draw_tag(
                group,
                box,
                "▶ " + " · ".join(entries[target]),
                fill="#fce8e6",
                colour=MISSING_COLOUR,
            )


def graph_svg(graph: SpecGraph, *, title: str = "") -> str:
    """Return the graph drawn as a standalone SVG document (no XML prolog).

    Never raises.
    """
    boxes = _boxes(graph)
    edges = [edge for edge in graph.edges if not edge.is_implicit]
    back = [
        edge
        for edge in edges
        if boxes[_targets_of(edge)].column <= boxes[_sources_of(edge)].column
    ]
    # Back edges run in lanes above every column and down the gutters left
    # of their targets, the first column's included.
    into_first = sum(1 for edge in back if boxes[_targets_of(edge)].column == 0)
    left = MARGIN + (12 + into_first * GUTTER_STEP if into_first else 0)
    top = MARGIN + len(back) * LANE_GAP + TAG_HEIGHT + 4
    _place(edges, boxes, left, top)
    width = max(box.right for box in boxes.values()) + MARGIN + COLUMN_GAP / 2
    height = max(box.y + box.height for box in boxes.values()) + MARGIN

    svg = ET.Element(
        "svg",
        {
            "xmlns": SVG_NS,
            "viewBox": f"0 0 {width:.0f} {height:.0f}",
            "width": f"{width:.0f}",
            "height": f"{height:.0f}",
            "role": "img",
            "font-family": "system-ui, -apple-system, 'Segoe UI', sans-serif",
            "class": "spec-diagram",
        },
    )
    if title:
        ET.SubElement(svg, "title").text = title
    _arrow_defs(svg)
    _draw_edges(svg, edges, boxes)
    _draw_nodes(svg, graph, boxes)

    return ET.tostring(svg, encoding="unicode")
