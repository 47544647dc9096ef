"""``agentmem stats``: the domain's statistics, as the daemon reports them, once.

Connects as an *observer* (``hello`` with ``observer: true``): it registers no agent, so it
never shows up in the table it prints. Everything shown comes from the ``get_stats`` reply
(with its daemon section), rendered by :mod:`agentmem.statstext`.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TextIO

from agentmem.client import Client, connect
from agentmem.config import default_socket_path
from agentmem.errors import AgentmemError, ProtocolError
from agentmem.stats import AgentStats, StoreStats, to_wire
from agentmem.statstext import render, render_agent, render_table

#: How long a command waits for the daemon's answer to its handshake (a stopped or wedged
#: daemon, or a program that accepts and never answers, would otherwise hold it forever). Only
#: the handshake: what the command asks next (a walk of a large domain, a check) may take long.
HANDSHAKE_SECONDS = 10.0


def connect_observer(socket_path: str | None, command: str) -> Client:
    """An observer client of the daemon on ``socket_path`` (default: the usual one); never
    starts a daemon. ``DaemonUnavailable`` if none answers, or none within
    ``HANDSHAKE_SECONDS``; ``ProtocolError`` if what answers is not an agentmem daemon of this
    version (the message says so, and names the path)."""
    path = socket_path or default_socket_path()
    try:
        client = connect(
            path,
            name=f"agentmem-{command}-{os.getpid()}",
            observer=True,
            autostart=False,
            profile_allocs=False,
            timeout=HANDSHAKE_SECONDS,
        )
    except ProtocolError as exc:
        raise ProtocolError(f"no agentmem daemon of this version on {path}: {exc}") from exc
    client.set_timeout(None)
    return client


def run(
    socket_path: str | None,
    *,
    as_json: bool = False,
    agent: str | None = None,
    sort: str = "logical",
    out: TextIO | None = None,
    recent: bool = False,
) -> int:
    """Print the statistics (to ``out``, default stdout); returns the exit status (1 if no
    daemon answers or no such agent). ``recent``: the daemon's last once-a-second snapshot,
    which costs it nothing, instead of statistics computed now (a walk of every chunk
    reference of the domain, during which the daemon serves no one: seconds for millions)."""
    out = out if out is not None else sys.stdout
    try:
        client = connect_observer(socket_path, "stats")
    except AgentmemError as exc:
        print(f"agentmem stats: {exc}", file=sys.stderr)
        return 1
    try:
        stats = client.get_stats(agent, daemon=agent is None, recent=recent)
    except AgentmemError as exc:
        print(f"agentmem stats: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    if as_json:
        json.dump(to_wire(stats), out, indent=2, sort_keys=False)
        out.write("\n")
    elif isinstance(stats, AgentStats):
        out.write(render_agent(stats))
        out.write("\n" + render_table([stats]) + "\n")
    else:
        assert isinstance(stats, StoreStats)
        out.write(render(stats, sort))
    return 0
