"""The statistics reply as text: a ``/proc/meminfo``-style summary and a per-agent table.

One renderer for every place that shows statistics to a person: ``agentmem stats``, the
daemon's ``agent_stats`` file (the same text, one section per uid) and ``agentmem top`` (which
lays the same items and rows out with rich). It takes the dataclasses of :mod:`agentmem.stats`
(what a client rebuilds from the daemon's reply) and nothing else: observability is API.

Summary lines are ``Key: value  note``, one number a line, so ``grep DaemonPSS agent_stats``
works. Byte counts are shown in binary units (KiB, MiB, GiB) with one decimal; the JSON form
(``agentmem stats --json``) has them exact. Pure functions, thread-safe.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from agentmem.stats import AgentStats, StoreStats

#: Keys ``stats`` and ``top`` sort agents by. Byte keys sort largest first, name and pid up.
SORT_KEYS: Final = ("logical", "unique", "shared", "compressed", "name", "pid")
#: Agent states ``top`` filters by (``all`` shows every agent).
STATE_FILTERS: Final = ("all", "active", "paused", "idle")

#: Per-agent table: column title and whether it is right-aligned.
COLUMNS: Final = (
    ("NAME", False),
    ("PID", True),
    ("STATE", False),
    ("IMP", True),
    ("LOGICAL", True),
    ("UNIQUE", True),
    ("SHARED", True),
    ("COMPRESSED", True),
    ("PROMPT", True),
    ("TOOLS", True),
    ("CONV", True),
    ("RESULT", True),
    ("BLOB", True),
)
#: SMU types of the by-type columns, in column order.
TYPE_COLUMNS: Final = ("system_prompt", "tool_def", "conversation", "tool_result", "blob")

_UNITS: Final = ("KiB", "MiB", "GiB", "TiB")


def format_bytes(n: int | None) -> str:
    """``1536`` -> ``"1.5 KiB"``; below 1 KiB in bytes; ``None`` (not computed) -> ``"-"``."""
    if n is None:
        return "-"
    if abs(n) < 1024:
        return f"{n} B"
    value = float(n)
    for unit in _UNITS:
        value /= 1024
        if abs(value) < 1024 or unit == _UNITS[-1]:
            break
    return f"{value:.1f} {unit}"


def format_duration(seconds: float) -> str:
    """``3723.4`` -> ``"1h02m03s"``; under a minute ``"42s"``."""
    s = int(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


def _value_and_note(key: str, text: str) -> tuple[str, str, str]:
    """``(key, value, note)`` of ``"value (note)"``; ``text`` whole as the value otherwise."""
    value, sep, rest = text.partition(" (")
    return (key, value, rest.removesuffix(")")) if sep and rest.endswith(")") else (key, text, "")


def summary_items(stats: StoreStats) -> list[tuple[str, str, str]]:
    """``(key, value, note)`` for each summary line, in display order."""
    hot, warm = stats.hot, stats.warm
    items = [("Agents", str(stats.agents), "registered in this domain")]
    d = stats.daemon
    if d is not None:
        for state in ("active", "paused", "idle"):
            items.append((f"Agents{state.title()}", str(d.agents_by_state.get(state, 0)), ""))
        items.append(("Observers", str(d.observers), "stats/top sessions, not agents"))
    items += [
        ("Handles", str(stats.handles), ""),
        ("Logical", format_bytes(stats.logical_bytes), "what agents hold, each its own copy"),
        ("Unique", format_bytes(stats.unique_bytes), "distinct live chunks, after dedup"),
        ("Physical", format_bytes(stats.physical_bytes), "hot pages + warm frames + dicts"),
        ("DedupRatio", f"{stats.dedup_ratio:.2f}x", "logical / unique"),
        ("CompressionRatio", f"{stats.compression_ratio:.2f}x", "warm plain / warm frames"),
        ("HotLogical", format_bytes(hot.raw_bytes), f"plain bytes of {hot.chunks} hot chunks"),
        ("HotPhysical", format_bytes(hot.physical_bytes), f"touched in {hot.containers} segments"),
        ("WarmLogical", format_bytes(warm.raw_bytes), f"plain bytes of {warm.chunks} warm chunks"),
        ("WarmPhysical", format_bytes(warm.physical_bytes), f"in {warm.containers} zstd frames"),
    ]
    cold = stats.cold
    if cold is not None:
        items += [
            (
                "ColdLogical",
                format_bytes(cold.raw_bytes),
                f"plain bytes of {cold.chunks} cold chunks",
            ),
            ("ColdDisk", format_bytes(cold.physical_bytes), f"in {cold.containers} packs on disk"),
        ]
    t = stats.tiering
    if t is not None:
        budget = format_bytes(t.hot_budget_bytes) if t.hot_budget_bytes else "none"
        warm_budget = format_bytes(t.warm_budget_bytes) if t.warm_budget_bytes else "none"
        items += [
            ("Budgets", f"hot {budget}, warm {warm_budget}", "demoted beyond them"),
            (
                "Promotions",
                str(sum(t.promotions.values())),
                f"reads of demoted content ({t.promotions.get('active', 0)} by active agents)",
            ),
            (
                "Demoted",
                format_bytes(sum(t.demoted_bytes.values())),
                f"since start; {t.compress_cpu_seconds:.2f} s CPU compressing; "
                f"{format_bytes(t.reinstated_bytes)} back into their frames uncompressed",
            ),
            (
                "Durability",
                t.durability,
                f"journal {format_bytes(t.journal_bytes)}, {t.journal_syncs} syncs "
                f"({t.journal_sync_cpu_seconds:.2f} s CPU)",
            ),
            # "off (no CPU-less NUMA node; 1 node)": the state as the value, the why as the note,
            # so that a long reason does not widen every line's value column.
            _value_and_note("FarMemory", t.far_memory.removeprefix("far memory: ")),
        ]
        if t.orphan_agents:
            items.append(("Restored", str(t.orphan_agents), "agents not reconnected yet"))
    items += [
        ("Chunks", str(stats.chunks), "distinct live chunks"),
        ("Segments", str(stats.segments), "live hot segments"),
        ("Messages", str(stats.messages), "distinct conversation messages"),
        ("Dictionaries", str(stats.dictionaries), format_bytes(stats.dictionary_bytes)),
        ("Metadata", format_bytes(stats.metadata_bytes), "estimated index records"),
    ]
    if d is not None:
        items += [
            ("DaemonPid", str(d.pid), ""),
            ("DaemonPSS", format_bytes(d.pss_bytes), "the daemon's proportional set size"),
            ("DaemonUptime", format_duration(d.uptime_seconds), ""),
            (
                "DaemonCPU",
                f"{d.cpu_seconds:.1f} s",
                f"maintenance {d.maintenance_cpu_seconds:.1f} s, statistics "
                f"{d.statistics_cpu_seconds:.1f} s, the rest serving requests"
                + (f"; codec {t.codec_cpu_seconds:.1f} s in all" if t is not None else "")
                + f"; garbage collection {d.gc_cpu_seconds:.1f} s",
            ),
            ("SegmentBytes", format_bytes(d.segment_bytes), f"{d.segments} segments, all uids"),
            ("SegmentDaemonOnly", format_bytes(d.daemon_only_segment_bytes), "mapped by no agent"),
            ("Requests", str(d.requests), f"{d.errors} answered with an error"),
            ("Connections", str(d.connections), f"in {d.domains} domain" + "s" * (d.domains != 1)),
        ]
    return items


def render_summary(stats: StoreStats) -> str:
    """The summary, one ``Key: value  note`` line each."""
    items = summary_items(stats)
    kw = max(len(k) for k, _, _ in items) + 1
    vw = max(len(v) for _, v, _ in items)
    return "\n".join(f"{k + ':':<{kw}} {v:>{vw}}  {note}".rstrip() for k, v, note in items)


def sort_agents(agents: Iterable[AgentStats], key: str = "logical") -> list[AgentStats]:
    """Agents sorted by ``key`` (one of :data:`SORT_KEYS`): bytes largest first (not computed
    last), then by name; ``name`` and ``pid`` ascending. ``ValueError`` for another key."""
    if key == "name":
        return sorted(agents, key=lambda a: a.name)
    if key == "pid":
        return sorted(agents, key=lambda a: (a.pid, a.name))
    if key not in SORT_KEYS:
        raise ValueError(f"sort key must be one of {', '.join(SORT_KEYS)}, not {key!r}")
    attr = key + "_bytes"

    def value(a: AgentStats) -> tuple[int, str]:
        v: int | None = getattr(a, attr)
        return (-(v if v is not None else -1), a.name)

    return sorted(agents, key=value)


def filter_agents(agents: Iterable[AgentStats], state: str = "all") -> list[AgentStats]:
    """The agents in ``state`` (``all``: every one)."""
    return [a for a in agents if state in ("all", a.state)]


def agent_row(a: AgentStats) -> list[str]:
    """One agent's cells, in :data:`COLUMNS` order."""
    return [
        a.name,
        str(a.pid),
        a.state,
        str(a.importance),
        format_bytes(a.logical_bytes),
        format_bytes(a.unique_bytes),
        format_bytes(a.shared_bytes),
        format_bytes(a.compressed_bytes),
        *(format_bytes(a.by_type.get(t, 0)) if a.by_type.get(t) else "-" for t in TYPE_COLUMNS),
    ]


def render_table(agents: Sequence[AgentStats]) -> str:
    """The per-agent table (agents in the order given), columns aligned, a header line first."""
    rows = [[title for title, _ in COLUMNS], *(agent_row(a) for a in agents)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(w) if right else cell.ljust(w)
            for cell, w, (_, right) in zip(row, widths, COLUMNS, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def render(stats: StoreStats, sort: str = "logical") -> str:
    """Summary, a blank line, and every agent's row sorted by ``sort``; ends with a newline."""
    return f"{render_summary(stats)}\n\n{render_table(sort_agents(stats.per_agent, sort))}\n"


def render_agent(a: AgentStats) -> str:
    """One agent, ``Key: value`` lines (``agentmem stats --agent NAME``); ends with a newline."""
    items = [
        ("Name", a.name),
        ("Pid", str(a.pid)),
        ("State", a.state),
        ("Importance", str(a.importance)),
        ("Handles", str(a.handles)),
        ("Logical", format_bytes(a.logical_bytes)),
        ("Unique", format_bytes(a.unique_bytes)),
        ("Shared", format_bytes(a.shared_bytes)),
        ("Compressed", format_bytes(a.compressed_bytes)),
        *((f"Type {t}", format_bytes(n)) for t, n in sorted(a.by_type.items())),
    ]
    kw = max(len(k) for k, _ in items) + 1
    return "".join(f"{k + ':':<{kw}} {v}\n" for k, v in items)
