"""``agentmem swarm``: N agents in P processes against a mock LLM, in each mode, measured.

For every agent count (the ``--agents`` figure, and each of ``--sweep``) and every mode, one
*round*, all in this run so that each figure sits beside its baselines:

1. the mode's machinery: a private daemon (``agentmem``; a launcher connection allocates the
   product's prompt and catalogue once and publishes them), or KSM switched on and tuned
   (``ksm``); a fresh mock LLM process;
2. P agent processes start; each registers (``agentmem``: opening the published prompt and
   catalogue in its handshake), reads its prompt (timed: the spawn), loads its tools and
   history, and says ``ready``;
3. ``ksm``: two full ksmd passes are waited for, so the pages it can merge are merged;
4. the swarm's memory is read (``ready``), then sampled every ``interval`` while the agents
   play their turns, at most ``concurrency`` of them building and sending a request at once
   (the *turn gate*, the same in every mode: see :class:`Gate`); when all are done it settles
   (``agentmem``: until the daemon's policy has demoted the idle agents' conversations and
   compaction has reclaimed the holes, as its statistics show; ``ksm``: one more pass) and is
   read again: the steady state, all agents idle between turns with their conversations grown;
5. the agent processes exit, and P idle interpreters with the same imports start and are
   measured: the fixed cost of the processes, subtracted to give the agents' data.

CPU: ``/proc`` utime + stime of the agent processes and of the daemon (``agentmem``) or ksmd
(``ksm``) from before the agents start until they are done; the mock LLM's is reported apart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from agentmem.bench.fleet import private_daemon
from agentmem.bench.pss import rollup
from agentmem.swarm import agent as agent_mod
from agentmem.swarm import launch, measure, profiles

MODES = agent_mod.MODES
#: Seconds a phase (start-up and loading, the turns) may take before the round fails.
PHASE_TIMEOUT = 900.0
#: Seconds the settle after the turns may take at most (``agentmem``: demoting 100 agents'
#: 30 MB conversations at ~150 MB/s is ~20 s of the daemon's time).
SETTLE_MAX_S = 180.0
#: Seconds the agent processes get, all together, to exit once told to before they are killed.
CLOSE_WAIT_S = 60.0
#: Snapshots in a row, after the idle rule's delay, in which the daemon's tiers did not move.
SETTLE_STABLE = 5


@dataclasses.dataclass(frozen=True)
class Options:
    """One swarm run, as the command line gives it."""

    agents: int = 20
    modes: tuple[str, ...] = MODES
    profile: str = "corpus"
    corpus: Path | None = None
    scale: float = 0.1
    processes: int | None = None  # None: one per agent
    turns: int = 5
    think: float = 0.5
    sweep: tuple[int, ...] = ()
    demote: bool = True
    concurrency: int = 0  # turns building and sending at once, all processes; 0: no gate
    check: bool = False  # the mock LLM parses and records every request (tests)
    warm_budget: int = 0  # agentmem: bytes of warm frames kept in RAM, the rest to disk; 0: all
    interval: float = 0.5

    def counts(self) -> list[int]:
        return sorted({self.agents, *self.sweep})

    def idle_warm_seconds(self) -> int:
        """The daemon's idle-agent rule for this run: longer than any gap an agent sits idle
        between two of its turns (:func:`agent.think_times`: at most 4x its own mean, which is
        at most 2x ``think``), so no conversation leaves the hot tier in the middle of its
        agent's run; it goes warm a little after the agent's last turn. Whole seconds: the
        daemon's setting is an int."""
        return math.ceil(8 * self.think + 1.0)

    def processes_for(self, n: int) -> int:
        """Processes for ``n`` agents: ``--processes`` scaled to the round, at least 1."""
        if self.processes is None:
            return n
        return max(1, min(n, round(self.processes * n / self.agents)))


def _log(msg: str) -> None:
    print(f"[swarm] {msg}", file=sys.stderr, flush=True)


class Gate:
    """The turn gate: ``slots`` tokens in a FIFO that every agent process opens; an agent takes
    a byte before building its request and puts it back after the reply (``agent.TurnGate``).

    Why: on 2 cores, 100 agents whose turns each need ~1 s of CPU (``plain`` at the seed
    profile: ``json.dumps`` of a 45 MB body) otherwise all hold their request in memory at
    once while they queue for a core, and ``plain`` stops fitting in 24 GiB for a reason no
    real machine with enough cores would share. Bounding the turns in flight (default: twice
    the cores) measures every mode as a machine able to serve its agents would run them. The
    gate's wait is not part of the turn's latency.
    """

    def __init__(self, path: Path, slots: int) -> None:
        self.path = path
        self.slots = slots
        os.mkfifo(path, 0o600)
        # O_RDWR: neither this open nor the agents' blocks waiting for the other end.
        self.fd = os.open(path, os.O_RDWR)
        os.write(self.fd, b"t" * slots)

    def close(self) -> None:
        os.close(self.fd)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class Fleet:
    """Child processes that speak JSON lines on stdin/stdout; stderr goes to ``log``."""

    def __init__(self, cmds: Sequence[list[str]], log: IO[bytes]) -> None:
        self.log = log
        self.procs = [
            subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
            for cmd in cmds
        ]
        self._buf: dict[int, bytes] = {p.stdout.fileno(): b"" for p in self.procs if p.stdout}

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def expect(
        self, event: str, only: Sequence[int] | None = None, timeout: float = PHASE_TIMEOUT
    ) -> list[dict[str, Any]]:
        """One message from every process (or those of ``only``), in order; ``RuntimeError``
        if one reports an error, exits, or the time runs out."""
        wanted = range(len(self.procs)) if only is None else only
        fds = {self.procs[i].stdout.fileno(): i for i in wanted}  # type: ignore[union-attr]
        got: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while len(got) < len(fds):
            waiting = [fd for fd, i in fds.items() if i not in got]
            for fd in waiting:  # a line may already be buffered
                if b"\n" in self._buf[fd]:
                    got[fds[fd]] = self._take(fd, event)
            waiting = [fd for fd, i in fds.items() if i not in got]
            if not waiting:
                break
            ready, _, _ = select.select(waiting, [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise RuntimeError(f"{len(waiting)} processes never said {event!r}")
            for fd in ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise RuntimeError(f"an agent process exited before {event!r} (see its log)")
                self._buf[fd] += chunk
        return [got[i] for i in wanted]

    def _take(self, fd: int, event: str) -> dict[str, Any]:
        line, self._buf[fd] = self._buf[fd].split(b"\n", 1)
        msg: dict[str, Any] = json.loads(line)
        if msg.get("event") == "error":
            raise RuntimeError(msg.get("error", "agent error"))
        if msg.get("event") != event:
            raise RuntimeError(f"expected {event!r}, got {msg!r}")
        return msg

    def send(self, i: int, msg: dict[str, Any]) -> None:
        stdin = self.procs[i].stdin
        assert stdin is not None
        stdin.write(json.dumps(msg).encode() + b"\n")
        stdin.flush()

    def send_all(self, msg: dict[str, Any]) -> None:
        for i in range(len(self.procs)):
            self.send(i, msg)

    def close(self) -> None:
        """Close every process's stdin (they exit on it), wait for them 60 s in all, then kill
        what is left (one blocked on the turn gate after another died holding a token)."""
        for p in self.procs:
            with contextlib.suppress(OSError):
                if p.stdin is not None:
                    p.stdin.close()
        deadline = time.monotonic() + CLOSE_WAIT_S
        for p in self.procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stdout is not None:
                p.stdout.close()


@contextlib.contextmanager
def mock_llm(run_dir: Path, check: bool) -> Any:
    """The mock LLM in a process of its own: yields (port, pid)."""
    cmd = [sys.executable, "-m", "agentmem.swarm.llm", "--run-dir", str(run_dir)]
    with subprocess.Popen(
        [*cmd, *(["--check"] if check else [])], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().split()
            if len(line) != 2 or line[0] != b"port":
                raise RuntimeError("the mock LLM did not start")
            yield int(line[1]), proc.pid
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(30)


def _agent_cmd(
    mode: str,
    o: Options,
    run_dir: Path,
    indices: Sequence[int],
    *,
    sock: str,
    port: int,
    gate: Gate | None,
    tasks: bool,
) -> list[str]:
    cmd = [sys.executable, launch.__file__, "--mode", mode, "--run-dir", str(run_dir)]
    cmd += ["--agents", ",".join(map(str, indices)), "--socket", sock, "--port", str(port)]
    cmd += ["--turns", str(o.turns), "--think", str(o.think)]
    if gate is not None:
        cmd += ["--gate", str(gate.path)]
    if tasks:
        cmd.append("--tasks")
    return cmd


def settle(launcher: Any, o: Options) -> tuple[float, bool]:
    """Wait until the daemon's tiers stop moving after the turns: the idle-agent rule's delay,
    then :data:`SETTLE_STABLE` distinct once-a-second snapshots in a row with the same hot,
    warm and cold bytes (demotion done, compaction done). Returns the seconds waited and
    whether it settled within :data:`SETTLE_MAX_S`.

    A bounded poll of a condition only the daemon's progress makes true (nothing announces
    it); each snapshot costs the daemon nothing (``get_stats(recent=True)``)."""
    t0 = time.monotonic()
    earliest = t0 + (o.idle_warm_seconds() + 1.0 if o.demote else 0.0)
    last_uptime = -1.0
    last_key: tuple[int, ...] = ()
    stable = 0
    while time.monotonic() - t0 < SETTLE_MAX_S:
        st = launcher.get_stats(daemon=True, recent=True)
        uptime = st.daemon.uptime_seconds if st.daemon is not None else time.monotonic()
        if uptime != last_uptime:  # a new snapshot
            last_uptime = uptime
            key = tuple(
                getattr(t, f)
                for t in (st.hot, st.warm, st.cold)
                if t is not None
                for f in ("raw_bytes", "physical_bytes")
            )
            stable = stable + 1 if key == last_key else 0
            last_key = key
            if stable >= SETTLE_STABLE and time.monotonic() >= earliest:
                return time.monotonic() - t0, True
        time.sleep(0.2)
    return time.monotonic() - t0, False


def idle_baseline(
    mode: str, processes: int, run_dir: Path, log: IO[bytes], *, tasks: bool = False
) -> int:
    """PSS of ``processes`` interpreters that import what ``mode``'s agents import (as threads
    or as asyncio tasks), then idle."""
    cmd = [sys.executable, launch.__file__, "--mode", mode, "--run-dir", str(run_dir), "--idle"]
    if tasks:
        cmd.append("--tasks")
    fleet = Fleet([cmd] * processes, log)
    try:
        fleet.expect("ready")
        return sum(rollup(pid)["Pss"] for pid in fleet.pids)
    finally:
        fleet.close()


def _start(
    fleet: Fleet, groups: list[list[int]], helpers: list[int]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], tuple[float, float]]:
    """Bring the fleet to ``ready``: spawn one process at a time (the others idle: connect and
    register its agents, opening the published prompt and tools, then read the prompt), then
    let all load their data at once. Returns the ready and spawned messages and the CPU of the
    agents and of the helper (daemon or ksmd) at ready."""
    fleet.expect("started")
    spawned: list[dict[str, Any]] = []
    for i in range(len(groups)):
        fleet.send(i, {"connect": True})
        fleet.expect("registered", [i])
        fleet.send(i, {"prompt": True})
        spawned += fleet.expect("spawned", [i])
    fleet.send_all({"load": True})
    ready = fleet.expect("ready")
    return ready, spawned, (measure.cpu(fleet.pids), measure.cpu(helpers))


def _p(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return float(s[min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))])


def run_round(mode: str, n: int, o: Options, run_dir: Path) -> dict[str, Any]:
    """One mode with ``n`` agents: the figures of the module docstring, or ``skipped``."""
    if mode == "ksm":
        reason = measure.ksm_unavailable()
        if reason is not None:
            _log(f"ksm skipped: {reason}")
            return {"skipped": reason}
    procs = o.processes_for(n)
    groups = [list(range(p, n, procs)) for p in range(procs)]
    tasks = procs < n  # several agents a process: asyncio tasks (agent.py)
    out: dict[str, Any] = {"agents": n, "processes": procs, "tasks": tasks}
    t_start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        log = stack.enter_context((run_dir / f"{mode}-{n}.log").open("ab"))
        ksm = stack.enter_context(measure.ksm_session()) if mode == "ksm" else None
        # The daemon's policy demotes an idle agent's conversation once it has been idle for
        # longer than it ever waits between its turns (Options.idle_warm_seconds).
        idle_rule = str(o.idle_warm_seconds()) if o.demote else "0"
        env = {**os.environ, "AGENTMEM_IDLE_AGENT_WARM_SECONDS": idle_rule}
        if o.warm_budget:
            # Past it, idle agents' frames go to the cold tier's packs in the daemon's state
            # directory (on disk: their page cache is reclaimable and in no PSS).
            env["AGENTMEM_WARM_BUDGET_BYTES"] = str(o.warm_budget)
        daemon = stack.enter_context(private_daemon(env=env)) if mode == "agentmem" else None
        port, llm_pid = stack.enter_context(mock_llm(run_dir, o.check))
        launcher = None
        if daemon is not None:
            import agentmem

            launcher = stack.enter_context(agentmem.connect(daemon.socket, name="swarm-launcher"))
            prompt = agent_mod.compact((run_dir / "prompt.txt").read_text())
            tools = (run_dir / "tools.json").read_bytes()
            launcher.publish(launcher.alloc_smu("system_prompt", prompt), agent_mod.PROMPT_NAME)
            launcher.publish(launcher.alloc_smu("tool_def", tools), agent_mod.TOOLS_NAME)
            del prompt, tools
        helper = daemon.pid if daemon is not None else (measure.ksmd_pid() if ksm else None)
        helper_pids = [helper] if helper is not None else []
        cpu0 = measure.cpu(helper_pids), measure.cpu([llm_pid])
        sock = daemon.socket if daemon is not None else ""
        # More tokens than agents gate nothing (and would not fit in the FIFO's 64 KiB).
        slots = min(o.concurrency, n)
        gate = Gate(run_dir / f"gate-{mode}-{n}", slots) if slots else None
        if gate is not None:
            stack.callback(gate.close)
        cmds = [
            _agent_cmd(mode, o, run_dir, g, sock=sock, port=port, gate=gate, tasks=tasks)
            for g in groups
        ]
        fleet = Fleet(cmds, log)
        stack.callback(fleet.close)
        dpid = daemon.pid if daemon is not None else None
        sampler = measure.Sampler(fleet.pids, dpid, o.interval).start()
        stack.callback(sampler.stop)
        try:
            ready, spawned, cpu_ready = _start(fleet, groups, [*helper_pids])
        except RuntimeError as exc:
            raise RuntimeError(sampler.exhausted or str(exc)) from exc
        t_ready = time.perf_counter()
        _log(f"{mode} x{n}: {procs} processes ready in {t_ready - t_start:.1f} s")
        if ksm is not None:
            out["ksm_merge_wait_s"] = round(ksm.wait_scans(2, 120.0), 2)
        ready_sample = measure.sample(fleet.pids, dpid)
        sampler.mark()
        fleet.send_all({"go": True})
        try:
            done = fleet.expect("done")
        except RuntimeError as exc:
            raise RuntimeError(sampler.exhausted or str(exc)) from exc
        t_done = time.perf_counter()
        agents_cpu = measure.cpu(fleet.pids)
        helper_cpu = measure.cpu(helper_pids) - cpu0[0]
        llm_cpu = measure.cpu([llm_pid]) - cpu0[1]
        turns_cpu = (agents_cpu - cpu_ready[0], helper_cpu + cpu0[0] - cpu_ready[1])
        if launcher is not None:
            waited, settled = settle(launcher, o)
            out["settle_wait_s"], out["settled"] = round(waited, 2), settled
            # The demotions after the last turns are the daemon's work too.
            out["cpu_settle_daemon_s"] = round(measure.cpu(helper_pids) - cpu0[0] - helper_cpu, 2)
            helper_cpu += out["cpu_settle_daemon_s"]
        if ksm is not None:
            out["ksm_settle_wait_s"] = round(ksm.wait_scans(1, 60.0), 2)
            out["ksm"] = ksm.counters()
        sampler.stop()
        final = measure.sample(fleet.pids, dpid)
        per_proc = [rollup(pid)["Pss"] for pid in fleet.pids]
        if launcher is not None:
            t0 = time.perf_counter()
            st = launcher.get_stats(daemon=True)
            out["store"] = {**_store_figures(st), "get_stats_ms": _ms(time.perf_counter() - t0)}
            out["daemon_cpu"] = _daemon_cpu(st, agents_cpu, helper_cpu)
        fleet.send_all({"exit": True})
        fleet.close()
    if ksm is not None:
        out["ksm_restored"] = dict(ksm.restored)
    with (run_dir / f"{mode}-{n}.log").open("ab") as log:
        idle = idle_baseline(mode, procs, run_dir, log, tasks=tasks)
    errors = [e for msg in done for e in msg["errors"]]
    turns = [t for msg in done for agent_turns in msg["turn_ms"] for t in agent_turns]
    spawn = [s for msg in spawned for s in msg["spawn_ms"]]
    per_agent = [pss / len(g) for pss, g in zip(per_proc, groups, strict=True)]
    total = final["total"]
    out.update(
        {
            "total_pss_bytes": total,
            "agent_data_bytes": total - idle,
            "peak_pss_bytes": max([total, ready_sample["total"], *sampler.totals]),
            "ready_pss_bytes": ready_sample["total"],
            "run_pss_p50_bytes": sampler.median(),
            "samples": len(sampler.totals),
            "idle_interpreters_pss_bytes": idle,
            "agent_processes_pss_bytes": final["agents"],
            "daemon_pss_bytes": final["daemon"],
            "daemon_memfd_bytes": final["memfd"],
            "unmapped_memfd_bytes": final["unmapped_memfd"],
            "per_agent_pss_bytes_p50": int(statistics.median(per_agent)),
            "per_agent_pss_bytes_max": int(max(per_agent)),
            "process_peak_rss_bytes_p50": int(statistics.median(m["peak_rss_bytes"] for m in done)),
            "cpu_agents_s": round(agents_cpu, 2),
            "cpu_daemon_s": round(helper_cpu, 2),
            "cpu_llm_s": round(llm_cpu, 2),
            "cpu_overhead_pct": round(100 * helper_cpu / max(1e-9, helper_cpu + agents_cpu), 2),
            "cpu_turns_agents_s": round(turns_cpu[0], 2),
            "cpu_turns_daemon_s": round(turns_cpu[1], 2),
            "cpu_turns_overhead_pct": round(100 * turns_cpu[1] / max(1e-9, sum(turns_cpu)), 2),
            "spawn_ms_p50": round(_p(spawn, 0.5), 3),
            "spawn_ms_p99": round(_p(spawn, 0.99), 3),
            "turn_ms_p50": round(_p(turns, 0.5), 3),
            "turn_ms_p99": round(_p(turns, 0.99), 3),
            "turns_played": len(turns),
            "body_bytes_p50": int(_p([b for m in done for b in m["body_bytes"]], 0.5)),
            "load_s_max": max(m["load_s"] for m in ready),
            "ready_s": round(t_ready - t_start, 2),
            "turns_s": round(t_done - t_ready, 2),
            "errors": errors[:10],
            "error_count": len(errors),
        }
    )
    _log(
        f"{mode} x{n}: total {total / 2**20:,.1f} MiB, data {(total - idle) / 2**20:,.1f} MiB, "
        f"turn p50 {out['turn_ms_p50']} ms, {len(errors)} errors"
    )
    return out


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _store_figures(st: Any) -> dict[str, Any]:
    return {
        "logical_bytes": st.logical_bytes,
        "unique_bytes": st.unique_bytes,
        "physical_bytes": st.physical_bytes,
        "dedup_ratio": round(st.dedup_ratio, 3),
        "compression_ratio": round(st.compression_ratio, 3),
        "hot_physical_bytes": st.hot.physical_bytes,
        "hot_raw_bytes": st.hot.raw_bytes,
        "warm_raw_bytes": st.warm.raw_bytes,
        "warm_stored_bytes": st.warm.stored_bytes,
        "cold_raw_bytes": st.cold.raw_bytes if st.cold is not None else 0,
        "cold_stored_bytes": st.cold.stored_bytes if st.cold is not None else 0,
        "chunks": st.chunks,
        "messages": st.messages,
        "segments": st.segments,
        "metadata_bytes": st.metadata_bytes,
    }


def _daemon_cpu(st: Any, agents_cpu: float, daemon_cpu: float) -> dict[str, float]:
    """Where the daemon's CPU went, as it counts it itself (seconds since it started), and its
    share of the run's CPU without the codec's part: VISION.md's CPU goal assumes a hardware
    compressor doing that part."""
    d, t = st.daemon, st.tiering
    rest = daemon_cpu - t.codec_cpu_seconds
    return {
        "total_s": round(d.cpu_seconds, 2),
        "compress_s": round(t.compress_cpu_seconds, 2),
        "decode_s": round(t.decode_cpu_seconds, 2),
        "journal_sync_s": round(t.journal_sync_cpu_seconds, 2),
        "maintenance_s": round(d.maintenance_cpu_seconds, 2),
        "statistics_s": round(d.statistics_cpu_seconds, 2),
        "gc_s": round(d.gc_cpu_seconds, 2),
        "requests_s": round(
            d.cpu_seconds - d.maintenance_cpu_seconds - d.statistics_cpu_seconds, 2
        ),
        "overhead_without_codec_pct": round(100 * rest / max(1e-9, rest + agents_cpu), 2),
    }


def ensure_bytecode(package: Path | None = None) -> int:
    """Write the missing bytecode (``__pycache__``) of ``package`` (default: agentmem's own
    directory); returns how many modules got a new ``.pyc`` (a stale one is rewritten too).

    An installed wheel has its bytecode; an editable checkout run with
    ``PYTHONDONTWRITEBYTECODE`` (or never imported before) does not, and then every agent
    process compiles the client from source at import: the compiler's scratch memory stays in
    its heap, +1.3 MiB of PSS a process (2.1 MiB for the client's imports instead of 0.8,
    measured with ``smaps_rollup``). Every mode's baseline imports what its agents import, so
    the figures compare processes as an installed agentmem runs them. A package directory that
    cannot be written is left as it is.
    """
    import compileall

    if package is None:
        package = Path(agent_mod.__file__).resolve().parent.parent
    before = sum(1 for _ in package.rglob("__pycache__/*.pyc"))
    compileall.compile_dir(package, quiet=2)  # 2: prints nothing, errors included
    return sum(1 for _ in package.rglob("__pycache__/*.pyc")) - before


def run(o: Options) -> dict[str, Any]:
    """Every round of ``o``; the results as one JSON-able dict (see :mod:`agentmem.swarm`)."""
    from agentmem.swarm import report

    started = time.perf_counter()
    if compiled := ensure_bytecode():
        _log(f"wrote the bytecode of {compiled} agentmem modules (each agent would compile them)")
    counts = o.counts()
    with tempfile.TemporaryDirectory(prefix="agentmem-swarm-", dir="/var/tmp") as tmp:
        run_dir = Path(tmp)
        _log(f"writing the {o.profile} profile for {max(counts)} agents")
        inputs = profiles.write(
            run_dir, o.profile, max(counts), corpus=o.corpus, scale=o.scale, turns=o.turns
        )
        rounds: dict[int, dict[str, Any]] = {}
        for n in counts:
            rounds[n] = {}
            for mode in o.modes:
                try:
                    rounds[n][mode] = run_round(mode, n, o, run_dir)
                except Exception as exc:  # a mode that does not fit: said in the table
                    log = (run_dir / f"{mode}-{n}.log").read_text(errors="replace")
                    _log(f"{mode} x{n} failed: {exc}\n{log[-3000:]}")
                    rounds[n][mode] = {"failed": f"{type(exc).__name__}: {exc}"}
    return report.results(o, inputs, rounds, time.perf_counter() - started)
