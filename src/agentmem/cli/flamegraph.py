"""``agentmem flamegraph``: where agents allocate, by Python call stack, as an SVG flamegraph.

The daemon aggregates the stacks that profiling clients attach to ``alloc_smu``
(``AGENTMEM_PROFILE_ALLOCS=N``); ``alloc_profile`` returns the table, and this command writes:

* the collapsed stacks (``frame;frame;frame bytes``, one stack a line), which flamegraph.pl,
  speedscope and inferno read as they are;
* a self-contained SVG: one rectangle per frame, as wide as the bytes allocated under it, the
  root at the bottom and callees stacked above their callers; hovering shows a ``<title>``
  tooltip with the frame, its bytes and its share. No script, no external font or style.

The renderer is a pure function (:func:`render_svg`) over ``(stack, bytes)`` pairs.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Iterable, Sequence
from typing import Final
from xml.sax.saxutils import escape

from agentmem.errors import AgentmemError
from agentmem.statstext import format_bytes

#: Drawing geometry, in SVG pixels.
WIDTH: Final = 1200
FRAME_HEIGHT: Final = 16
PAD: Final = 10
TITLE_HEIGHT: Final = 24
#: Narrower frames are not drawn (nor their callees): they would be invisible slivers.
MIN_WIDTH: Final = 0.1
#: Approximate width of one character of the 12 px label font, to fit labels in frames.
CHAR_WIDTH: Final = 7.0


class _Node:
    __slots__ = ("children", "name", "value")

    def __init__(self, name: str) -> None:
        self.name = name
        self.value = 0
        self.children: dict[str, _Node] = {}


def _tree(stacks: Iterable[tuple[str, int]]) -> _Node:
    root = _Node("all")
    for stack, nbytes in stacks:
        if nbytes <= 0:
            continue
        root.value += nbytes
        node = root
        for frame in stack.split(";"):
            child = node.children.get(frame)
            if child is None:
                child = node.children[frame] = _Node(frame)
            child.value += nbytes
            node = child
    return root


def collapsed_text(stacks: Iterable[tuple[str, int]]) -> str:
    """``stack bytes`` lines, sorted by stack (the collapsed format; empty stacks skipped)."""
    return "".join(f"{s} {n}\n" for s, n in sorted(stacks) if n > 0)


def _color(name: str) -> str:
    """A warm colour from the frame's function name (stable across runs: crc32, not hash())."""
    func = name.rpartition(":")[2]
    h = zlib.crc32(func.encode())
    return f"rgb({205 + h % 50},{(h >> 8) % 180 + 40},{(h >> 16) % 55})"


def render_svg(stacks: Sequence[tuple[str, int]], title: str = "Allocated bytes") -> str:
    """A flamegraph of ``(stack, bytes)`` pairs as one SVG document (UTF-8 text)."""
    root = _tree(stacks)
    depth = _depth(root)
    height = TITLE_HEIGHT + PAD * 2 + (depth + 1) * FRAME_HEIGHT
    total = root.value
    scale = (WIDTH - 2 * PAD) / total if total else 0.0
    out = [
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n',
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" '
        'font-family="Verdana, sans-serif" font-size="12">\n',
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#f8f8f0"/>\n',
        f'<text x="{WIDTH / 2:.0f}" y="{PAD + 12}" text-anchor="middle" font-size="16">'
        f"{escape(title)} ({escape(format_bytes(total))})</text>\n",
    ]
    if total:
        _draw(out, root, scale=scale, total=total, height=height)
    else:
        out.append(f'<text x="{PAD}" y="{PAD + 40}">no sampled allocations</text>\n')
    out.append("</svg>\n")
    return "".join(out)


def _depth(node: _Node) -> int:
    best = 0
    todo = [(node, 0)]
    while todo:
        n, d = todo.pop()
        best = max(best, d)
        todo.extend((c, d + 1) for c in n.children.values())
    return best


def _draw(out: list[str], root: _Node, *, scale: float, total: int, height: int) -> None:
    """Draw ``root`` on the bottom row, then each frame's callees on the row above it,
    in name order (as flamegraph.pl does: the x axis is not time)."""
    todo = [(root, float(PAD), 0)]
    while todo:
        n, x0, lv = todo.pop()
        w = n.value * scale
        if w < MIN_WIDTH:
            continue
        y = height - PAD - (lv + 1) * FRAME_HEIGHT
        share = 100.0 * n.value / total
        tip = f"{n.name} ({format_bytes(n.value)}, {n.value} bytes, {share:.2f}%)"
        fill = "rgb(200,200,200)" if lv == 0 else _color(n.name)
        out.append(
            f"<g><title>{escape(tip)}</title>"
            f'<rect x="{x0:.2f}" y="{y}" width="{w:.2f}" height="{FRAME_HEIGHT - 1}" '
            f'fill="{fill}" rx="2" ry="2"/>'
        )
        fit = int((w - 6) / CHAR_WIDTH)
        if fit >= 3:
            label = n.name if len(n.name) <= fit else n.name[: fit - 2] + ".."
            out.append(f'<text x="{x0 + 3:.2f}" y="{y + FRAME_HEIGHT - 4}">{escape(label)}</text>')
        out.append("</g>\n")
        cx = x0
        children = sorted(n.children.values(), key=lambda c: c.name)
        for child in children:
            todo.append((child, cx, lv + 1))
            cx += child.value * scale


def run(
    socket_path: str | None,
    *,
    svg_path: str,
    collapsed_path: str | None = None,
    reset: bool = False,
    title: str | None = None,
) -> int:
    """Fetch the domain's allocation profile and write the files; returns the exit status.

    The files are checked writable first: a profile fetched (and, with ``reset``, reset in the
    daemon) is never lost to a path it cannot be written to."""
    from agentmem.cli.outputs import unwritable
    from agentmem.cli.stats import connect_observer

    for path in (svg_path, collapsed_path):
        problem = None if path is None else unwritable(path)
        if problem is not None:
            print(f"agentmem flamegraph: cannot write {path}: {problem}", file=sys.stderr)
            return 1
    try:
        client = connect_observer(socket_path, "flamegraph")
    except AgentmemError as exc:
        print(f"agentmem flamegraph: {exc}", file=sys.stderr)
        return 1
    try:
        profile = client.alloc_profile(reset=reset)
    except AgentmemError as exc:
        print(f"agentmem flamegraph: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    stacks = [(str(s), int(n)) for s, n in profile["stacks"]]
    with open(svg_path, "w", encoding="utf-8") as f:
        f.write(render_svg(stacks, title or "agentmem: bytes allocated by stack"))
    if collapsed_path is not None:
        with open(collapsed_path, "w", encoding="utf-8") as f:
            f.write(collapsed_text(stacks))
    if not stacks:
        print(
            "agentmem flamegraph: no sampled allocations yet "
            "(run agents with AGENTMEM_PROFILE_ALLOCS=1)",
            file=sys.stderr,
        )
    else:
        print(
            f"{len(stacks)} stacks, {profile['samples']} samples, "
            f"{format_bytes(int(profile['bytes']))}: wrote {svg_path}"
            + (f" and {collapsed_path}" if collapsed_path else ""),
            file=sys.stderr,
        )
    return 0
