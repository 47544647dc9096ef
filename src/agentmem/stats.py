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
    unique_bytes: int | None
    """Plain bytes of chunks no other agent references. None when not computed: finding who
    shares what walks every chunk reference, which the daemon's once-a-second statistics
    (``agent_stats`` file, metrics) skip when it is costly (see ``daemon/observe.py``)."""
    shared_bytes: int | None
    """Plain bytes of chunks that at least one other agent references too (None: as above)."""
    compressed_bytes: int | None
    """Plain bytes of this agent's chunks that currently live compressed (warm) (None: as
    above)."""
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
    """Plain bytes of all distinct live chunks, in every tier: content with dedup, before
    compression."""
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
    """Estimated bytes of index records (chunks, SMUs, messages, refs) and their dict slots,
    and of the table of chunk sizes they share (kept while the store lives; up to 16,385
    sizes). Cheap statistics (``cheap=True``) count the records only, not their chunk
    pointers."""
    hot: TierStats
    """Hot tier."""
    warm: TierStats
    """Warm tier."""
    by_type: dict[str, TypeStats]
    """Totals per SMU type."""
    per_agent: tuple[AgentStats, ...]
    """One entry per registered agent, by name."""
    daemon: DaemonStats | None = None
    """The daemon serving this domain, when asked for (``get_stats`` with ``daemon: true``);
    None from a store used in-process as a library."""
    cold: TierStats | None = None
    """Cold tier (packs on disk): None when the store has no state directory."""
    tiering: TieringStats | None = None
    """Budgets, moves between tiers, durability; None from a peer that predates them."""


@dataclasses.dataclass(frozen=True, slots=True)
class TieringStats:
    """How content moves between tiers, and what keeps it safe."""

    hot_budget_bytes: int
    """Hot bytes kept at most (0: no budget)."""
    warm_budget_bytes: int
    """Warm frame bytes kept at most (0: no budget)."""
    promotions: dict[str, int]
    """Reads that brought content back to hot, by the reading agent's state."""
    promoted_bytes: dict[str, int]
    """Plain bytes those reads promoted, by the reading agent's state."""
    demoted_bytes: dict[str, int]
    """Plain bytes demoted since start, by target tier (``warm``, ``cold``)."""
    compress_cpu_seconds: float
    """CPU seconds spent compressing warm and cold frames since start."""
    reinstated_bytes: int
    """Of ``demoted_bytes["warm"]``, plain bytes put back uncompressed into the frames they
    had been promoted from (clean copies: the content had not changed)."""
    clean_copy_bytes: int
    """Bytes of warm frames kept only as clean copies of content promoted from them (RAM;
    counted in the warm tier's ``physical_bytes``, not in its ``stored_bytes``)."""
    durability: str
    """``strict`` (appends acknowledged once fdatasync'ed), ``relaxed`` (synced every second)
    or ``off`` (no journal: no state directory)."""
    journal_bytes: int
    """Size of the conversation journal."""
    journal_syncs: int
    """fdatasync calls on the journal since start (strict mode: one per batch of appends)."""
    restored_conversations: int
    """Conversations restored from the journal at start."""
    orphan_agents: int
    """Restored agents still waiting for their process to reconnect."""
    far_memory: str
    """The far-memory tier: the NUMA node it uses, or why it is off."""
    errors: tuple[str, ...]
    """The latest failed moves between tiers (disk full, unreadable pack), newest last."""
    decode_cpu_seconds: float = 0.0
    """CPU seconds spent decoding warm and cold frames since start: verifying new frames,
    reads and promotions, dictionary training. With ``compress_cpu_seconds``, the codec's
    share of the daemon's CPU (what a hardware compressor would take over)."""
    journal_sync_cpu_seconds: float = 0.0
    """CPU seconds the daemon spent in the journal's fdatasync calls since start (the kernel
    writing the appends out: the price of strict durability)."""

    @property
    def codec_cpu_seconds(self) -> float:
        """Compressing and decoding together: what a hardware compressor would take over."""
        return self.compress_cpu_seconds + self.decode_cpu_seconds


@dataclasses.dataclass(frozen=True, slots=True)
class DaemonStats:
    """The daemon process, as it measures itself, and its view of one domain's sessions."""

    pid: int
    """The daemon's process id."""
    pss_bytes: int
    """The daemon's proportional set size (``Pss`` of ``/proc/self/smaps_rollup``): its heap,
    the index, and its share of every segment page it maps. 0 if unreadable."""
    uptime_seconds: float
    """Seconds since the daemon started serving."""
    requests: int
    """Requests served since start (all domains), errors included."""
    errors: int
    """Requests answered with an error since start (all domains)."""
    connections: int
    """Open connections (all domains), observers included."""
    observers: int
    """Open observer sessions of this domain (``stats``, ``top``): connected, not agents."""
    domains: int
    """Domains (uids) served."""
    segments: int
    """Live hot segments (all domains)."""
    segment_bytes: int
    """Pages touched in those segments: memory the memfds hold, each page counted once. The
    daemon maps every live segment, so these pages are in ``pss_bytes`` (shared with the
    agents that map them too): no live segment is memory that no process maps."""
    daemon_only_segment_bytes: int
    """Of ``segment_bytes``, the pages of segments no client maps: charged to the daemon's PSS
    alone (private content it copies out, segments not read through a mapping yet)."""
    agents_by_state: dict[str, int]
    """This domain's agents per state (``active``, ``paused``, ``idle``; each present)."""
    cpu_seconds: float = 0.0
    """CPU seconds (user + system) the daemon process used since it started, all threads."""
    maintenance_cpu_seconds: float = 0.0
    """Of ``cpu_seconds``, the maintenance ticks': demotions by the idle, age and budget rules
    (their compression included: ``TieringStats`` says how much of it was the codec)."""
    statistics_cpu_seconds: float = 0.0
    """Of ``cpu_seconds``, the statistics published each second (snapshot, ``agent_stats``
    file). What is left after the two is serving requests."""
    gc_cpu_seconds: float = 0.0
    """Of ``cpu_seconds``, across the parts above, Python's garbage collection, young and full
    (``daemon/gcclock.py``)."""
    gc_full_collections: int = 0
    """Full garbage collections (of the oldest generation) since the daemon started."""


def to_wire(stats: StoreStats | AgentStats | DaemonStats) -> dict[str, object]:
    """A plain map (nested maps and lists) for the wire.

    A :class:`StoreStats` without a daemon section has no ``daemon`` key at all, so a peer
    that predates the section reads the map as before.
    """
    data = dataclasses.asdict(stats)
    if isinstance(stats, StoreStats) and stats.daemon is None:
        del data["daemon"]
    return data


def _known(cls: type, data: object) -> dict[str, object]:
    """The keys of ``data`` that ``cls`` has fields for: a newer peer's extra keys are skipped
    (new fields are additions); a missing field still raises ``TypeError``."""
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__} must be a map, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def agent_stats_from_wire(data: dict[str, object]) -> AgentStats:
    """Rebuild :class:`AgentStats` from :func:`to_wire`'s map; ``TypeError`` if it does not fit."""
    return AgentStats(**_known(AgentStats, data))  # type: ignore[arg-type]


def daemon_stats_from_wire(data: dict[str, object]) -> DaemonStats:
    """Rebuild :class:`DaemonStats` from :func:`to_wire`'s map; ``TypeError`` if it does not fit."""
    return DaemonStats(**_known(DaemonStats, data))  # type: ignore[arg-type]


def store_stats_from_wire(data: dict[str, object]) -> StoreStats:
    """Rebuild :class:`StoreStats` (with its daemon section, if the map has one) from
    :func:`to_wire`'s map; ``TypeError`` if it does not fit."""
    fields = _known(StoreStats, data)
    fields["hot"] = TierStats(**_known(TierStats, fields["hot"]))  # type: ignore[arg-type]
    fields["warm"] = TierStats(**_known(TierStats, fields["warm"]))  # type: ignore[arg-type]
    fields["by_type"] = {
        k: TypeStats(**_known(TypeStats, v))  # type: ignore[arg-type]
        for k, v in fields["by_type"].items()  # type: ignore[attr-defined]
    }
    fields["per_agent"] = tuple(
        agent_stats_from_wire(a)
        for a in fields["per_agent"]  # type: ignore[attr-defined]
    )
    daemon = fields.get("daemon")
    if daemon is not None:
        fields["daemon"] = daemon_stats_from_wire(daemon)  # type: ignore[arg-type]
    if fields.get("cold") is not None:
        fields["cold"] = TierStats(**_known(TierStats, fields["cold"]))  # type: ignore[arg-type]
    tiering = fields.get("tiering")
    if tiering is not None:
        known = _known(TieringStats, tiering)
        known["errors"] = tuple(known.get("errors", ()))  # type: ignore[arg-type]
        fields["tiering"] = TieringStats(**known)  # type: ignore[arg-type]
    return StoreStats(**fields)  # type: ignore[arg-type]
