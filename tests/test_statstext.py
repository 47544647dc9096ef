"""The text renderer shared by ``agentmem stats``, the ``agent_stats`` file and ``top``."""

from __future__ import annotations

import re

import pytest

from agentmem.stats import AgentStats, DaemonStats, StoreStats, TierStats
from agentmem.statstext import (
    format_bytes,
    format_duration,
    render,
    render_table,
    sort_agents,
)


def agent(name: str, pid: int, logical: int, unique: int | None) -> AgentStats:
    return AgentStats(
        name=name,
        pid=pid,
        state="active",
        importance=0,
        handles=1,
        logical_bytes=logical,
        unique_bytes=unique,
        shared_bytes=None if unique is None else logical - unique,
        compressed_bytes=0,
        by_type={"blob": logical},
    )


def test_units() -> None:
    assert format_bytes(None) == "-"
    assert format_bytes(0) == "0 B"
    assert format_bytes(1023) == "1023 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(5 << 30) == "5.0 GiB"
    assert format_duration(42.9) == "42s"
    assert format_duration(3723) == "1h02m03s"


def test_sorting_puts_uncomputed_last() -> None:
    agents = [agent("c", 3, 10, None), agent("a", 9, 30, 5), agent("b", 1, 20, 20)]
    assert [a.name for a in sort_agents(agents, "logical")] == ["a", "b", "c"]
    assert [a.name for a in sort_agents(agents, "unique")] == ["b", "a", "c"]
    assert [a.name for a in sort_agents(agents, "pid")] == ["b", "c", "a"]
    with pytest.raises(ValueError, match="sort key"):
        sort_agents(agents, "size")


def test_table_and_summary_layout() -> None:
    table = render_table([agent("long-agent-name", 12345, 2048, None)]).splitlines()
    assert table[0].startswith("NAME") and table[1].startswith("long-agent-name")
    assert table[0].index("PID") + 3 == table[1].index("12345") + 5  # right-aligned numbers
    tier = TierStats("hot", 1, 2048, 2048, 4096, 1)
    daemon = DaemonStats(7, 1 << 20, 61, 10, 1, 2, 1, 1, 1, 4096, 0, {"active": 1})
    stats = StoreStats(
        1, 1, 2048, 2048, 4096, 1.0, 1.0, 1, 1, 0, 0, 0, 100, tier, tier, {}, (), daemon
    )
    summary, table_text = render(stats).split("\n\n")
    assert table_text.startswith("NAME")
    lines = summary.splitlines()
    keys = [line.split(":")[0] for line in lines if ":" in line]
    assert keys[:5] == ["Agents", "AgentsActive", "AgentsPaused", "AgentsIdle", "Observers"]
    fields = {k: v for k, v in (re.split(r":\s+", line, maxsplit=1) for line in lines)}
    assert fields["DaemonUptime"] == "1m01s"
    assert fields["DaemonPSS"].startswith("1.0 MiB")
    assert fields["Logical"].startswith("2.0 KiB")
    # Values are right-aligned in one column: "Agents: ... 1" ends where "DedupRatio: 1.00x" does.
    dedup = next(line for line in lines if line.startswith("DedupRatio"))
    assert lines[0].index(" 1 ") + 2 == dedup.index("1.00x") + 5


def test_far_memory_gives_its_state_as_the_value_and_its_reason_as_the_note() -> None:
    from agentmem.store import Store

    with Store(far_memory=None) as store:
        stats = store.get_stats()
    assert stats.tiering is not None and stats.tiering.far_memory.endswith("(turned off)")
    lines = render(stats).split("\n\n")[0].splitlines()
    far = next(line for line in lines if line.startswith("FarMemory:"))
    assert re.fullmatch(r"FarMemory:\s+off  turned off", far)
    # The reason no longer widens the value column: the budgets are its widest value again,
    # starting right after the key column.
    key_width = max(len(line.split(":")[0]) for line in lines) + 1
    budgets = next(line for line in lines if line.startswith("Budgets:"))
    assert budgets.index("hot none") == key_width + 1
