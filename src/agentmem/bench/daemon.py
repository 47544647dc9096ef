"""``agentmem bench daemon``: what serving the store over a socket costs, beside what it saves.

Six sections, each figure beside a baseline measured in the same run:

* ``echo``: a ~100-byte round trip to a process that only echoes, served by the daemon's kind
  of loop (selectors/epoll, ``recv``/``send``), by asyncio streams, by asyncio and uvloop
  protocols, and by the daemon's own framing and fd-passing code over epoll: the floor for any
  daemon operation, and the reason the daemon runs a plain epoll loop;
* ``ops``: p50/p99 of each operation through a real daemon, as a ratio to the echo, beside the
  same operation through the in-process transport (the service's own cost, no socket);
* ``throughput``: 1 KiB alloc + read from 1, 10 and 100 client processes at once, with the
  daemon's CPU time from ``/proc``, beside the in-process transport and the echo bound;
* ``connections``: 1000 registered agents connected at once, each served while all are open;
  errors, the daemon's fds and PSS holding them, beside the idle daemon;
* ``spawn``: connect + hello + first zero-copy read of a shared 1 MiB prompt, timed inside
  fresh interpreters, beside reading the same bytes from a file and copying them in memory;
* ``pss``: 20 processes reading a shared 16 MiB prompt through the daemon, beside 20 processes
  each holding a private copy; PSS from ``smaps_rollup``, the daemon included.

Latencies are per call (``time.perf_counter_ns``); each section keeps the median over
``repeats`` runs of its p50 and p99, and every run's p50. Round-trip latencies are taken with
client and server pinned, on one CPU and on two (:func:`~agentmem.bench.fleet.placements`
says why). Processes are synchronised with pipes, never sleeps: a child says "ready", the
parent measures, then lets it go on.

This module times ``ops`` and writes the results; the other sections live in ``echo``,
``load`` (throughput, connections), ``spawn`` and ``pss``, the processes they run in ``fleet``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import mmap
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agentmem.bench import echo, pss
from agentmem.bench import report as rp
from agentmem.bench import workloads as wl
from agentmem.bench.demote import bench_demote
from agentmem.bench.durability import bench_durability
from agentmem.bench.echo import bench_echo
from agentmem.bench.fleet import (
    pinned,
    placements,
    private_daemon,
)
from agentmem.bench.load import bench_connections, bench_throughput, kib
from agentmem.bench.observe import OPS as OBSERVE_OPS
from agentmem.bench.observe import bench_observe
from agentmem.bench.spawn import bench_spawn
from agentmem.bench.walk import bench_walk
from agentmem.client import Client, connect
from agentmem.config import Config
from agentmem.daemon.inprocess import InProcessTransport
from agentmem.daemon.service import INLINE_MAX, Service
from agentmem.ids import Handle

MIB = 1 << 20

SECTIONS = ("echo", "ops", "throughput", "connections", "spawn", "pss")
#: Operations timed in ``ops``; those with a target must stay within 2x the echo.
OPS = (
    "alloc_1kib",
    "read_1mib_hot",
    "read_4kib_inline",
    "share_content",
    "append_1kib",
    "release",
    "get_stats_agent",
)
TARGET_OPS = OPS[:5]
OP_RATIO_TARGET = 2.0


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much work each section does."""

    echo_calls: int
    op_calls: int
    warmup: int
    throughput_ops: int  # per concurrency level and run, split among the clients
    throughput_clients: tuple[int, ...]
    throughput_runs: int  # at most this many runs per level (fewer if --repeats is lower)
    connection_procs: int
    connections_per_proc: int
    spawns: int
    spawn_prompt_bytes: int
    pss_procs: int
    pss_prompt_bytes: int
    walk_agents: int
    walk_messages: int  # per agent
    demote_agents: int
    demote_history_bytes: int  # per agent


FULL = Sizes(
    5000,
    3000,
    300,
    20_000,
    (1, 10, 100),
    5,
    10,
    100,
    100,
    MIB,
    20,
    16 * MIB,
    30,
    10_000,
    4,
    8 * MIB,
)
QUICK = Sizes(300, 200, 30, 1_200, (1, 4, 12), 1, 4, 25, 6, MIB, 4, 4 * MIB, 4, 2_000, 2, MIB)


# --- ops -------------------------------------------------------------------------------------


def _op_calls(
    holder: Client, reader: Client, text: bytes, prompt: bytes, run: int
) -> dict[str, Callable[[int], object]]:
    """Each timed operation as ``call(i)``; ``run`` keeps content distinct across runs."""
    big = holder.alloc_smu("system_prompt", prompt)
    big_r = holder.share_content(big, reader.name)
    small = holder.alloc_smu("tool_result", kib(text, f"inline {run}", 0, 4096))
    small_r = holder.share_content(small, reader.name)
    one = holder.alloc_smu("tool_result", kib(text, f"shared {run}", 0))
    chat = holder.alloc_smu("conversation", [])
    allocated: list[Handle] = []

    def alloc(i: int) -> None:
        allocated.append(holder.alloc_smu("tool_result", kib(text, f"alloc {run}", i)))

    return {
        "alloc_1kib": alloc,
        "read_1mib_hot": lambda i: reader.read(big_r),
        "read_4kib_inline": lambda i: reader.read(small_r),
        "share_content": lambda i: holder.share_content(one, reader.name),
        "append_1kib": lambda i: holder.append(chat, kib(text, f"append {run}", i)),
        "release": lambda i: holder.release(allocated[i]),
        "get_stats_agent": lambda i: holder.get_stats(holder.name),
    }


def _op_counts(op: str, sizes: Sizes) -> tuple[int, int]:
    """(timed calls, warm-up calls) of one op in one run."""
    if op == "release":  # frees what alloc made in this run, and needs no warm-up of its own
        return sizes.op_calls, 0
    if op == "get_stats_agent":  # milliseconds a call (it walks the store): a few suffice
        return max(10, sizes.op_calls // 50), 2
    return sizes.op_calls, sizes.warmup


def _zero_copy(client: Client, handle: Handle, expect: bytes) -> bool:
    view = client.read(handle)
    return isinstance(view.obj, mmap.mmap) and view.readonly and view == expect


def _ops_through(
    make: Callable[[str], Client],
    text: bytes,
    prompt: bytes,
    sizes: Sizes,
    *,
    repeats: int,
    pid: int,
    before_run: Callable[[], None] = lambda: None,
) -> tuple[dict[str, list[dict[str, float]]], dict[str, float], dict[str, float], bool]:
    """Runs per op, and the CPU us per call of the server (``pid``; 0: none) and the client.
    ``before_run`` is called at the start of every run (to time a baseline alongside)."""
    runs: dict[str, list[dict[str, float]]] = {op: [] for op in OPS}
    server_cpu = dict.fromkeys(OPS, 0.0)
    client_cpu = dict.fromkeys(OPS, 0.0)
    holder, reader = make("bench-holder"), make("bench-reader")
    try:
        h = holder.alloc_smu("system_prompt", prompt)
        zero_copy = _zero_copy(reader, holder.share_content(h, reader.name), prompt)
        for run in range(repeats):
            before_run()
            calls = _op_calls(holder, reader, text, prompt, run)
            for op in OPS:
                n, warm = _op_counts(op, sizes)
                s0, c0 = pss.cpu_seconds_ns(pid) if pid else 0.0, time.process_time()
                runs[op].append(rp.latency_us(rp.timed(calls[op], n, warm)))
                s1, c1 = pss.cpu_seconds_ns(pid) if pid else 0.0, time.process_time()
                server_cpu[op] += (s1 - s0) * 1e6 / ((n + warm) * repeats)
                client_cpu[op] += (c1 - c0) * 1e6 / ((n + warm) * repeats)
    finally:
        holder.close()
        reader.close()
    return runs, server_cpu, client_cpu, zero_copy


def bench_ops(
    sizes: Sizes,
    repeats: int,
    text: bytes,
    prompt: bytes,
    places: dict[str, tuple[int, int]],
) -> dict[str, Any]:
    """Each operation's latency through a daemon, per placement, beside echoes pinned the same
    way and timed in the same runs; and through the in-process transport."""
    assert len(prompt) > INLINE_MAX
    out: dict[str, Any] = {
        "notes": "Per-call latency in us through a real daemon (blocking client, one request at "
        "a time), median over runs of each run's p50/p99, with client and daemon pinned to "
        "one CPU (same_cpu) or two (cross_cpu), a fresh daemon for each. Every run starts "
        "with the epoll and agentmem_framing echoes pinned the same way (as in `echo`, "
        "op_calls calls), so each op is compared with an echo timed under the same placement "
        "and load: ratio_to_echo is the median over runs of op p50 / that run's epoll echo "
        "p50; the target (<= 2) is judged on the worse placement (worst_ratio_to_echo). "
        "alloc_1kib: distinct 1 KiB content per call; read_1mib_hot: a 1 MiB prompt shared "
        "with the reader, read zero-copy (the segment was mapped before timing); "
        "read_4kib_inline: 4 KiB answered inline (a copy); share_content: a 1 KiB SMU to "
        "another connected agent; append_1kib: distinct 1 KiB messages to one conversation; "
        "release: the handles alloc made; get_stats_agent: the holder's own stats (fewer "
        "calls: each walks the domain's store, which grows over the runs). inprocess_p50_us: "
        "the same calls through the in-process transport (service and client, no socket, no "
        "framing; one run). daemon_cpu_us / client_cpu_us: CPU per call of each side (from "
        "the scheduler's run time of the daemon's threads and process_time over all runs, "
        "warm-up included).",
        "placements": places,
    }
    zero_copy = True
    for place, cpus in places.items():
        rp.progress("daemon", f"ops: {place}")
        out[place], ok = _ops_pinned(cpus, sizes, repeats, text, prompt)
        zero_copy = zero_copy and ok
    service = Service(Config())
    with pinned(places["same_cpu"][0], places["same_cpu"][0], []):
        inproc, _, _, _ = _ops_through(
            lambda name: Client(InProcessTransport(service), name=name),
            text,
            prompt,
            sizes,
            repeats=1,
            pid=0,
        )
    service.close_all()
    out["inprocess_p50_us"] = {op: rp.median_of_runs(inproc[op])["p50_us"] for op in OPS}
    out["worst_ratio_to_echo"] = {
        op: max(out[place][op]["ratio_to_echo"] for place in places) for op in OPS
    }
    out["read_1mib_zero_copy"] = zero_copy
    return out


def _ops_pinned(
    cpus: tuple[int, int], sizes: Sizes, repeats: int, text: bytes, prompt: bytes
) -> tuple[dict[str, Any], bool]:
    """The ops through a fresh daemon, client and daemon pinned to ``cpus``, each run after
    the epoll and framing echoes pinned the same way; and whether the hot read was zero-copy."""
    baseline = ("epoll", "agentmem_framing")
    echo_runs: dict[str, list[dict[str, float]]] = {k: [] for k in baseline}
    with contextlib.ExitStack() as stack:
        servers = {k: stack.enter_context(echo.echo_server(k)) for k in baseline}
        d = stack.enter_context(private_daemon())
        stack.enter_context(pinned(*cpus, [d.pid, *(pid for _, pid in servers.values())]))

        def echo_run() -> None:
            for kind, (call, _) in servers.items():
                fig = rp.latency_us(rp.timed(call, sizes.op_calls, sizes.warmup))
                echo_runs[kind].append(fig)

        runs, dcpu, ccpu, zero_copy = _ops_through(
            lambda name: connect(d.socket, name=name),
            text,
            prompt,
            sizes,
            repeats=repeats,
            pid=d.pid,
            before_run=echo_run,
        )
    raw, framed = (rp.median_of_runs(echo_runs[k]) for k in baseline)
    figs: dict[str, Any] = {
        "echo_p50_us": raw["p50_us"],
        "echo_runs_p50_us": raw["runs_p50_us"],
        "framing_echo_p50_us": framed["p50_us"],
    }
    for op in OPS:
        figs[op] = fig = rp.median_of_runs(runs[op])
        fig["ratio_to_echo"] = _median_ratio(runs[op], echo_runs["epoll"])
        fig["ratio_to_framing_echo"] = _median_ratio(runs[op], echo_runs["agentmem_framing"])
        fig["daemon_cpu_us"] = round(dcpu[op], 1)
        fig["client_cpu_us"] = round(ccpu[op], 1)
    return figs, zero_copy


def _median_ratio(runs: Sequence[dict[str, float]], base: Sequence[dict[str, float]]) -> float:
    """Median over runs of p50 / the same run's baseline p50."""
    ratios = [r["p50_us"] / b["p50_us"] for r, b in zip(runs, base, strict=True)]
    return round(statistics.median(ratios), 2)


ECHO_COLUMNS: tuple[str, ...] = ("p50_us", "p99_us", "mean_us", "server_cpu_us", "client_cpu_us")
ECHO_COLUMNS += ("calls", "runs_p50_us")
#: The echo figures ``ops`` keeps per placement.
ECHO_KEYS = ("echo_p50_us", "framing_echo_p50_us", "echo_runs_p50_us")


# --- results ---------------------------------------------------------------------------------


def targets(sizes: Sizes) -> list[rp.Target]:
    """The goals this benchmark checks (the connection count follows the sizes)."""
    out = [
        rp.Target(
            f"ops.worst_ratio_to_echo.{op}",
            "<=",
            OP_RATIO_TARGET,
            f"{op}: p50 / echo p50, worse placement",
        )
        for op in TARGET_OPS
    ]
    conns = sizes.connection_procs * sizes.connections_per_proc
    return [
        *out,
        rp.Target("spawn.total.p50_us", "<=", 1000.0, "agent spawn p50, us"),
        rp.Target("pss.agentmem.vs_one_copy", "<=", 1.25, "shared prompt PSS / one copy"),
        rp.Target("connections.connected", ">=", conns, "concurrent connections"),
        rp.Target("connections.errors", "<=", 0, "errors with all connections open"),
        *(
            rp.Target(f"observe.{op}.{k}", "<=", 1.05, f"{op}: statistics on / off, {what}")
            for op in OBSERVE_OPS
            for k, what in (("p50_ratio", "p50"), ("cpu_ratio", "daemon CPU"))
        ),
    ]


def _place(place: str) -> str:
    return {"same_cpu": "one CPU", "cross_cpu": "two CPUs"}.get(place, place)


def _clients(n: int) -> str:
    return f"{n} client process" + ("es" if n > 1 else "")


def _mib(n: float) -> str:
    return f"{n / MIB:,.1f} MiB"


def _summary(r: dict[str, Any]) -> list[list[object]]:
    met = {t["key"]: t for t in r["targets"]}

    def row(measure: str, value: str, baseline: str, *keys: str) -> list[object]:
        ts = [met[k] for k in keys]
        if not ts:
            return [measure, value, baseline, "-", "-"]
        goal = f"{ts[0]['op']} {ts[0]['target']:g}"
        return [measure, value, baseline, goal, "yes" if all(t["met"] for t in ts) else "**no**"]

    e, o, t, c, s, p = (r[k] for k in SECTIONS)
    places = list(o["placements"])
    rows = []
    for place in places:
        ep, fr = e["epoll"][place], e["agentmem_framing"][place]
        others = "; ".join(
            f"{k.replace('_', ' ')} {e[k][place]['p50_us'] if e[k] else 'n/a'}"
            for k in ("asyncio_streams", "asyncio_protocol", "uvloop_protocol")
        )
        rows.append(
            row(
                f"echo round trip, {e['bytes']} B, {_place(place)}: p50 / p99 us",
                f"agentmem framing {fr['p50_us']} / {fr['p99_us']} "
                f"({fr['p50_us'] / ep['p50_us']:.2f}x epoll)",
                f"epoll {ep['p50_us']} / {ep['p99_us']}; {others}",
            )
        )
    ep, fr = e["epoll"]["same_cpu"], e["agentmem_framing"]["same_cpu"]
    rows.append(
        row(
            "echo CPU per round trip, server + client, one CPU, us",
            f"agentmem framing {fr['server_cpu_us']} + {fr['client_cpu_us']}",
            f"epoll {ep['server_cpu_us']} + {ep['client_cpu_us']}",
        )
    )
    for op in OPS:
        figs = [o[place][op] for place in places]
        rows.append(
            row(
                f"{op}: p50 us (x echo p50), " + " / ".join(_place(x) for x in places),
                " / ".join(f"{f['p50_us']} ({f['ratio_to_echo']}x)" for f in figs),
                "echo "
                + " / ".join(str(o[x]["echo_p50_us"]) for x in places)
                + f"; in-process {o['inprocess_p50_us'][op]}; CPU daemon + client "
                f"{figs[0]['daemon_cpu_us']} + {figs[0]['client_cpu_us']} (one CPU)",
                *([f"ops.worst_ratio_to_echo.{op}"] if op in TARGET_OPS else []),
            )
        )
    for level in t["levels"]:
        rows.append(
            row(
                f"throughput, {_clients(level['clients'])}, 1 KiB alloc+read, ops/s",
                f"{level['ops_s']:,.0f} (daemon CPU {level['daemon_cpu_us_per_op']} us/op)",
                f"in-process {t['inprocess_ops_s']:,}; echo bound {t['echo_bound_ops_s']:,}",
            )
        )
    rows += [
        row(
            f"{c['connections']:,} concurrent connections: connected, errors",
            f"{c['connected']:,}, {c['errors']}",
            "-",
            "connections.connected",
            "connections.errors",
        ),
        row(
            "daemon holding them: fds, PSS",
            f"{c['daemon_fds_held']:,} fds, {_mib(c['daemon_pss_held_bytes'])}",
            f"idle: {c['daemon_fds_idle']} fds, {_mib(c['daemon_pss_idle_bytes'])}",
        ),
        row(
            f"agent spawn: connect + hello + first zero-copy read of {s['prompt_bytes'] // MIB}"
            " MiB, p50 / p99 us",
            f"{s['total']['p50_us']} / {s['total']['p99_us']} (hello opening the published "
            f"prompt {s['hello']['p50_us']}, read {s['read']['p50_us']})",
            f"file open+read {s['file_read']['p50_us']}, file mmap {s['file_mmap']['p50_us']}, "
            f"private copy {s['memory_copy']['p50_us']}; import agentmem {s['import_ms']} ms",
            "spawn.total.p50_us",
        ),
        row(
            f"{p['agentmem']['processes']} readers of a {_mib(p['prompt_bytes'])} prompt: "
            "prompt PSS (x one copy)",
            f"{_mib(p['agentmem']['total_pss_bytes'])} ({p['agentmem']['vs_one_copy']}x)",
            f"private copies: {_mib(p['private']['total_pss_bytes'])} "
            f"({p['private']['vs_one_copy']}x)",
            "pss.agentmem.vs_one_copy",
        ),
    ]
    for op in OBSERVE_OPS:
        o = r["observe"][op]
        rows.append(
            row(
                f"{op} with statistics on (stats file, metrics scraped, top): p50 us / daemon "
                "CPU us (x off)",
                f"{o['on_p50_us']} ({o['p50_ratio']}x) / {o['on_daemon_cpu_us']} "
                f"({o['cpu_ratio']}x)",
                f"statistics off: {o['off_p50_us']} / {o['off_daemon_cpu_us']}",
                f"observe.{op}.p50_ratio",
                f"observe.{op}.cpu_ratio",
            )
        )
    if "walk" in r:
        w = r["walk"]
        rows.append(
            row(
                f"fresh whole-domain get_stats of {w['messages']:,} messages: the caller's wait "
                "ms; another client's round trips meanwhile: p50 / max us",
                f"{w['walk_ms']}; {w['during_p50_us']} / {w['during_max_us']}",
                f"that client without a walk: {w['baseline_p50_us']} / {w['baseline_max_us']}",
            )
        )
    if "demote" in r:
        dm = r["demote"]
        rows.append(
            row(
                f"{dm['agents']} idle histories of {_mib(dm['history_bytes_each'])} going down "
                "together: another client's round trips meanwhile, p50 / p99 / max us",
                f"{dm['during_p50_us']} / {dm['during_p99_us']} / {dm['during_max_us']}",
                f"that client before: {dm['baseline_p50_us']} / max {dm['baseline_max_us']}",
            )
        )
        rows.append(
            row(
                "the same histories read back (promoted) one after the other: another "
                "client's round trips meanwhile, p50 / p99 / max us",
                f"{dm['read_back_p50_us']} / {dm['read_back_p99_us']} / "
                f"{dm['read_back_max_us']} ({dm['read_back_ms']} ms in all)",
                f"that client before: {dm['baseline_p50_us']} / max {dm['baseline_max_us']}",
            )
        )
    return rows


def render_markdown(r: dict[str, Any]) -> str:
    """The results as markdown: a summary with baselines and targets, then every section."""
    meta = r["meta"]
    out = [
        "# agentmem bench daemon",
        "",
        f"Python {meta['python']} on {meta['machine']}, {meta['cpus']} CPUs; "
        f"{'quick sizes' if meta['quick'] else 'full sizes'}; latencies: median over "
        f"{meta['repeats']} runs of each run's p50/p99; prompt text: {meta['prompt_source']}; "
        f"{meta['elapsed_s']} s in all.",
        "",
    ]
    out += rp.table(["measure", "agentmem", "baseline (same run)", "target", "met"], _summary(r))
    e, o = r["echo"], r["ops"]
    places = list(o["placements"])
    out += ["## echo", "", e["notes"], ""]
    out += rp.table(
        ["server", "placement", *ECHO_COLUMNS],
        [
            [k, _place(x), *(rp.compact(e[k][x][c]) for c in ECHO_COLUMNS)]
            for k in echo.KINDS
            if e[k]
            for x in places
        ]
        + [[k, "n/a"] for k in echo.KINDS if not e[k]],
        right=len(ECHO_COLUMNS) + 1,
    )
    out += ["## ops", "", o["notes"], ""]
    cols: tuple[str, ...] = ("p50_us", "p99_us", "mean_us", "ratio_to_echo")
    cols += ("ratio_to_framing_echo", "daemon_cpu_us", "client_cpu_us", "calls")
    out += rp.table(
        ["op", "placement", *cols, "inprocess_p50_us"],
        [
            [op, _place(x), *(o[x][op][k] for k in cols), o["inprocess_p50_us"][op]]
            for x in places
            for op in OPS
        ],
        right=len(cols) + 2,
    )
    out += rp.table(
        ["placement", *ECHO_KEYS],
        [[_place(x), *(rp.compact(o[x][k]) for k in ECHO_KEYS)] for x in places],
        right=3,
    )
    t = r["throughput"]
    out += ["## throughput", "", t["notes"], ""]
    cols = ("clients", "ops_s", "daemon_cpu_us_per_op", "clients_cpu_us_per_op", "slowest_s")
    cols += ("errors", "runs_ops_s")
    out += rp.table(
        list(cols), [[rp.compact(lv[k]) for k in cols] for lv in t["levels"]], len(cols)
    )
    for name in ("connections", "spawn", "pss", "durability", "walk", "demote"):
        if name not in r:
            continue
        out += [f"## {name}", "", r[name]["notes"], ""]
        out += rp.table(["field", "value"], rp.flat_rows(r[name]), right=2)
    return "\n".join(out)


def run(
    json_path: Path | None = None,
    md_path: Path | None = None,
    repeats: int = 5,
    quick: bool = False,
    corpus: Path | None = None,
) -> dict[str, Any]:
    """Run every section; print the markdown; write JSON (and markdown) if asked.

    ``quick`` shrinks every section (for tests; the output records it). The prompt text comes
    from ``corpus`` (system prompts, distinct ones concatenated) or is generated. Returns the
    results written as JSON.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    sizes = QUICK if quick else FULL
    places = placements()
    started = time.perf_counter()
    rp.progress("daemon", "preparing prompt text")
    source = (
        f"corpus {corpus}/system_prompts/asgeirtj, distinct prompts concatenated, topped up "
        "with generated markdown"
        if corpus is not None
        else "generated English-like markdown"
    )
    prompt = wl.prompt_text(corpus, sizes.pss_prompt_bytes)
    small_prompt = prompt[: sizes.spawn_prompt_bytes]
    results: dict[str, Any] = {
        "meta": {
            "benchmark": "agentmem bench daemon",
            "quick": quick,
            "repeats": repeats,
            "sizes": dataclasses.asdict(sizes),
            "prompt_source": source,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "placements": places,
        }
    }
    sections: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("echo", lambda: bench_echo(sizes.echo_calls, sizes.warmup, repeats, places)),
        ("ops", lambda: bench_ops(sizes, repeats, prompt, small_prompt, places)),
        (
            "throughput",
            lambda: bench_throughput(
                sizes.throughput_clients,
                sizes.throughput_ops,
                min(repeats, sizes.throughput_runs),
                prompt,
                results["ops"]["same_cpu"]["echo_p50_us"],
            ),
        ),
        (
            "connections",
            lambda: bench_connections(sizes.connection_procs, sizes.connections_per_proc, prompt),
        ),
        ("spawn", lambda: bench_spawn(sizes.spawns, small_prompt)),
        ("pss", lambda: pss.bench_pss(sizes.pss_procs, prompt, source)),
        # Three times the runs of the other sections, each a third as long: the on/off ratio is a
        # median of paired runs, and three times the pairs ride out a noisy run better.
        ("observe", lambda: bench_observe(sizes.op_calls, sizes.warmup, 3 * repeats, prompt)),
        ("durability", lambda: bench_durability(sizes.op_calls, sizes.warmup, repeats)),
        ("walk", lambda: bench_walk(sizes.walk_agents, sizes.walk_messages, repeats)),
        (
            "demote",
            lambda: bench_demote(sizes.demote_agents, sizes.demote_history_bytes, min(repeats, 3)),
        ),
    ]
    for name, fn in sections:
        rp.progress("daemon", name)
        t = time.perf_counter()
        results[name] = fn()
        results[name]["elapsed_s"] = round(time.perf_counter() - t, 2)
    results["targets"] = rp.evaluate(results, targets(sizes))
    results["meta"]["elapsed_s"] = round(time.perf_counter() - started, 1)
    md = render_markdown(results)
    print(md)
    rp.write(results, md, json_path, md_path)
    return results
