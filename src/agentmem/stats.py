"""Statistics: frozen dataclasses, one docstring per field. Observability is API.

``stats`` and ``top`` render these (or their wire form), never store internals. Byte counts are
exact unless a field says "estimated". A leaf module: the store fills these in, the daemon sends
them as plain maps (:func:`to_wire`), the client rebuilds them (:func:`from_wire`).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class TierStats:
    """What one tier holds."""

    tier: str
    """``hot``, ``warm`` or ``cold``."""
    chunks: int
    """Unique chunks whose bytes live in this tier."""
    raw_bytes: int
    """Plain bytes of those chunks."""
    stored_bytes: int
    """Bytes used to store them: segment bytes appended (hot, including freed holes), frame
    bytes (warm/cold)."""
    physical_bytes: int
    """Memory or disk actually taken: touched pages of segments (hot), frames (warm)."""
    containers: int
    """Segments (hot), frames (warm) or packs (cold)."""


@dataclasses.dataclass(frozen=True, slots=True)
class TypeStats:
    """Totals for one SMU type across all agents."""

    smu_type: str
    """The type's name, e.g. ``system_prompt``."""
    handles: int
    """Live handles of this type."""
    logical_bytes: int
    """Bytes agents hold through those handles (each handle counts its full size)."""


@dataclasses.dataclass(frozen=True, slots=True)
class AgentStats:
    """One agent's view of memory."""

    name: str
    """Registered name."""
    pid: int
    """Process id (from ``SO_PEERCRED`` through the daemon; the caller's pid in-process)."""
    state: str
    """``active``, ``paused`` or ``idle``."""
    importance: int
    """Eviction importance; higher stays hot longer."""
    handles: int
    """Live handles held."""
    logical_bytes: int
    """Bytes of content held through handles: what the agent would hold on its own."""
    unique_bytes: int
    """Plain bytes of chunks no other agent references."""
    shared_bytes: int
    """Plain bytes of chunks that at least one other agent references too."""
    compressed_bytes: int
    """Plain bytes of this agent's chunks that currently live compressed (warm)."""
    by_type: dict[str, int]
    """Logical bytes per SMU type."""


@dataclasses.dataclass(frozen=True, slots=True)
class StoreStats:
    """The whole store (one domain)."""

    agents: int
    """Registered agents."""
    handles: int
    """Live handles."""
    logical_bytes: int
    """Sum of every handle's content size: memory without agentmem."""
    unique_bytes: int
    """Plain bytes of all distinct live chunks: memory with dedup, before compression."""
    physical_bytes: int
    """Bytes actually held: hot physical + warm frames + compression dictionaries."""
    dedup_ratio: float
    """``logical_bytes / unique_bytes`` (1.0 when empty)."""
    compression_ratio: float
    """Warm plain bytes / warm frame bytes (1.0 when nothing is warm)."""
    chunks: int
    """Distinct live chunks."""
    segments: int
    """Live hot segments."""
    messages: int
    """Distinct live conversation messages (shared prefixes count once)."""
    dictionaries: int
    """Compression dictionaries held (current and older, kept readable)."""
    dictionary_bytes: int
    """Bytes of those dictionaries plus pending training samples."""
    metadata_bytes: int
    """Estimated bytes of index records (chunks, SMUs, messages, refs) and their dict slots."""
    hot: TierStats
    """Hot tier."""
    warm: TierStats
    """Warm tier."""
    by_type: dict[str, TypeStats]
    """Totals per SMU type."""
    per_agent: tuple[AgentStats, ...]
    """One entry per registered agent, by name."""


def to_wire(stats: StoreStats | AgentStats) -> dict[str, object]:
    """A plain map (nested maps and lists) for the wire."""
    return dataclasses.asdict(stats)


def agent_stats_from_wire(data: dict[str, object]) -> AgentStats:
    """Rebuild :class:`AgentStats` from :func:`to_wire`'s map; ``TypeError`` if it does not fit."""
    return AgentStats(**data)  # type: ignore[arg-type]


def store_stats_from_wire(data: dict[str, object]) -> StoreStats:
    """Rebuild :class:`StoreStats` from :func:`to_wire`'s map; ``TypeError`` if it does not fit."""
    fields = dict(data)
    fields["hot"] = TierStats(**fields["hot"])  # type: ignore[arg-type]
    fields["warm"] = TierStats(**fields["warm"])  # type: ignore[arg-type]
    fields["by_type"] = {
        k: TypeStats(**v)
        for k, v in fields["by_type"].items()  # type: ignore[attr-defined]
    }
    fields["per_agent"] = tuple(
        agent_stats_from_wire(a)
        for a in fields["per_agent"]  # type: ignore[attr-defined]
    )
    return StoreStats(**fields)  # type: ignore[arg-type]
