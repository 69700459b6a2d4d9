"""Inline SVG charts, drawn in Python: the page needs no script and no network to show them.

Every text that comes from data passes through ``html.escape``. Each kind of chart fills its
bars with its own colour (``BAR_COLOURS``), which is also how the tests find them in a
screenshot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

from gristmill.report.profile import Chart

BAR_COLOURS = {"numeric": "#1f6fd1", "category": "#14a38b", "text": "#8a4fd8", "judge": "#e8a317",
               "validation": "#2e9d3a", "invalid": "#d64541"}
STATUS_COLOURS = {"completed": "#d9f2dd", "completed_empty": "#eef3d2", "running": "#fde9c4", "failed": "#f8d0cd",
                  "skipped_empty_upstream": "#e4e4e4"}
WIDTH = 380
LABEL_WIDTH = 150
ROW_HEIGHT = 18
MAX_LABEL = 24


def chart_svg(chart: Chart) -> str:
    """The chart as an ``<svg>`` element."""
    return _columns_svg(chart) if chart.histogram else _rows_svg(chart)


def _short(label: str, limit: int = MAX_LABEL) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _bar_colour(chart: Chart, index: int) -> str:
    if chart.kind == "validation" and index == 1:
        return BAR_COLOURS["invalid"]
    return BAR_COLOURS[chart.kind]


def _rows_svg(chart: Chart) -> str:
    """Horizontal bars, one labelled row per value."""
    top = max(chart.counts, default=0) or 1
    span = WIDTH - LABEL_WIDTH - 50
    height = ROW_HEIGHT * len(chart.counts) + 4
    parts = [_open_svg(chart, height)]
    for i, (label, count) in enumerate(zip(chart.labels, chart.counts, strict=True)):
        y = 2 + i * ROW_HEIGHT
        width = max(1.0, span * count / top) if count else 0.0
        parts.append(f'<text x="{LABEL_WIDTH - 6}" y="{y + 13}" text-anchor="end">{escape(_short(label))}</text>'
                     f'<rect class="bar" x="{LABEL_WIDTH}" y="{y + 2}" width="{width:.1f}" height="{ROW_HEIGHT - 4}" '
                     f'fill="{_bar_colour(chart, i)}"><title>{escape(label)}: {count:,}</title></rect>'
                     f'<text x="{LABEL_WIDTH + width + 4:.1f}" y="{y + 13}">{count:,}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _columns_svg(chart: Chart) -> str:
    """Vertical bars of a histogram, the range written under the ends of the axis."""
    plot_height, left, bottom = 110, 40, 130
    top = max(chart.counts, default=0) or 1
    step = (WIDTH - left - 10) / max(len(chart.counts), 1)
    parts = [_open_svg(chart, 150),
             f'<text x="{left - 4}" y="24" text-anchor="end">{top:,}</text>'
             f'<line x1="{left}" y1="{bottom}" x2="{WIDTH - 10}" y2="{bottom}" stroke="#999"/>']
    for i, (label, count) in enumerate(zip(chart.labels, chart.counts, strict=True)):
        height = plot_height * count / top
        parts.append(f'<rect class="bar" x="{left + i * step + 1:.1f}" y="{bottom - height:.1f}" '
                     f'width="{max(step - 2, 1):.1f}" height="{height:.1f}" fill="{_bar_colour(chart, i)}">'
                     f'<title>{escape(label)}: {count:,}</title></rect>')
    if chart.labels:
        first, last = chart.labels[0].split(" – ")[0], chart.labels[-1].split(" – ")[-1]
        parts.append(f'<text x="{left}" y="{bottom + 15}">{escape(first)}</text>'
                     f'<text x="{WIDTH - 10}" y="{bottom + 15}" text-anchor="end">{escape(last)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _open_svg(chart: Chart, height: int) -> str:
    return (f'<svg class="chart chart-{chart.kind}" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
            f'height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(chart.title)}">')


@dataclass(frozen=True)
class DagNode:
    """A stage as the DAG drawing shows it."""

    name: str
    status: str
    action: str
    parents: tuple[str, ...] = ()  # the first one seeds the stage
    seeded_from: str | None = None


NODE_WIDTH, NODE_HEIGHT, GAP_X, GAP_Y = 170, 54, 60, 18


def dag_svg(nodes: Sequence[DagNode]) -> str:
    """Stages in columns by depth (longest path from a first stage), an arrow from each parent;
    the seeding parent's arrow is solid, other parents' dashed."""
    depth = _depths(nodes)
    rows: dict[int, int] = {}
    place: dict[str, tuple[int, int]] = {}
    for node in nodes:
        column = depth[node.name]
        row = rows.get(column, 0)
        rows[column] = row + 1
        place[node.name] = (10 + column * (NODE_WIDTH + GAP_X), 10 + row * (NODE_HEIGHT + GAP_Y))
    width = 20 + (max(depth.values(), default=0) + 1) * (NODE_WIDTH + GAP_X) - GAP_X
    height = 20 + max(rows.values(), default=1) * (NODE_HEIGHT + GAP_Y) - GAP_Y
    parts = [f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="stage graph">'
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>']
    parts += [_edge(place[parent], place[node.name], seeds=parent == (node.seeded_from or node.parents[0]))
              for node in nodes for parent in node.parents if parent in place]
    parts += [_node(node, *place[node.name]) for node in nodes]
    parts.append("</svg>")
    return "".join(parts)


def _depths(nodes: Sequence[DagNode]) -> Mapping[str, int]:
    """Parents come before their children (a workflow adds them in that order)."""
    depth: dict[str, int] = {}
    for node in nodes:
        depth[node.name] = 1 + max((depth[p] for p in node.parents if p in depth), default=-1)
    return depth


def _edge(start: tuple[int, int], end: tuple[int, int], *, seeds: bool) -> str:
    x1, y1 = start[0] + NODE_WIDTH, start[1] + NODE_HEIGHT / 2
    x2, y2 = end[0], end[1] + NODE_HEIGHT / 2
    mid = (x1 + x2) / 2
    dash = "" if seeds else ' stroke-dasharray="5,4"'
    return (f'<path class="edge" d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}" fill="none" stroke="#555" '
            f'stroke-width="1.5"{dash} marker-end="url(#arrow)"/>')


def _node(node: DagNode, x: int, y: int) -> str:
    fill = STATUS_COLOURS.get(node.status, "#ffffff")
    return (f'<g class="stage-node"><rect x="{x}" y="{y}" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="6" '
            f'fill="{fill}" stroke="#555"/>'
            f'<text x="{x + 10}" y="{y + 21}" font-weight="bold">{escape(_short(node.name, 20))}</text>'
            f'<text x="{x + 10}" y="{y + 40}">{escape(node.status)} · {escape(node.action)}</text></g>')
