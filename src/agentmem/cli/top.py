"""``agentmem top``: a live full-screen view of the domain, refreshed every second.

Totals on top, agents below sorted by memory. Keys: ``s`` cycles the sort key (logical,
unique, shared, compressed, name, pid), ``f`` cycles the state filter (all, active, paused,
idle), ``q`` quits; so does Ctrl-C. The terminal is restored however it exits.

Input: the terminal is put in cbreak mode (keys arrive one by one, unechoed; Ctrl-C still
raises SIGINT) and polled with ``select`` up to the next refresh, so a key redraws at once.
Output: ``rich.live.Live`` on the alternate screen.

Data: ``get_stats`` with ``recent``: the daemon's last once-a-second statistics, which cost it
nothing to send; ``top`` never makes the daemon walk its chunks. Like ``stats``, it connects as
an observer and so is not among the agents it shows.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Iterator
from typing import TextIO

from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from agentmem.client import Client
from agentmem.errors import AgentmemError, DaemonUnavailable
from agentmem.stats import StoreStats
from agentmem.statstext import (
    COLUMNS,
    SORT_KEYS,
    STATE_FILTERS,
    agent_row,
    filter_agents,
    format_bytes,
    format_duration,
    sort_agents,
    summary_items,
)

#: Seconds between refreshes.
INTERVAL = 1.0
#: Summary pairs per line of the totals grid.
_GRID_COLUMNS = 3
#: Summary items the header line shows already.
_IN_HEADER = frozenset({"DaemonPid", "DaemonUptime", "DaemonPSS"})


class View:
    """What ``top`` shows: the last statistics, sort key and state filter. Pure rendering."""

    def __init__(self) -> None:
        self.sort = SORT_KEYS[0]
        self.state = STATE_FILTERS[0]
        self.stats: StoreStats | None = None
        self.error: str | None = None

    def key(self, ch: str) -> bool:
        """Apply one key press; False for ``q`` (quit)."""
        if ch in ("q", "Q"):
            return False
        if ch == "s":
            self.sort = SORT_KEYS[(SORT_KEYS.index(self.sort) + 1) % len(SORT_KEYS)]
        elif ch == "f":
            self.state = STATE_FILTERS[(STATE_FILTERS.index(self.state) + 1) % len(STATE_FILTERS)]
        return True

    def render(self) -> RenderableType:
        head = Text("agentmem top", style="bold")
        st = self.stats
        d = st.daemon if st is not None else None
        if d is not None:
            head.append(
                f"   daemon pid {d.pid}, up {format_duration(d.uptime_seconds)}, "
                f"PSS {format_bytes(d.pss_bytes)}"
            )
        head.append(time.strftime("   %H:%M:%S"), style="dim")
        keys = Text.assemble(
            ("sort: ", "dim"),
            (self.sort, "bold cyan"),
            ("  filter: ", "dim"),
            (self.state, "bold cyan"),
            ("   s: sort  f: filter  q: quit", "dim"),
        )
        parts: list[RenderableType] = [head, keys]
        if self.error is not None:
            parts.append(Text(self.error, style="bold red"))
        if st is None:
            return Group(*parts)
        grid = Table.grid(padding=(0, 2))
        for _ in range(_GRID_COLUMNS):
            grid.add_column(style="dim")
            grid.add_column(justify="right")
        items = [(k, v) for k, v, _ in summary_items(st) if k not in _IN_HEADER]
        for i in range(0, len(items), _GRID_COLUMNS):
            row: list[str] = []
            for k, v in items[i : i + _GRID_COLUMNS]:
                row += [k, v]
            grid.add_row(*row)
        shown = sort_agents(filter_agents(st.per_agent, self.state), self.sort)
        table = Table(
            title=f"agents: {len(shown)} of {len(st.per_agent)}, by {self.sort}",
            title_justify="left",
            expand=False,
            header_style="bold",
        )
        for title, right in COLUMNS:
            table.add_column(title, justify="right" if right else "left", no_wrap=True)
        for a in shown:
            table.add_row(*agent_row(a))
        return Group(*parts, Text(""), grid, Text(""), table)


@contextlib.contextmanager
def cbreak(fd: int) -> Iterator[None]:
    """The terminal on ``fd`` in cbreak mode for the block, restored after (if a terminal)."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def run(socket_path: str | None, *, stdin: TextIO = sys.stdin, interval: float = INTERVAL) -> int:
    """Show the live view until ``q`` or Ctrl-C; returns the exit status."""
    from agentmem.cli.stats import connect_observer

    try:
        client = connect_observer(socket_path, "top")
    except AgentmemError as exc:
        print(f"agentmem top: {exc}", file=sys.stderr)
        return 1
    if not stdin.isatty():  # no keys to read: the view would draw once and end, silently
        client.close()
        print("agentmem top: needs a terminal; for the table once, agentmem stats", file=sys.stderr)
        return 1
    view = View()
    fd = stdin.fileno()
    try:
        with cbreak(fd), Live(view.render(), screen=True, auto_refresh=False) as live:
            next_fetch = 0.0
            while True:
                now = time.monotonic()
                if now >= next_fetch:
                    _fetch(client, view)
                    next_fetch = now + interval
                    live.update(view.render(), refresh=True)
                ready, _, _ = select.select([fd], [], [], max(0.0, next_fetch - time.monotonic()))
                if not ready:
                    continue
                data = os.read(fd, 64)
                if not data:
                    return 0  # stdin closed
                for ch in data.decode(errors="ignore"):
                    if not view.key(ch):
                        return 0
                live.update(view.render(), refresh=True)
    except KeyboardInterrupt:
        return 0
    finally:
        client.close()


def _fetch(client: Client, view: View) -> None:
    try:
        stats = client.get_stats(daemon=True, recent=True)
    except (DaemonUnavailable, AgentmemError) as exc:
        view.error = f"no statistics: {exc} (retrying every second)"
        return
    assert isinstance(stats, StoreStats)
    view.stats, view.error = stats, None
