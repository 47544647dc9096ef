"""The swarm's results: one JSON-able dict, its markdown table and its plot."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentmem.bench import report as rp
from agentmem.swarm.agent import MODES

if TYPE_CHECKING:
    from agentmem.swarm.profiles import Inputs
    from agentmem.swarm.run import Options

MIB = 1 << 20
#: Keys every measured mode has in the JSON (the issue's list first).
KEYS = (
    "total_pss_bytes",
    "agent_data_bytes",
    "peak_pss_bytes",
    "cpu_overhead_pct",
    "spawn_ms_p50",
    "turn_ms_p50",
)
LABELS = {
    "plain": "plain: Python objects",
    "ksm": "ksm: plain + KSM merging",
    "agentmem": "agentmem: shared SMUs via the daemon",
}

NOTES = (
    "total = PSS (/proc/PID/smaps_rollup) summed over the agent processes and the daemon, plus "
    "daemon memfd pages no process maps; the mock LLM (a stand-in for a remote service) and "
    "this orchestrator are left out. Steady state: all agents idle after their turns; ready: "
    "all loaded, before the first turn; peak: the largest of those and of the samples taken "
    "every interval during the turns (a transient shorter than the interval can be missed: the "
    "process peak RSS row is each process's own high-water mark).",
    "agent data = total - the PSS of as many idle interpreters as there are agent processes, "
    "importing what the mode's agents import, measured in the same run.",
    "CPU: utime + stime from /proc of the agent processes and of the daemon (agentmem) or ksmd "
    "(ksm), from before the agents start (imports and loading included) to the end of their "
    "turns, and for the daemon also the settle after them (its demotions of the idle agents' "
    "conversations); overhead = daemon (or ksmd) / (that + agents).",
    "spawn: connect + register (opening the published prompt and tools, whose mappings come "
    "with the reply) + first read of the system prompt, timed inside the agent (process start "
    "excluded); plain/ksm: reading the prompt file (once per process).",
    "turn: from after the agent's 'active' report (agentmem) and its gate token through "
    "building and sending the body, the mock LLM's reply (instant) and appending it; the "
    "'idle' report that follows it is not in the turn; an agent waiting for a token has said it "
    "is active (it waits for a model slot). The daemon's idle-agent rule demotes a "
    "conversation once its agent has been idle longer than it ever waits between turns (8x "
    "the mean idle + 1 s), so the steady "
    "state is read after that and after the tiers stopped moving. At most `concurrency` turns "
    "are in flight at once over all agents in every mode (a FIFO of tokens; the wait for one "
    "is not in the turn). When the agents' turns need more CPU than the machine has, "
    "turns queue for a core and their latency measures the queue: CPU per turn is the "
    "load-independent figure (the turns phase's CPU of agents and daemon or ksmd, divided by "
    "the turns played; the daemon's demotions included).",
)


def _mib(v: float) -> str:
    return f"{v / MIB:,.1f}"


def results(
    o: Options, inputs: Inputs, rounds: dict[int, dict[str, dict[str, Any]]], elapsed: float
) -> dict[str, Any]:
    """The run as one dict: ``meta``, ``profile``, ``modes`` (the ``--agents`` round),
    ``vs_plain``, ``targets``, and ``sweep`` (total PSS per agent count and mode)."""
    main = rounds[o.agents]
    modes = {m: derive(main[m]) for m in o.modes}
    vs = compare(modes)
    out: dict[str, Any] = {
        "meta": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "profile": o.profile,
            "agents": o.agents,
            "processes": o.processes_for(o.agents),
            "turns": o.turns,
            "think_s": o.think,
            "scale": inputs.scale,
            "source": inputs.source,
            "modes": list(o.modes),
            "demote_when_idle": o.demote,
            "idle_agent_warm_s": o.idle_warm_seconds() if o.demote else 0,
            "concurrency": o.concurrency,
            "warm_budget_bytes": o.warm_budget,
            "sample_interval_s": o.interval,
            "elapsed_s": round(elapsed, 1),
            "notes": list(NOTES),
        },
        "profile": inputs.summary(),
        "modes": modes,
        "vs_plain": vs,
    }
    out["targets"] = rp.evaluate(out, targets(o))
    if len(rounds) > 1:
        out["sweep"] = {
            mode: [
                {
                    "agents": n,
                    **{k: rounds[n][mode].get(k) for k in ("total_pss_bytes", "agent_data_bytes")},
                    **(
                        {"failed": rounds[n][mode]["failed"]} if "failed" in rounds[n][mode] else {}
                    ),
                }
                for n in sorted(rounds)
            ]
            for mode in o.modes
        }
        out["rounds"] = {str(n): r for n, r in sorted(rounds.items()) if n != o.agents}
    return out


def compare(modes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each measured mode's figures as ratios to plain's (and its total to KSM's)."""
    vs: dict[str, dict[str, Any]] = {}
    plain = modes.get("plain", {})
    ksm = modes.get("ksm", {})
    for mode, r in modes.items():
        if "total_pss_bytes" not in r:
            continue
        row: dict[str, Any] = {}
        if "total_pss_bytes" in plain:
            row["total_vs_plain"] = round(r["total_pss_bytes"] / plain["total_pss_bytes"], 4)
            row["agent_data_vs_plain"] = round(
                r["agent_data_bytes"] / max(1, plain["agent_data_bytes"]), 4
            )
            if plain["turn_ms_p50"]:
                row["turn_overhead_pct"] = round(
                    100 * (r["turn_ms_p50"] / plain["turn_ms_p50"] - 1), 1
                )
            if plain.get("cpu_ms_per_turn") and "cpu_ms_per_turn" in r:
                row["turn_cpu_overhead_pct"] = round(
                    100 * (r["cpu_ms_per_turn"] / plain["cpu_ms_per_turn"] - 1), 1
                )
        if "total_pss_bytes" in ksm:
            row["total_vs_ksm"] = round(r["total_pss_bytes"] / ksm["total_pss_bytes"], 4)
        vs[mode] = row
    return vs


def derive(r: dict[str, Any]) -> dict[str, Any]:
    """Add ``cpu_ms_per_turn`` to a measured round (in place; returned): the CPU the agents and
    the daemon (or ksmd) spent during the turns phase per turn played. Unlike turn latency, it
    does not grow when the machine is saturated and turns queue for a core."""
    if r.get("turns_played"):
        cpu = r["cpu_turns_agents_s"] + r["cpu_turns_daemon_s"]
        r["cpu_ms_per_turn"] = round(1000 * cpu / r["turns_played"], 2)
    return r


def targets(o: Options) -> list[rp.Target]:
    """The issue's goals that apply to this run (memory ratios: seed profile only)."""
    out: list[rp.Target] = []
    if o.profile == "seed":
        out.append(rp.Target("vs_plain.agentmem.total_vs_plain", "<=", 0.1, "total PSS vs plain"))
        out.append(rp.Target("vs_plain.agentmem.total_vs_ksm", "<=", 1 / 3, "total PSS vs KSM"))
    out += [
        rp.Target("modes.agentmem.cpu_overhead_pct", "<=", 5.0, "daemon share of all CPU, %"),
        rp.Target("modes.agentmem.spawn_ms_p50", "<=", 1.0, "agent spawn p50, ms"),
        rp.Target("vs_plain.agentmem.turn_overhead_pct", "<=", 10.0, "turn p50 overhead, %"),
        rp.Target(
            "vs_plain.agentmem.turn_cpu_overhead_pct",
            "<=",
            10.0,
            "CPU per turn overhead (load-independent), %",
        ),
    ]
    return out


def _cell(r: dict[str, Any], fmt: Any) -> str:
    if "skipped" in r:
        return "skipped"
    if "failed" in r:
        return "did not run"
    try:
        return str(fmt(r))
    except (KeyError, TypeError, ZeroDivisionError):
        return "-"


def _vs(r: dict[str, Any], base: dict[str, Any], key: str) -> str:
    if base is r or key not in base or not base[key]:
        return ""
    return f" (x{r[key] / base[key]:.3f})"


def render_markdown(res: dict[str, Any]) -> str:
    """The table printed by ``agentmem swarm`` and written by ``--md``."""
    meta, prof = res["meta"], res["profile"]
    modes = {m: derive(dict(r)) for m, r in res["modes"].items()}
    names = [m for m in MODES if m in modes]
    plain = modes.get("plain", {})
    lines = [
        f"# agentmem swarm: {meta['agents']} agents, {meta['profile']} profile",
        "",
        f"{meta['agents']} agents in {meta['processes']} processes"
        f"{' (asyncio tasks)' if meta['processes'] < meta['agents'] else ''}, "
        f"{meta['turns']} turns each "
        f"(mean idle {meta['think_s']} s, per-agent rates 0.5-2x; at most "
        f"{meta.get('concurrency') or 'unlimited'} turns in flight); system prompt "
        f"{prof['prompt_bytes']:,} B + environment block ~{prof['env_bytes_mean']:.0f} B, "
        f"tools {prof['tools_bytes']:,} B ({prof['tools_count']} definitions), history "
        f"{prof['history_bytes_mean']:,.0f} B per agent on average; data: {prof['source']}; "
        f"Python {meta['python']}, {meta['cpus']} CPUs; {meta['elapsed_s']} s in all.",
        "",
    ]
    if meta.get("warm_budget_bytes"):
        lines += [
            f"agentmem's daemon keeps at most {_mib(meta['warm_budget_bytes'])} MiB of warm "
            "(compressed) frames in RAM: past that, idle agents' conversations go to its cold "
            "tier, pack files on disk (their page cache is reclaimable and in no process's "
            "PSS; the bytes on disk are in the last table).",
            "",
        ]
    rows: list[tuple[str, Any]] = [
        (
            "total PSS, steady (all idle after their turns), MiB",
            lambda r: _mib(r["total_pss_bytes"]) + _vs(r, plain, "total_pss_bytes"),
        ),
        (
            "agent data (total - idle interpreters), MiB",
            lambda r: _mib(r["agent_data_bytes"]) + _vs(r, plain, "agent_data_bytes"),
        ),
        ("peak PSS (sampled from start to end), MiB", lambda r: _mib(r["peak_pss_bytes"])),
        ("ready PSS (loaded, before the first turn), MiB", lambda r: _mib(r["ready_pss_bytes"])),
        ("idle interpreters, same imports, MiB", lambda r: _mib(r["idle_interpreters_pss_bytes"])),
        (
            "per-agent PSS p50 / max, MiB",
            lambda r: (
                f"{_mib(r['per_agent_pss_bytes_p50'])} / {_mib(r['per_agent_pss_bytes_max'])}"
            ),
        ),
        (
            "daemon PSS / its unmapped memfd pages, MiB",
            lambda r: f"{_mib(r['daemon_pss_bytes'])} / {_mib(r['unmapped_memfd_bytes'])}",
        ),
        ("process peak RSS p50 (VmHWM), MiB", lambda r: _mib(r["process_peak_rss_bytes_p50"])),
        ("request body p50, MiB", lambda r: f"{r['body_bytes_p50'] / MIB:,.2f}"),
        (
            "CPU s: agents / daemon (agentmem) or ksmd (ksm)",
            lambda r: f"{r['cpu_agents_s']:,.1f} / {r['cpu_daemon_s']:,.1f}",
        ),
        ("CPU overhead: daemon or ksmd share, %", lambda r: f"{r['cpu_overhead_pct']:.1f}"),
        (
            "spawn p50 / p99, ms",
            lambda r: f"{r['spawn_ms_p50']:.3f} / {r['spawn_ms_p99']:.3f}",
        ),
        (
            "turn p50 / p99, ms",
            lambda r: (
                f"{r['turn_ms_p50']:.2f} / {r['turn_ms_p99']:.2f}" + _vs(r, plain, "turn_ms_p50")
            ),
        ),
        (
            "CPU per turn (turns phase: agents + daemon or ksmd), ms",
            lambda r: f"{r['cpu_ms_per_turn']:,.1f}" + _vs(r, plain, "cpu_ms_per_turn"),
        ),
        ("turns played / errors", lambda r: f"{r['turns_played']:,} / {r['error_count']}"),
        ("ready after / turns took, s", lambda r: f"{r['ready_s']:.1f} / {r['turns_s']:.1f}"),
    ]
    lines += rp.table(
        ["measure", *names],
        [[label, *(_cell(modes[m], f) for m in names)] for label, f in rows],
        right=len(names),
    )
    for m in names:
        reason = modes[m].get("skipped") or modes[m].get("failed")
        if reason:
            lines.append(
                f"- **{m}** {'skipped' if 'skipped' in modes[m] else 'did not run'}: {reason}"
            )
    if "ksm" in modes and "ksm" in modes["ksm"]:
        k = modes["ksm"]
        lines.append(
            f"- ksm: pages_shared {k['ksm']['pages_shared']:,}, pages_sharing "
            f"{k['ksm']['pages_sharing']:,} at the end; waited {k.get('ksm_merge_wait_s')} s for "
            f"two full scans before measuring; settings restored after: {k.get('ksm_restored')}"
        )
    lines.append("")
    if res["targets"]:
        lines += ["## Targets", ""]
        lines += rp.table(
            ["target", "value", "goal", "met"],
            [
                [
                    t["what"],
                    "-" if t["value"] is None else round(t["value"], 4),
                    f"{t['op']} {round(t['target'], 4)}",
                    "yes" if t["met"] else "**no**",
                ]
                for t in res["targets"]
            ],
        )
    store = modes.get("agentmem", {}).get("store")
    if store:
        lines += ["## agentmem: what the daemon holds", ""]
        lines += rp.table(["field", "value"], [[k, v] for k, v in store.items()])
    cpu = modes.get("agentmem", {}).get("daemon_cpu")
    if cpu:
        lines += ["## agentmem: where the daemon's CPU went (its own counts, since it started)", ""]
        lines += rp.table(
            ["part", "CPU s"],
            [
                ["maintenance ticks (demotions)", cpu["maintenance_s"]],
                ["statistics (once a second)", cpu["statistics_s"]],
                ["serving requests", cpu["requests_s"]],
                ["all", cpu["total_s"]],
                ["of all: compressing frames", cpu["compress_s"]],
                ["of all: decoding frames (verification, reads)", cpu["decode_s"]],
                ["of all: journal fdatasync", cpu["journal_sync_s"]],
                ["of all: garbage collection", cpu.get("gc_s", "-")],
            ],
        )
        lines.append(
            f"Daemon share of the run's CPU without the codec's part (VISION.md's 5 % assumes a "
            f"hardware compressor doing it): {cpu['overhead_without_codec_pct']:.1f} %."
        )
        lines.append("")
    if "sweep" in res:
        counts = [row["agents"] for row in next(iter(res["sweep"].values()))]
        lines += ["## Total PSS by agent count, MiB", ""]
        lines += rp.table(
            ["agents", *res["sweep"]],
            [
                [n, *(_sweep_cell(res["sweep"][m][i]) for m in res["sweep"])]
                for i, n in enumerate(counts)
            ],
            right=len(res["sweep"]),
        )
    lines += ["## How it was measured", ""]
    lines += [f"- {n}" for n in [*meta["notes"], *prof["notes"]]]
    return "\n".join(lines) + "\n"


def _sweep_cell(row: dict[str, Any]) -> str:
    if row.get("total_pss_bytes") is None:
        return "did not run" if "failed" in row else "skipped"
    return _mib(row["total_pss_bytes"])


def plot(res: dict[str, Any], path: Path) -> None:
    """Total PSS against agent count, one line per mode, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta = res["meta"]
    sweep = res.get("sweep") or {
        m: [{"agents": meta["agents"], "total_pss_bytes": r.get("total_pss_bytes")}]
        for m, r in res["modes"].items()
    }
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    styles = {"plain": ("tab:red", "o"), "ksm": ("tab:orange", "s"), "agentmem": ("tab:blue", "^")}
    for mode, points in sweep.items():
        xs = [p["agents"] for p in points if p.get("total_pss_bytes") is not None]
        ys = [p["total_pss_bytes"] / 2**30 for p in points if p.get("total_pss_bytes") is not None]
        if not xs:
            continue
        color, marker = styles.get(mode, ("black", "x"))
        ax.plot(xs, ys, marker=marker, color=color, linewidth=2, label=LABELS.get(mode, mode))
        ax.annotate(
            f"{ys[-1]:.2f} GiB",
            (xs[-1], ys[-1]),
            textcoords="offset points",
            xytext=(6, 0),
            va="center",
            fontsize=9,
            color=color,
        )
    scale = f", scale {meta['scale']:g}" if meta["profile"] == "seed" else ""
    ax.set_title(
        f"Total memory of a swarm of agents ({meta['profile']} profile{scale})\n"
        "PSS of all agent processes + daemon, all agents idle after their turns",
        fontsize=11,
    )
    ax.set_xlabel("agents (one process each)" if meta["processes"] == meta["agents"] else "agents")
    ax.set_ylabel("total PSS (GiB)")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0, right=max(p["agents"] for ps in sweep.values() for p in ps) * 1.15)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="center right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
