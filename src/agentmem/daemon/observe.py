"""What the daemon says about itself, and what it publishes once a second.

* :func:`daemon_stats`: the ``daemon`` section of a ``get_stats`` reply (pid, PSS, uptime,
  counters, segment bytes, agents by state).
* :class:`Observer`: on each maintenance tick, a :class:`Snapshot` of every domain's statistics
  (what the metrics thread reads) and the ``agent_stats`` file next to the socket (what ``cat``
  and ``watch`` read), rendered exactly as ``agentmem stats`` renders them.

Cost. The tick runs every second whether or not anyone looks, so it must stay O(agents), not
O(chunks): ``Store.get_stats(cheap=True)`` reads the counters the store keeps. Splitting each
agent's bytes into unique, shared and compressed walks every chunk reference (~1 s for 100
agents holding 40,000 chunks each, ``store/accounting.py``), so that walk runs only when its
last run cost at most :data:`DETAIL_BUDGET` of the time since: every tick for a store whose walk
takes under 10 ms, once in 100 s for one whose walk takes a second. A walk costing more than
:data:`WALK_MAX` would hold the loop (every agent's requests) that long, so past it the splits
are refreshed one agent at a time instead (``Store.get_stats(agent)``: that agent's records
only), the longest-unrefreshed first, within the same budget: no tick then holds the loop for
much longer than one agent's records take. In between, each agent's split is carried from its
last refresh (same name and pid) and the snapshot says how old the oldest is. The daemon's own
PSS follows the same budget: the kernel sums it over every page mapped.

Threads: the loop thread builds snapshots and replaces :attr:`Observer.snapshot` in one
assignment; the metrics thread only reads that attribute and the frozen objects under it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from agentmem import statstext
from agentmem.stats import AgentStats, DaemonStats, StoreStats
from agentmem.store.segments import PAGE
from agentmem.store.steps import run_until

if TYPE_CHECKING:
    from agentmem.daemon.service import Domain, Service

log = logging.getLogger("agentmem.daemon")

#: Share of wall time the per-agent unique/shared walk may take (see the module docstring).
DETAIL_BUDGET: Final = 0.01
#: Seconds a walk of a whole domain may hold the loop; past it, agents are refreshed one at a
#: time (a seed-profile daemon of 100 agents walks 1.35 million chunks in ~2.8 s).
WALK_MAX: Final = 0.05
#: File name of the statistics file, in the socket's directory.
STATS_FILE: Final = "agent_stats"


def _due(now: float, at: float, cost: float) -> bool:
    """Whether a reading that took ``cost`` seconds at ``at`` may be taken again at ``now``
    (it then costs at most :data:`DETAIL_BUDGET` of the time since)."""
    return now - at >= cost / DETAIL_BUDGET


def read_pss(path: str = "/proc/self/smaps_rollup") -> int:
    """``Pss`` of ``path`` in bytes (0 if unreadable). The kernel sums it over every mapping
    as it reads: ~1 us per mapping (two per live segment)."""
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def segment_totals(service: Service) -> tuple[int, int, int]:
    """``(segments, touched bytes, touched bytes of segments no client maps)`` over every
    domain: O(segments + segments mapped per session)."""
    segments = segment_bytes = daemon_only = 0
    for dom in service.domains.values():
        mapped: set[int] = set()
        for session in dom.sessions.values():
            mapped |= session.mapped
        for seg in dom.store.hot:
            touched = -(-seg.used // PAGE) * PAGE
            segments += 1
            segment_bytes += touched
            if seg.seg_id not in mapped:
                daemon_only += touched
    return segments, segment_bytes, daemon_only


def daemon_stats(
    service: Service,
    domain: Domain,
    *,
    pss: int | None = None,
    segments: tuple[int, int, int] | None = None,
) -> DaemonStats:
    """The daemon section for ``domain``. ``pss`` and ``segments`` (:func:`segment_totals`)
    are measured here unless given (the tick measures them once for every domain)."""
    n_segments, segment_bytes, daemon_only = (
        segment_totals(service) if segments is None else segments
    )
    by_state = {"active": 0, "paused": 0, "idle": 0}
    for agent in domain.store.agents.values():
        by_state[agent.state.label] = by_state.get(agent.state.label, 0) + 1
    gc = service.gc_clock
    gc_cpu, gc_full = (gc.cpu_seconds, gc.full_collections) if gc is not None else (0.0, 0)
    return DaemonStats(
        pid=os.getpid(),
        pss_bytes=read_pss() if pss is None else pss,
        uptime_seconds=round(time.monotonic() - service.started, 3),
        requests=service.requests,
        errors=service.errors,
        connections=service.connections,
        observers=domain.observers,
        domains=len(service.domains),
        segments=n_segments,
        segment_bytes=segment_bytes,
        daemon_only_segment_bytes=daemon_only,
        agents_by_state=by_state,
        cpu_seconds=round(time.process_time(), 6),
        maintenance_cpu_seconds=round(service.maintenance_cpu_seconds, 6),
        statistics_cpu_seconds=round(service.statistics_cpu_seconds, 6),
        gc_cpu_seconds=round(gc_cpu, 6),
        gc_full_collections=gc_full,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """Every domain's statistics at one tick. Immutable once published."""

    taken_at: float
    """Wall-clock time (``time.time()``) it was taken."""
    domains: dict[int, StoreStats]
    """uid -> that domain's statistics, each with its daemon section."""
    detail_age: dict[int, float]
    """uid -> seconds since the per-agent unique/shared/compressed split was computed."""


@dataclasses.dataclass(slots=True)
class _Detail:
    at: float  # monotonic time of the last full walk
    cost: float  # seconds it took
    agents: dict[str, AgentStats]  # by name: each agent's last split (a walk or a refresh)
    refreshed: dict[str, float]  # by name: monotonic time of that split
    credit: float = 0.0  # seconds of per-agent refreshes the budget allows now (may be < 0)
    credit_at: float = 0.0  # monotonic time the credit was last topped up


class Observer:
    """Builds a :class:`Snapshot` each tick; writes the ``agent_stats`` file if given a path.

    Loop thread only, except :attr:`snapshot`, which any thread may read.
    """

    def __init__(self, service: Service, *, stats_path: str | None = None) -> None:
        self.service = service
        self.stats_path = stats_path
        #: The last snapshot published (None before the first tick).
        self.snapshot: Snapshot | None = None
        self._detail: dict[int, _Detail] = {}
        #: (monotonic time, seconds it took, bytes) of the last reading of the daemon's PSS.
        self._pss: tuple[float, float, int] = (0.0, 0.0, 0)

    def tick(self) -> None:
        """Take and publish a snapshot, then rewrite the statistics file (atomically)."""
        snapshot = self.take()
        self.snapshot = snapshot
        if self.stats_path is not None:
            self.write(snapshot)

    def take(self) -> Snapshot:
        now = time.monotonic()
        pss = self._own_pss(now)
        segments = segment_totals(self.service)
        domains: dict[int, StoreStats] = {}
        ages: dict[int, float] = {}
        for uid, domain in list(self.service.domains.items()):
            stats = self._domain_stats(uid, domain, now)
            domains[uid] = dataclasses.replace(
                stats, daemon=daemon_stats(self.service, domain, pss=pss, segments=segments)
            )
            ages[uid] = self._detail_age(uid, now)
        return Snapshot(time.time(), domains, ages)

    def _own_pss(self, now: float) -> int:
        """The daemon's PSS, read again only when its last reading cost at most
        :data:`DETAIL_BUDGET` of the time since: the kernel walks every page the daemon maps
        to sum it (~20 ms for a daemon holding 100 seed-profile agents' histories)."""
        at, cost, pss = self._pss
        if pss and not _due(now, at, cost):
            return pss
        t0 = time.perf_counter()
        pss = read_pss()
        self._pss = (now, time.perf_counter() - t0, pss)
        return pss

    def _domain_stats(self, uid: int, domain: Domain, now: float) -> StoreStats:
        last = self._detail.get(uid)
        if last is None or (last.cost < WALK_MAX and _due(now, last.at, last.cost)):
            t0 = time.perf_counter()
            stats = _walk_within(domain, WALK_MAX)
            cost = time.perf_counter() - t0
            if stats is not None:
                agents = {a.name: a for a in stats.per_agent}
                self._detail[uid] = _Detail(now, cost, agents, dict.fromkeys(agents, now), 0.0, now)
                return stats
            # The domain grew past what a tick may walk (the last walk's cost said it would
            # not): given up at WALK_MAX, and from now on refreshed one agent at a time.
            last = self._detail[uid] = _Detail(
                now,
                max(cost, WALK_MAX),
                dict(last.agents) if last is not None else {},
                dict(last.refreshed) if last is not None else {},
                0.0,
                now,
            )
        cheap = domain.store.get_stats(cheap=True)
        assert isinstance(cheap, StoreStats)
        if last.cost >= WALK_MAX:
            _refresh(domain, last, cheap.per_agent, now)
        return dataclasses.replace(
            cheap, per_agent=tuple(_carry(a, last.agents.get(a.name)) for a in cheap.per_agent)
        )

    def _detail_age(self, uid: int, now: float) -> float:
        """Seconds since the oldest per-agent split of the domain was taken."""
        detail = self._detail[uid]
        oldest = min(detail.refreshed.values(), default=detail.at)
        return round(now - min(oldest, now), 3)

    def write(self, snapshot: Snapshot) -> None:
        """Replace the statistics file with ``snapshot``'s text (temp file, then rename)."""
        path = self.stats_path
        assert path is not None
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, render_file(snapshot).encode())
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot write %s: %s", path, exc)

    def remove_file(self) -> None:
        """Remove the statistics file (the daemon is stopping: nothing keeps it fresh)."""
        if self.stats_path is not None:
            for p in (self.stats_path, f"{self.stats_path}.{os.getpid()}.tmp"):
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    log.warning("cannot remove %s: %s", p, exc)


def _walk_within(domain: Domain, budget: float) -> StoreStats | None:
    """The domain's statistics by a walk in steps, or None if it takes over ``budget``
    seconds (then dropped where it was: the loop is held at most that long)."""
    walk = domain.store.get_stats_steps()
    ended, stats = run_until(walk, time.perf_counter() + budget)
    if not ended:
        walk.close()
    return stats


def _refresh(domain: Domain, detail: _Detail, agents: Sequence[AgentStats], now: float) -> None:
    """Refresh the splits of ``agents`` (the domain's, now) that were refreshed longest ago,
    those without one first, while the budget's credit lasts (DETAIL_BUDGET of the time since
    the last top-up; one refresh may overdraw it, repaid over the next ticks)."""
    elapsed = max(0.0, now - detail.credit_at)
    detail.credit = min(detail.credit + elapsed * DETAIL_BUDGET, WALK_MAX)
    detail.credit_at = max(now, detail.credit_at)
    live = {a.name for a in agents}
    for gone in [n for n in detail.refreshed if n not in live]:
        del detail.refreshed[gone]
        detail.agents.pop(gone, None)

    def age(a: AgentStats) -> tuple[float, str]:
        split = detail.agents.get(a.name)
        fresh = split is not None and split.pid == a.pid  # a new agent of an old name has none
        return (detail.refreshed.get(a.name, -1.0) if fresh else -1.0, a.name)

    store = domain.store
    for name in [a.name for a in sorted(agents, key=age)]:
        if detail.credit <= 0:
            return
        t0 = time.perf_counter()
        stats = store.get_stats(name)
        detail.credit -= time.perf_counter() - t0
        assert isinstance(stats, AgentStats)
        detail.agents[name] = stats
        detail.refreshed[name] = now


def _carry(now: AgentStats, before: AgentStats | None) -> AgentStats:
    """``now`` with the unique/shared/compressed split of ``before`` if it is the same agent."""
    if before is None or before.pid != now.pid:
        return now
    return dataclasses.replace(
        now,
        unique_bytes=before.unique_bytes,
        shared_bytes=before.shared_bytes,
        compressed_bytes=before.compressed_bytes,
    )


def render_file(snapshot: Snapshot) -> str:
    """The ``agent_stats`` file: a header, then ``agentmem stats``'s text for each uid."""
    taken = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snapshot.taken_at))
    parts = [f"# agentmem statistics, pid {os.getpid()}, at {taken} (rewritten every second)\n"]
    for uid in sorted(snapshot.domains):
        parts.append(f"\n## uid {uid}\n")
        age = snapshot.detail_age.get(uid, 0.0)
        if age >= 2:
            parts.append(f"# unique/shared/compressed per agent as of {age:.0f} s ago\n")
        parts.append(statstext.render(snapshot.domains[uid]))
    return "".join(parts)
