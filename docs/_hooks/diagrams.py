"""State diagrams of the socket and of a channel, drawn from the core's transition tables.

A MkDocs hook (``hooks:`` in mkdocs.yml). A page that contains the line
``<!-- state-diagram: socket -->`` or ``<!-- state-diagram: channel -->`` gets, in its place,
an SVG drawing of ``stx_proto._socket_state.SOCKET_TRANSITIONS`` or of
``stx_proto._channel.TRANSITIONS``, made here in pure Python at build time: the picture cannot
drift from the code. The states sit on a circle in the order their enum declares them; each
(state, next state) pair is one arrow, bowed to its right so that the two directions between a
pair of states stay apart, and labelled, nearer its source, with every input that takes it; a
self-loop is a small loop on the outer side of its state.
"""

from __future__ import annotations

import enum
import html
import math
import re
from collections.abc import Mapping
from typing import Any

from stx_proto._channel import TRANSITIONS as CHANNEL_TRANSITIONS
from stx_proto._socket_state import SOCKET_TRANSITIONS

Point = tuple[float, float]
# (state, input) -> next state; the enums differ per table, hence Any.
Table = Mapping[tuple[Any, Any], Any]

#: The diagrams a page can ask for, by name: (table, caption).
DIAGRAMS: dict[str, tuple[Table, str]] = {
    "socket": (
        SOCKET_TRANSITIONS,
        "The socket's states (stx_proto.SocketState) and the inputs that move it, "
        "drawn from SOCKET_TRANSITIONS.",
    ),
    "channel": (
        CHANNEL_TRANSITIONS,
        "A channel's states (stx_proto.ChannelState) and the inputs that move it, "
        "drawn from the channel TRANSITIONS table.",
    ),
}

_MARKER = re.compile(r"^<!-- state-diagram: (\w+) -->$", re.M)

WIDTH = 820.0
HEIGHT = 620.0
RADIUS = 225.0  # of the circle the states sit on
BOX_W = 118.0
BOX_H = 36.0
BOW = 0.16  # how far an arrow bows to its right, as a share of its length
LABEL_AT = 0.3  # where along its arrow a label sits (0: the source, 1: the target)
FONT = "font-family: -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"


def edges(table: Table) -> dict[tuple[enum.Enum, enum.Enum], list[str]]:
    """The arrows of a table: (state, next state) -> the inputs that take it, in table order."""
    arrows: dict[tuple[enum.Enum, enum.Enum], list[str]] = {}
    for (state, event), target in table.items():
        arrows.setdefault((state, target), []).append(str(event.value))
    return arrows


def states(table: Table) -> list[enum.Enum]:
    """Every state of a table, in the order its enum declares them."""
    seen = {s for s, _ in table} | set(table.values())
    state_type = type(next(iter(seen)))
    return [s for s in state_type if s in seen]


def _positions(nodes: list[Any]) -> dict[Any, Point]:
    """Every state on a circle, in the order the enum declares them, the first at the top."""
    cx, cy = WIDTH / 2, HEIGHT / 2
    step = 2 * math.pi / len(nodes)
    return {
        node: (cx + RADIUS * math.sin(i * step), cy - RADIUS * math.cos(i * step))
        for i, node in enumerate(nodes)
    }


def _inside(p: Point, centre: Point, pad: float = 4.0) -> bool:
    return abs(p[0] - centre[0]) <= BOX_W / 2 + pad and abs(p[1] - centre[1]) <= BOX_H / 2 + pad


def _bezier(p0: Point, c: Point, p1: Point, t: float) -> Point:
    u = 1 - t
    return (
        u * u * p0[0] + 2 * u * t * c[0] + t * t * p1[0],
        u * u * p0[1] + 2 * u * t * c[1] + t * t * p1[1],
    )


def _sub_curve(p0: Point, c: Point, p1: Point, t0: float, t1: float) -> tuple[Point, Point, Point]:
    """The part of a quadratic Bézier curve between t0 and t1, as (start, control, end)."""
    start, end = _bezier(p0, c, p1, t0), _bezier(p0, c, p1, t1)
    # The control point of the piece: the tangents at t0 and t1 meet there.
    d0 = (2 * ((1 - t0) * (c[0] - p0[0]) + t0 * (p1[0] - c[0])),
          2 * ((1 - t0) * (c[1] - p0[1]) + t0 * (p1[1] - c[1])))  # fmt: skip
    span = t1 - t0
    control = (start[0] + d0[0] * span / 2, start[1] + d0[1] * span / 2)
    return start, control, end


#: Where along its arrow a label may sit, tried in this order until it overlaps no label
#: placed before it (0: the source, 1: the target).
LABEL_TRIES = (LABEL_AT, 0.22, 0.4, 0.5, 0.15, 0.6, 0.7)
Box = tuple[float, float, float, float]  # left, top, right, bottom


def _label_box(at: Point, label: str) -> Box:
    half = len(label) * 3.6 + 3  # about 7.2 px a character at 12.5 px, plus the halo
    return (at[0] - half, at[1] - 9, at[0] + half, at[1] + 9)


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _label(at: Point, label: str) -> str:
    return f'<text x="{at[0]:.1f}" y="{at[1] + 4:.1f}" class="label">{html.escape(label)}</text>'


def _arrow(src: Point, dst: Point, label: str, taken: list[Box]) -> tuple[str, str]:
    """One arrow between two states, bowed to its right, and its label: the path and the
    text, apart, so that every label is drawn above every line. The label goes at the first
    place of LABEL_TRIES that overlaps none of the ``taken`` boxes (to which its box is added).
    """
    dx, dy = dst[0] - src[0], dst[1] - src[1]
    length = math.hypot(dx, dy)
    normal = (-dy / length, dx / length)
    mid = ((src[0] + dst[0]) / 2, (src[1] + dst[1]) / 2)
    control = (mid[0] + normal[0] * BOW * length * 2, mid[1] + normal[1] * BOW * length * 2)
    samples = [i / 200 for i in range(201)]
    t0 = next(t for t in samples if not _inside(_bezier(src, control, dst, t), src))
    t1 = next(t for t in reversed(samples) if not _inside(_bezier(src, control, dst, t), dst))
    start, ctrl, end = _sub_curve(src, control, dst, t0, t1)
    # Nearer its source first: arrows that cross the middle of the circle come from
    # different states, so their labels do not pile up there.
    places = [_bezier(src, control, dst, t0 + (t1 - t0) * t) for t in LABEL_TRIES]
    free = [p for p in places if not any(_overlaps(_label_box(p, label), b) for b in taken)]
    at = (free or places)[0]
    taken.append(_label_box(at, label))
    path = (
        f'<path d="M{start[0]:.1f},{start[1]:.1f} Q{ctrl[0]:.1f},{ctrl[1]:.1f} '
        f'{end[0]:.1f},{end[1]:.1f}" class="edge" marker-end="url(#arrow)"/>'
    )
    return path, _label(at, label)


def _loop(at: Point, label: str, taken: list[Box]) -> tuple[str, str]:
    """A self-loop on the outer side of the state at ``at``, and its label (see _arrow)."""
    cx, cy = WIDTH / 2, HEIGHT / 2
    angle = math.atan2(at[1] - cy, at[0] - cx)
    out = (math.cos(angle), math.sin(angle))
    side = (-out[1], out[0])
    base = (at[0] + out[0] * BOX_H / 2, at[1] + out[1] * BOX_H / 2)
    start = (base[0] + side[0] * 14, base[1] + side[1] * 14)
    end = (base[0] - side[0] * 14, base[1] - side[1] * 14)
    reach = 62.0
    c1 = (start[0] + out[0] * reach + side[0] * 26, start[1] + out[1] * reach + side[1] * 26)
    c2 = (end[0] + out[0] * reach - side[0] * 26, end[1] + out[1] * reach - side[1] * 26)
    at_label = (base[0] + out[0] * (reach + 10), base[1] + out[1] * (reach + 10))
    taken.append(_label_box(at_label, label))
    path = (
        f'<path d="M{start[0]:.1f},{start[1]:.1f} C{c1[0]:.1f},{c1[1]:.1f} '
        f'{c2[0]:.1f},{c2[1]:.1f} {end[0]:.1f},{end[1]:.1f}" class="edge" '
        f'marker-end="url(#arrow)"/>'
    )
    return path, _label(at_label, label)


def render(table: Table, title: str) -> str:
    """The SVG drawing of a transition table ``(state, input) -> next state``.

    Returns the SVG element as text, with ``title`` as its accessible title.
    """
    nodes = states(table)
    at = _positions(nodes)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH:.0f} {HEIGHT:.0f}" '
        f'class="state-diagram" role="img">',
        f"<title>{html.escape(title)}</title>",
        "<style>"
        ".edge{fill:none;stroke:#546e7a;stroke-width:1.6}"
        f".label{{{FONT};font-size:12.5px;fill:#37474f;text-anchor:middle;"
        "paint-order:stroke;stroke:#fff;stroke-width:4px;stroke-linejoin:round}"
        ".node{fill:#e8eaf6;stroke:#3f51b5;stroke-width:1.8}"
        f".name{{{FONT};font-size:15px;font-weight:600;fill:#1a237e;text-anchor:middle}}"
        "</style>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#546e7a"/></marker></defs>',
        f'<rect width="{WIDTH:.0f}" height="{HEIGHT:.0f}" fill="#fff"/>',
    ]
    taken: list[Box] = []
    labels = []
    # The loops first: their labels have one place, the arrows' labels make way for them.
    for (src, dst), inputs in sorted(edges(table).items(), key=lambda e: e[0][0] != e[0][1]):
        label = ", ".join(inputs)
        if src == dst:
            path, text = _loop(at[src], label, taken)
        else:
            path, text = _arrow(at[src], at[dst], label, taken)
        parts.append(path)
        labels.append(text)
    parts.extend(labels)
    for node in nodes:
        x, y = at[node]
        parts.append(
            f'<rect x="{x - BOX_W / 2:.1f}" y="{y - BOX_H / 2:.1f}" width="{BOX_W:.0f}" '
            f'height="{BOX_H:.0f}" rx="10" class="node"/>'
            f'<text x="{x:.1f}" y="{y + 5:.1f}" class="name">{html.escape(str(node.value))}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def figure(name: str) -> str:
    """The HTML figure for the diagram ``name`` (a key of :data:`DIAGRAMS`).

    Raises KeyError for an unknown name, which fails the build.
    """
    table, caption = DIAGRAMS[name]
    svg = render(table, caption)
    caption_html = f"<figcaption>{html.escape(caption)}</figcaption>"
    return f'<figure class="state-diagram">\n{svg}\n{caption_html}\n</figure>'


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """MkDocs hook: replace each diagram marker of a page with its SVG figure."""
    return _MARKER.sub(lambda m: figure(m.group(1)), markdown)
