"""``agentmem bench tiers``: the semantic eviction policy against plain LRU on one agent trace.

Why: the hot tier holds less than the agents hold, so something must leave it, and what leaves
decides how often an agent *that is working* waits for its own content to come back (a
promotion: a warm frame decoded, or a pack read from disk). The semantic policy
(``store/policy.py``) demotes idle agents' content first and widely shared prompts last; LRU,
what a page cache does, knows only when each handle was last used. Both replay one trace, on
one simulated clock, in the same store with the same budgets; only ``Config.lru_policy``
differs.

The trace, a pure function of the seed (:func:`build_trace`):

* ``agents`` agents (100) in PRODUCTS (4) products, agent ``i`` in product ``i % 4``. Each
  product has one system prompt (16, 32, 48, 64 KiB; --quick 4-16 KiB) and one tool catalogue
  (8-32 KiB; --quick 2-8 KiB), allocated by an orchestrator, published and opened by each of
  its agents: one copy, one handle per agent. Each agent has its own conversation.
* Each agent starts idle and alternates idle periods and sessions. Idle: exponential, mean
  IDLE_MEAN_S (7.5 min). A session: K requests, K uniform in 3..15. A *request* (building the
  LLM call) reads the system prompt, the tool catalogue and the whole conversation. The model
  then thinks while the agent stays active: lognormal, median 10 s, sigma 0.77 (p99 ~60 s),
  capped at 120 s. The reply appends two messages (the assistant's and its tool result) and,
  but for the session's last, the next request follows at once. A session opens with one
  appended message (the user's) before its first request; after the last reply the agent
  is idle again.
* Messages: agent ``i`` takes, in order, the messages of conversations ``i``, ``i + agents``,
  ``i + 2 * agents`` ... of the corpus (or of generated ones), wrapping around.
* Span: 2 simulated hours (quick: 30 min), ~12 sessions an agent (quick ~3). ``store.maintain``
  runs every MAINTAIN_EVERY_S simulated seconds, as the daemon's once-a-second tick would.

Budgets: hot is HOT_FRACTION (40 %) of the *working set*, the unique plain bytes held at the
end of the trace (measured by replaying its appends into a store with no budget); warm is
WARM_FRACTION of it in frame bytes, so the longest-idle content reaches the cold tier (a fresh
temporary state directory per run; far memory off, so every machine measures the same tiers).
Two SCENARIOS, each replayed under both policies: ``defaults``, the store's age rules on (warm
after 5 min unused, an idle agent's content after 1 min), and ``budget_only``, age rules off,
where only the budgets and the policy move content.

Per replay: promotions by the reading agent's state (the target: active agents'), split by
content and by whether the request opened a session (content demoted while its agent was idle:
every policy pays that) or came mid-session (demoted while it worked, or with someone else's
content: the chunks a conversation shares with others, e.g. a trajectory's common system
message, leave with whichever holder is demoted; counted apart as ``shared only``); reads of
content not hot that the store served decoded for want of room; what the policy chose to
demote; reads by the coldest tier they touched, p50/p99 (a read that promotes includes the
demotions making room for it); bytes per tier over time; CPU spent compressing. Latencies use
``time.perf_counter_ns``; no timing is a target.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import platform
import random
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from agentmem.bench import report as rp
from agentmem.bench import workloads as wl
from agentmem.config import Config
from agentmem.ids import Handle
from agentmem.states import AgentState, SMUType, Tier
from agentmem.store import Agent, Store
from agentmem.store.policy import Candidate, EvictionPolicy
from agentmem.store.records import Ref

KIB = 1 << 10
MB = 1_000_000

PRODUCTS = 4
DEFAULT_AGENTS = 100
SEED = 1729
#: Trace distribution (see the module docstring).
IDLE_MEAN_S = 450.0
TURNS = (3, 15)
THINK_MEDIAN_S = 10.0
THINK_SIGMA = 0.77  # ln(60 / 10) / 2.326: p99 at 60 s
THINK_MAX_S = 120.0
#: Simulated seconds between ``store.maintain`` calls (O(handles + hot messages) each) and
#: between samples of bytes per tier.
MAINTAIN_EVERY_S = 5.0
SAMPLE_EVERY_S = 60.0
#: Hot budget, of the working set; warm budget (frame bytes), of the working set. Frames are
#: ~4-8x smaller than their plain bytes, so 5 % keeps roughly a third of the working set warm.
HOT_FRACTION = 0.4
WARM_FRACTION = 0.05
#: Generated data per message needed: trajectory-file bytes per message (measured: 20 MB of
#: generated files hold ~10,260 messages), with half again to spare so agents rarely wrap.
GENERATED_FILE_BYTES_PER_MESSAGE = 3000
#: Samples of bytes per tier shown in the markdown (the JSON has all of them).
MD_SAMPLES = 10

POLICIES = ("semantic", "lru")
#: What a request reads, in order.
_READ_TYPES = (SMUType.SYSTEM_PROMPT, SMUType.TOOL_DEF, SMUType.CONVERSATION)
#: Config fields each scenario changes from the store's defaults.
SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "budget_only": {"warm_after_seconds": 0, "idle_agent_warm_seconds": 0},
}
TARGETS = tuple(
    t
    for sc in SCENARIOS
    for t in (
        rp.Target(
            f"{sc}.ratio.promotions_active",
            "<=",
            0.5,
            f"{sc}: semantic / LRU promotions of active agents' content",
        ),
        rp.Target(
            f"{sc}.semantic.over_budget_segments", "<=", 1.0, f"{sc}: semantic, hot over budget"
        ),
        rp.Target(f"{sc}.lru.over_budget_segments", "<=", 1.0, f"{sc}: LRU, hot over budget"),
    )
)
"""The figures' goals (hot over budget in segments of ``config.segment_bytes``)."""


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much the trace holds."""

    agents: int
    span_s: float
    prompt_kib: tuple[int, int]
    """Smallest and largest product system prompt; the others evenly between."""
    tools_kib: tuple[int, int]


FULL = Sizes(DEFAULT_AGENTS, 7200.0, (16, 64), (8, 32))
QUICK = Sizes(40, 1800.0, (4, 16), (2, 8))


class Kind(enum.IntEnum):
    """What happens at an event of the trace."""

    START = 0  # the agent becomes active; the user's message; the first request
    TURN = 1  # the model replied: two messages appended; the next request
    LAST = 2  # the model replied to the session's last request: two messages; the agent idles


class Event(NamedTuple):
    t: float
    agent: int
    kind: Kind


def _sizes(lo: int, hi: int, n: int) -> list[int]:
    return [(lo + (hi - lo) * k // max(n - 1, 1)) * KIB for k in range(n)]


def _agent_events(i: int, span_s: float, seed: int) -> list[Event]:
    """Agent ``i``'s events before ``span_s``; its own RNG, so agents do not depend on each
    other (nor on how many there are)."""
    rng = random.Random(seed * 1_000_003 + i)
    mu = math.log(THINK_MEDIAN_S)
    out: list[Event] = []
    t = rng.expovariate(1 / IDLE_MEAN_S)
    while t < span_s:
        out.append(Event(t, i, Kind.START))
        turns = rng.randint(*TURNS)
        for k in range(turns):
            t += min(rng.lognormvariate(mu, THINK_SIGMA), THINK_MAX_S)
            if t >= span_s:
                return out
            out.append(Event(t, i, Kind.LAST if k == turns - 1 else Kind.TURN))
        t += rng.expovariate(1 / IDLE_MEAN_S)
    return out


def build_trace(agents: int, span_s: float, seed: int = SEED) -> list[Event]:
    """Every agent's events, in time order (ties: lower agent first)."""
    return sorted(e for i in range(agents) for e in _agent_events(i, span_s, seed))


def messages_needed(trace: Sequence[Event]) -> int:
    """Messages the trace appends."""
    return sum(1 if e.kind is Kind.START else 2 for e in trace)


@dataclasses.dataclass(frozen=True)
class Workload:
    """The bytes a trace is replayed with."""

    source: str
    prompts: list[bytes]
    """One system prompt per product."""
    tools: list[bytes]
    """One tool catalogue per product."""
    conversations: list[list[bytes]]

    def stream(self, agent: int, agents: int) -> Iterator[bytes]:
        """Agent ``agent``'s messages: conversations agent, agent + agents, ... wrapping."""
        convs = self.conversations
        k = agent
        while True:
            yield from convs[k % len(convs)]
            k += agents


def make_workload(corpus: Path | None, sizes: Sizes, needed_messages: int) -> Workload:
    """Prompts, tool catalogues and conversations from the corpus, or generated."""
    prompt_sizes = _sizes(*sizes.prompt_kib, PRODUCTS)
    tool_sizes = _sizes(*sizes.tools_kib, PRODUCTS)
    # One text with no chunk repeated, cut in pieces: no two products share a chunk.
    text = wl.prompt_text(corpus, sum(prompt_sizes) + sum(tool_sizes))
    pieces: list[bytes] = []
    at = 0
    for n in prompt_sizes + tool_sizes:
        pieces.append(text[at : at + n])
        at += n
    if corpus is not None:
        cs = wl.load_conversations(corpus)
    else:
        cs = wl.generated_conversations(needed_messages * GENERATED_FILE_BYTES_PER_MESSAGE)
    convs = [c.messages for c in cs.conversations if c.messages]
    if not convs:
        raise ValueError(f"no conversation with messages in {cs.source}")
    return Workload(cs.source, pieces[:PRODUCTS], pieces[PRODUCTS:], convs)


# --- replay ----------------------------------------------------------------------------------


class _Clock:
    """The store's clock: simulated seconds, set by the replay."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Recorder:
    """The store's policy, wrapped: tallies the plain bytes it chooses to demote, by phase,
    SMU type and agent state (a candidate's ``hot_bytes``: an upper bound, chunks shared with
    other content count). Decides nothing itself."""

    def __init__(self, inner: EvictionPolicy) -> None:
        self.inner = inner
        self.phase = "placement"
        self.chosen: Counter[str] = Counter()

    def choose(self, candidates: Sequence[Candidate], need: int, now: float) -> list[Candidate]:
        out = self.inner.choose(candidates, need, now)
        for c in out:
            self.chosen[f"{self.phase}.{c.smu_type.label}.{c.state.label}"] += c.hot_bytes
        return out


@dataclasses.dataclass
class _Agent:
    agent: Agent
    prompt: Handle
    tools: Handle
    conversation: Handle
    messages: Iterator[bytes]


def _setup(store: Store, work: Workload, agents: int) -> list[_Agent]:
    """Products' prompts and tools published by an orchestrator (which then lets go of its
    handles: the names hold them), and each agent with its handles on them and an empty
    conversation. Agents start idle."""
    orchestrator = store.register_agent("orchestrator", state="idle")
    for p in range(PRODUCTS):
        for kind, data in (
            (SMUType.SYSTEM_PROMPT, work.prompts[p]),
            (SMUType.TOOL_DEF, work.tools[p]),
        ):
            h = store.alloc_smu(kind, data, orchestrator)
            store.publish(h, f"product-{p}/{kind.label}")
            store.release(h)
    out = []
    for i in range(agents):
        a = store.register_agent(f"agent-{i:03d}", state="idle")
        p = i % PRODUCTS
        out.append(
            _Agent(
                a,
                store.open(f"product-{p}/system_prompt", a),
                store.open(f"product-{p}/tool_def", a),
                store.alloc_smu(SMUType.CONVERSATION, [], a),
                work.stream(i, agents),
            )
        )
    return out


def measure_working_set(work: Workload, trace: Sequence[Event], agents: int) -> int:
    """Unique plain bytes held at the end of the trace: its appends into a store with no
    budget and no age rule (reads change no content)."""
    config = Config(warm_after_seconds=0, idle_agent_warm_seconds=0, cold_after_seconds=0)
    with Store(config, far_memory=None) as store:
        state = _setup(store, work, agents)
        for e in trace:
            s = state[e.agent]
            for _ in range(1 if e.kind is Kind.START else 2):
                store.append(s.conversation, next(s.messages))
        return store.hot.live_bytes


def _coldest(store: Store, handle: Handle) -> tuple[Tier, bool]:
    """The coldest tier holding a chunk of the handle's content, and whether every chunk not
    hot is held elsewhere too: by another message or SMU (refs > 1) or, for a conversation, in
    a message node another conversation shares (a common prefix)."""
    ref = store.refs[handle]
    if isinstance(ref, Ref):
        return max((e.tier for e in ref.smu.chunks), default=Tier.HOT), ref.smu.refs > 1
    path = ref.path
    # A node with more than one ref (a second child, or another ref's tip) is where another
    # conversation branches off: it and every node before it are that conversation's too.
    shared_upto = 0
    for i, node in enumerate(path):
        if node.refs > 1:
            shared_upto = i + 1
    coldest = Tier.HOT
    own = False
    for i, node in enumerate(path):
        for e in node.chunks:
            if e.tier is not Tier.HOT:
                coldest = max(coldest, e.tier)
                own = own or (i >= shared_upto and e.refs == 1)
    return coldest, not own


class _Replay:
    """One policy's replay of the trace: the store, what was measured, and the handlers."""

    def __init__(self, store: Store, state: list[_Agent], sample_every: float) -> None:
        self.store = store
        self.state = state
        self.reads: dict[Tier, list[int]] = {t: [] for t in Tier}
        self.promoted: Counter[str] = Counter()  # "<start|mid>.<type>" -> reads that promoted
        self.appends = 0
        self.revived = 0
        self.decoded = 0
        self.hot_max = 0
        self.series: list[dict[str, float]] = []
        self.sample_every = sample_every
        self.next_sample = 0.0

    def observe(self) -> None:
        self.hot_max = max(self.hot_max, self.store.hot.live_bytes)

    def read(self, handle: Handle, smu_type: SMUType, phase: str) -> None:
        store = self.store
        tier, shared = _coldest(store, handle)
        promotions = sum(store.promotions)
        clock = time.perf_counter_ns
        if smu_type is SMUType.CONVERSATION:
            t = clock()
            store.messages(handle)
            dt = clock() - t
        else:
            t = clock()
            store.read(handle)
            dt = clock() - t
        self.reads[tier].append(dt)
        if sum(store.promotions) != promotions:
            self.promoted[f"{phase}.{smu_type.label}"] += 1
            if smu_type is SMUType.CONVERSATION:
                self.promoted[f"{phase}.shared_only"] += shared
        elif tier is not Tier.HOT:
            self.decoded += 1  # no room in the budget even after demoting: served decoded
        self.observe()

    def request(self, s: _Agent, phase: str) -> None:
        self.read(s.prompt, SMUType.SYSTEM_PROMPT, phase)
        self.read(s.tools, SMUType.TOOL_DEF, phase)
        self.read(s.conversation, SMUType.CONVERSATION, phase)

    def append(self, s: _Agent, n: int) -> None:
        store = self.store
        for _ in range(n):
            before = sum(store.promotions)
            store.append(s.conversation, next(s.messages))
            # a message (or a whole history prefix) written again while demoted comes back
            self.revived += sum(store.promotions) - before
            self.appends += 1
            self.observe()

    def event(self, e: Event) -> None:
        s = self.state[e.agent]
        if e.kind is Kind.START:
            self.store.set_state(s.agent, AgentState.ACTIVE)
            self.append(s, 1)
            self.request(s, "session_start")
            return
        self.append(s, 2)
        if e.kind is Kind.TURN:
            self.request(s, "mid_session")
        else:
            self.store.set_state(s.agent, AgentState.IDLE)

    def sample(self, t: float) -> None:
        store = self.store
        warm = store.warm.stats()
        cold = store.cold.stats() if store.cold is not None else None
        self.series.append(
            {
                "t_s": round(t, 1),
                "active_agents": sum(s.agent.state is AgentState.ACTIVE for s in self.state),
                "hot_bytes": store.hot.live_bytes,
                "warm_raw_bytes": warm.raw_bytes,
                "warm_frame_bytes": warm.stored_bytes,
                "cold_raw_bytes": cold.raw_bytes if cold else 0,
                "cold_stored_bytes": cold.stored_bytes if cold else 0,
            }
        )

    def advance(self, clock: _Clock, recorder: _Recorder, to: float, tick: float) -> float:
        """Run the maintenance ticks and samples due up to ``to``; returns the next tick."""
        while tick <= to:
            clock.now = tick
            recorder.phase = "maintain"
            self.store.maintain()
            recorder.phase = "placement"
            self.observe()
            if tick >= self.next_sample:
                self.sample(tick)
                self.next_sample += self.sample_every
            tick += MAINTAIN_EVERY_S
        return tick


def replay(
    work: Workload, trace: Sequence[Event], agents: int, span_s: float, config: Config
) -> dict[str, Any]:
    """Replay ``trace`` in a fresh store with ``config`` (and a fresh state directory)."""
    clock = _Clock()
    with (
        tempfile.TemporaryDirectory(prefix="agentmem-bench-tiers-") as state_dir,
        Store(config, clock=clock, state_dir=state_dir, far_memory=None) as store,
    ):
        recorder = _Recorder(store.policy)
        store.policy = recorder
        run = _Replay(store, _setup(store, work, agents), SAMPLE_EVERY_S)
        started, cpu = time.perf_counter(), time.process_time()
        tick = 0.0
        for e in trace:
            tick = run.advance(clock, recorder, e.t, tick)
            clock.now = e.t
            run.event(e)
        run.advance(clock, recorder, span_s, tick)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        result = _summary(run, recorder, config)
    result["replay_s"] = round(elapsed, 2)
    result["replay_cpu_s"] = round(cpu, 2)
    return result


def _summary(run: _Replay, recorder: _Recorder, config: Config) -> dict[str, Any]:
    store = run.store
    budget = config.hot_budget_bytes
    over = max(0, run.hot_max - budget)
    active = AgentState.ACTIVE
    reads: dict[str, Any] = {}
    for tier, ns in run.reads.items():
        reads[tier.label] = rp.latency_us(ns) if ns else {"calls": 0}
    by_phase = {
        phase: {t.label: run.promoted[f"{phase}.{t.label}"] for t in _READ_TYPES}
        for phase in ("session_start", "mid_session")
    }
    cold_cpu = store.cold.codec.encode_seconds if store.cold is not None else 0.0
    return {
        "promotions_active": store.promotions[active],
        "promoted_bytes_active": store.promoted_bytes[active],
        "promotions_total": sum(store.promotions),
        "promotions_by_state": {s.label: store.promotions[s] for s in AgentState},
        "promotions_active_session_start": sum(by_phase["session_start"].values()),
        "promotions_active_mid_session": sum(by_phase["mid_session"].values()),
        "promotions_active_on_append": run.revived,
        "promoting_reads": by_phase,
        "promoting_reads_shared_only": {p: run.promoted[f"{p}.shared_only"] for p in by_phase},
        "reads_total": sum(len(v) for v in run.reads.values()),
        "reads_served_decoded": run.decoded,
        "appends": run.appends,
        "reads": reads,
        "budget_bytes": budget,
        "hot_max_bytes": run.hot_max,
        "max_over_budget_bytes": over,
        "over_budget_segments": round(over / config.segment_bytes, 3),
        "compress_cpu_s": round(store.warm.codec.encode_seconds + cold_cpu, 3),
        "demoted_bytes": {
            "warm": store.demoted_bytes[Tier.WARM],
            "cold": store.demoted_bytes[Tier.COLD],
        },
        "policy_chose_bytes": dict(sorted(recorder.chosen.items())),
        "tier_errors": list(store.tier_errors),
        "series": run.series,
    }


# --- results ---------------------------------------------------------------------------------


def _mb(n: float) -> float:
    return round(n / MB, 2)


def _runs(r: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every replay as (``scenario, policy`` label, its results), in table order."""
    return [(f"{sc}, {p}", r[sc][p]) for sc in SCENARIOS for p in POLICIES]


_ROWS: tuple[tuple[str, str, bool], ...] = (
    # (what, key, in MB)
    ("promotions of active agents' content", "promotions_active", False),
    ("  opening a session (content demoted while idle)", "promotions_active_session_start", False),
    ("  mid-session (content demoted while working)", "promotions_active_mid_session", False),
    ("  on an append (demoted content written again)", "promotions_active_on_append", False),
    ("promoted bytes, active agents (MB)", "promoted_bytes_active", True),
    ("promotions, all agents", "promotions_total", False),
    ("reads (prompt, tools, conversation)", "reads_total", False),
    ("  of content not hot, served decoded (no room to promote)", "reads_served_decoded", False),
    ("appends", "appends", False),
    ("hot budget (MB)", "budget_bytes", True),
    ("hot bytes, max (MB)", "hot_max_bytes", True),
    ("hot over budget, max (bytes)", "max_over_budget_bytes", False),
    ("CPU compressing, warm + cold (s)", "compress_cpu_s", False),
    ("replay, wall (s)", "replay_s", False),
)


def _measure_rows(r: dict[str, Any]) -> list[list[object]]:
    runs = [res for _, res in _runs(r)]
    rows: list[list[object]] = [
        [what, *(_mb(x[key]) if mb else x[key] for x in runs)] for what, key, mb in _ROWS
    ]
    ratios = (r[sc]["ratio"]["promotions_active"] for sc in SCENARIOS)
    rows.insert(1, ["  semantic / LRU", *(x for ratio in ratios for x in (ratio, "-"))])
    for tier in ("warm", "cold"):
        rows.append([f"demoted to {tier} (MB)", *(_mb(x["demoted_bytes"][tier]) for x in runs)])
    return rows


def _series_rows(series: list[dict[str, Any]], lru: list[dict[str, Any]]) -> list[list[object]]:
    """About MD_SAMPLES evenly spaced samples of both policies' series, and the last."""
    step = max(1, math.ceil(len(series) / MD_SAMPLES))
    rows: list[list[object]] = []
    for i in sorted({*range(0, len(series), step), len(series) - 1}):
        row: list[object] = [round(series[i]["t_s"] / 60, 1), series[i]["active_agents"]]
        for x in (series[i], lru[i]):
            row += [
                _mb(x["hot_bytes"]),
                f"{_mb(x['warm_raw_bytes'])} ({_mb(x['warm_frame_bytes'])})",
                f"{_mb(x['cold_raw_bytes'])} ({_mb(x['cold_stored_bytes'])})",
            ]
        rows.append(row)
    return rows


def _idle_rule(config: dict[str, Any]) -> str:
    idle = config["idle_agent_warm_seconds"]
    return f"an idle agent's after {idle} s" if idle else "no idle-agent rule"


def render_markdown(r: dict[str, Any]) -> str:
    """The results as markdown: targets, every replay side by side, promoting reads, reads per
    tier, what each policy chose to demote, and bytes per tier over time."""
    meta = r["meta"]
    tr = meta["trace"]
    out = ["# agentmem bench tiers", ""]
    if meta["data"] == "generated":
        out.append(
            "**Data: generated** (no `--corpus`): deterministic look-alike conversations. The "
            "figures describe that data; run with `--corpus` for real agents' messages."
        )
    else:
        out.append(f"Data: corpus at `{meta['corpus']}`.")
    out += [
        "",
        f"Trace (seed {meta['seed']}{', quick' if meta['quick'] else ''}): {meta['agents']} "
        f"agents in {PRODUCTS} products over {meta['span_s'] / 3600:.2f} simulated hours; "
        f"{tr['sessions']:,} sessions, {tr['requests']:,} requests, {tr['appends']:,} appends. "
        f"Working set {_mb(meta['working_set_bytes'])} MB; hot budget "
        f"{_mb(meta['hot_budget_bytes'])} MB ({HOT_FRACTION:.0%}); warm budget "
        f"{_mb(meta['warm_budget_bytes'])} MB of frames ({WARM_FRACTION:.0%}); segment "
        f"{meta['config']['segment_bytes'] >> 20} MiB; `maintain` every {MAINTAIN_EVERY_S:g} "
        f"simulated s. Scenarios: `defaults` (the store's age rules: warm after "
        f"{meta['config']['warm_after_seconds']} s unused, cold after "
        f"{meta['config']['cold_after_seconds']} s; {_idle_rule(meta['config'])}) and "
        "`budget_only` (age rules off: only the budgets and the policy move content). "
        f"Python {meta['python']} on {meta['machine']}; {meta['elapsed_s']} s in all. "
        "MB = 10^6 bytes.",
        "",
        "## Targets",
        "",
    ]
    out += rp.table(
        ["target", "value", "goal", "met"],
        [[t["what"], t["value"], f"{t['op']} {t['target']}", t["met"]] for t in r["targets"]],
        right=2,
    )
    runs = _runs(r)
    out += ["## Every replay of the same trace", ""]
    out += rp.table(["measure", *(name for name, _ in runs)], _measure_rows(r), right=len(runs))
    out += [
        "## Reads that promoted, by content (every one by an active agent)",
        "",
        "`conversation, shared only`: conversation reads whose chunks not hot were all held "
        "elsewhere too (by another message or SMU, or in a prefix another conversation "
        "shares): brought back for this agent after leaving with someone else's content.",
        "",
    ]
    out += rp.table(
        ["replay", "request", *(t.label for t in _READ_TYPES), "conversation, shared only"],
        [
            [name, phase, *counts.values(), res["promoting_reads_shared_only"][phase]]
            for name, res in runs
            for phase, counts in res["promoting_reads"].items()
        ],
        right=5,
    )
    out += [
        "## Reads by the coldest tier they touched (us; a promoting read includes the "
        "demotions that make room for it)",
        "",
    ]
    out += rp.table(
        ["replay", "tier", "reads", "p50", "p99", "mean"],
        [
            [name, tier, x["calls"], x.get("p50_us"), x.get("p99_us"), x.get("mean_us")]
            for name, res in runs
            for tier, x in res["reads"].items()
        ],
        right=5,
    )
    out += [
        "## What each policy chose to demote (MB)",
        "",
        "By phase (`placement`: the hot budget, on an allocation, append or promotion; "
        "`maintain`: mostly the warm budget, warm to cold; the age rules do not ask the "
        "policy), SMU type and the agent's state then; candidates' plain bytes in the tier, "
        "an upper bound (content shared by several candidates counts in each).",
        "",
    ]
    keys = sorted({k for _, res in runs for k in res["policy_chose_bytes"]})
    out += rp.table(
        ["phase.type.state", *(name for name, _ in runs)],
        [[k, *(_mb(res["policy_chose_bytes"].get(k, 0)) for _, res in runs)] for k in keys],
        right=len(runs),
    )
    for sc in SCENARIOS:
        out += [f"## Bytes per tier over time, {sc} (MB; warm and cold: plain (stored))", ""]
        out += rp.table(
            ["min", "active", "sem hot", "sem warm", "sem cold", "LRU hot", "LRU warm", "LRU cold"],
            _series_rows(r[sc]["semantic"]["series"], r[sc]["lru"]["series"]),
            right=7,
        )
    return "\n".join(out)


def run(
    corpus: Path | None = None,
    json_path: Path | None = None,
    md_path: Path | None = None,
    agents: int | None = None,
    quick: bool = False,
    *,
    span_s: float | None = None,
    seed: int = SEED,
) -> dict[str, Any]:
    """Build the trace, measure its working set, replay it under each scenario and policy;
    print the markdown; write JSON (and markdown) if asked. ``span_s`` shortens the trace
    (tests). Returns the results written as JSON."""
    started = time.perf_counter()
    base = QUICK if quick else FULL
    sizes = dataclasses.replace(
        base,
        agents=base.agents if agents is None else agents,
        span_s=base.span_s if span_s is None else span_s,
    )
    if sizes.agents < 1 or sizes.span_s <= 0:
        raise ValueError("agents must be >= 1 and the span > 0")
    trace = build_trace(sizes.agents, sizes.span_s, seed)
    rp.progress("tiers", f"trace: {len(trace):,} events of {sizes.agents} agents")
    work = make_workload(corpus, sizes, messages_needed(trace))
    working_set = measure_working_set(work, trace, sizes.agents)
    config = Config(
        hot_budget_bytes=int(working_set * HOT_FRACTION),
        warm_budget_bytes=int(working_set * WARM_FRACTION),
        durable_sync=False,  # no fdatasync per append: maintain() syncs, as in relaxed mode
    )
    rp.progress(
        "tiers",
        f"working set {_mb(working_set)} MB: hot budget {_mb(config.hot_budget_bytes)} MB, "
        f"warm budget {_mb(config.warm_budget_bytes)} MB of frames",
    )
    results: dict[str, Any] = {
        "meta": {
            "benchmark": "agentmem bench tiers",
            "data": "generated" if corpus is None else "corpus",
            "corpus": str(corpus) if corpus is not None else None,
            "source": work.source,
            "quick": quick,
            "seed": seed,
            "agents": sizes.agents,
            "products": PRODUCTS,
            "span_s": sizes.span_s,
            "prompt_bytes": [len(p) for p in work.prompts],
            "tool_bytes": [len(t) for t in work.tools],
            "trace": {
                "idle_mean_s": IDLE_MEAN_S,
                "turns": list(TURNS),
                "think_median_s": THINK_MEDIAN_S,
                "think_sigma": THINK_SIGMA,
                "think_max_s": THINK_MAX_S,
                "sessions": sum(e.kind is Kind.START for e in trace),
                "requests": sum(e.kind is not Kind.LAST for e in trace),
                "appends": messages_needed(trace),
            },
            "working_set_bytes": working_set,
            "hot_fraction": HOT_FRACTION,
            "hot_budget_bytes": config.hot_budget_bytes,
            "warm_fraction": WARM_FRACTION,
            "warm_budget_bytes": config.warm_budget_bytes,
            "maintain_every_s": MAINTAIN_EVERY_S,
            "sample_every_s": SAMPLE_EVERY_S,
            "scenarios": SCENARIOS,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "config": dataclasses.asdict(config),
        }
    }
    for sc, changes in SCENARIOS.items():
        out: dict[str, Any] = {}
        for name in POLICIES:
            rp.progress("tiers", f"{sc}: replaying under the {name} policy")
            cfg = dataclasses.replace(config, lru_policy=name == "lru", **changes)
            out[name] = replay(work, trace, sizes.agents, sizes.span_s, cfg)
        s, lru = out["semantic"], out["lru"]
        out["ratio"] = {
            key: round(s[key] / lru[key], 3) if lru[key] else None
            for key in (
                "promotions_active",
                "promoted_bytes_active",
                "promotions_active_mid_session",
            )
        }
        results[sc] = out
    results["targets"] = rp.evaluate(results, TARGETS)
    results["meta"]["elapsed_s"] = round(time.perf_counter() - started, 1)
    md = render_markdown(results)
    print(md)
    rp.write(results, md, json_path, md_path)
    return results
