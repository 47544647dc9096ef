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
``repeats`` runs of its p50 and p99, and every run's p50. Processes are synchronised with
pipes, never sleeps: a child says "ready", the parent measures, then lets it go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import mmap
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agentmem.bench import echo, pss
from agentmem.bench import report as rp
from agentmem.bench import workloads as wl
from agentmem.bench.echo import bench_echo
from agentmem.bench.fleet import (
    CHILD_TIMEOUT,
    expect_line,
    fork,
    private_daemon,
    wait_bytes,
    wait_lines,
)
from agentmem.client import Client, connect
from agentmem.config import Config
from agentmem.daemon.inprocess import InProcessTransport
from agentmem.daemon.service import INLINE_MAX, Service
from agentmem.errors import AgentmemError
from agentmem.ids import Handle
from agentmem.stats import StoreStats
from agentmem.testing import DaemonProcess

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


FULL = Sizes(5000, 3000, 300, 20_000, (1, 10, 100), 5, 10, 100, 100, MIB, 20, 16 * MIB)
QUICK = Sizes(300, 200, 30, 1_200, (1, 4, 12), 1, 4, 25, 6, MIB, 4, 4 * MIB)


def _progress(msg: str) -> None:
    print(f"[bench daemon] {msg}", file=sys.stderr, flush=True)


def _kib(text: bytes, tag: str, i: int, size: int = 1024) -> bytes:
    """``size`` bytes of ``text``, distinct for every (tag, i): a header, then a window."""
    head = f"{tag} {i:08d} ".encode()
    start = (i * 7919) % (len(text) - size)
    return head + text[start : start + size - len(head)]


# --- ops -------------------------------------------------------------------------------------


def _op_calls(
    holder: Client, reader: Client, text: bytes, prompt: bytes, run: int
) -> dict[str, Callable[[int], object]]:
    """Each timed operation as ``call(i)``; ``run`` keeps content distinct across runs."""
    big = holder.alloc_smu("system_prompt", prompt)
    big_r = holder.share_content(big, reader.name)
    small = holder.alloc_smu("tool_result", _kib(text, f"inline {run}", 0, 4096))
    small_r = holder.share_content(small, reader.name)
    one = holder.alloc_smu("tool_result", _kib(text, f"shared {run}", 0))
    chat = holder.alloc_smu("conversation", [])
    allocated: list[Handle] = []

    def alloc(i: int) -> None:
        allocated.append(holder.alloc_smu("tool_result", _kib(text, f"alloc {run}", i)))

    return {
        "alloc_1kib": alloc,
        "read_1mib_hot": lambda i: reader.read(big_r),
        "read_4kib_inline": lambda i: reader.read(small_r),
        "share_content": lambda i: holder.share_content(one, reader.name),
        "append_1kib": lambda i: holder.append(chat, _kib(text, f"append {run}", i)),
        "release": lambda i: holder.release(allocated[i]),
        "get_stats_agent": lambda i: holder.get_stats(holder.name),
    }


def _op_counts(op: str, sizes: Sizes) -> tuple[int, int]:
    """(timed calls, warm-up calls) of one op in one run."""
    if op == "release":  # frees what alloc made in this run, and needs no warm-up of its own
        return sizes.op_calls, 0
    if op == "get_stats_agent":  # milliseconds a call (it walks the store): a few suffice
        return max(10, sizes.op_calls // 20), 2
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
                s0, c0 = pss.cpu_seconds(pid) if pid else 0.0, time.process_time()
                runs[op].append(rp.latency_us(rp.timed(calls[op], n, warm)))
                s1, c1 = pss.cpu_seconds(pid) if pid else 0.0, time.process_time()
                server_cpu[op] += (s1 - s0) * 1e6 / ((n + warm) * repeats)
                client_cpu[op] += (c1 - c0) * 1e6 / ((n + warm) * repeats)
    finally:
        holder.close()
        reader.close()
    return runs, server_cpu, client_cpu, zero_copy


def bench_ops(
    sizes: Sizes, repeats: int, text: bytes, prompt: bytes, echoes: dict[str, Any]
) -> dict[str, Any]:
    """Each operation's latency through a daemon and in-process, against the raw echo."""
    assert len(prompt) > INLINE_MAX
    baseline = ("epoll", "agentmem_framing")
    echo_runs: dict[str, list[dict[str, float]]] = {k: [] for k in baseline}
    with contextlib.ExitStack() as stack:
        servers = {k: stack.enter_context(echo.echo_server(k)) for k in baseline}

        def echo_run() -> None:
            for kind, (call, _) in servers.items():
                echo_runs[kind].append(rp.latency_us(rp.timed(call, sizes.op_calls, sizes.warmup)))

        d = stack.enter_context(private_daemon())
        runs, dcpu, ccpu, zero_copy = _ops_through(
            lambda name: connect(d.socket, name=name),
            text,
            prompt,
            sizes,
            repeats=repeats,
            pid=d.pid,
            before_run=echo_run,
        )
    service = Service(Config())
    inproc, _, _, _ = _ops_through(
        lambda name: Client(InProcessTransport(service), name=name),
        text,
        prompt,
        sizes,
        repeats=1,
        pid=0,
    )
    service.close_all()
    raw, framed = (rp.median_of_runs(echo_runs[k]) for k in baseline)
    out: dict[str, Any] = {
        "notes": "Per-call latency in us through a real daemon (blocking client, one request at "
        "a time), median over runs of each run's p50/p99. Every run starts with the epoll and "
        "agentmem_framing echoes (as in `echo`, same number of calls), so each op is compared "
        "with an echo timed under the same machine load: ratio_to_echo is the median over runs "
        "of op p50 / that run's epoll echo p50 (target <= 2). alloc_1kib: distinct 1 KiB "
        "content per call; read_1mib_hot: a 1 MiB prompt shared with the reader, read "
        "zero-copy (the segment was mapped before timing); read_4kib_inline: 4 KiB answered "
        "inline (a copy); share_content: a 1 KiB SMU to another connected agent; append_1kib: "
        "distinct 1 KiB messages to one conversation; release: the handles alloc made; "
        "get_stats_agent: the holder's own stats (1/20 of the calls: each walks the domain's "
        "store, which grows over the runs). inprocess_p50_us: the same call through the "
        "in-process transport (service and client, no socket, no framing; one run); "
        "daemon_cpu_us / client_cpu_us: CPU per call of each side (from /proc and process_time "
        "over all runs, warm-up included), beside the epoll echo's in the `echo` section.",
        "echo_p50_us": raw["p50_us"],
        "echo_runs_p50_us": raw["runs_p50_us"],
        "framing_echo_p50_us": framed["p50_us"],
        "echo_server_cpu_us": echoes["epoll"]["server_cpu_us"],
        "echo_client_cpu_us": echoes["epoll"]["client_cpu_us"],
        "read_1mib_zero_copy": zero_copy,
    }
    for op in OPS:
        fig = rp.median_of_runs(runs[op])
        fig["ratio_to_echo"] = _median_ratio(runs[op], echo_runs["epoll"])
        fig["ratio_to_framing_echo"] = _median_ratio(runs[op], echo_runs["agentmem_framing"])
        fig["inprocess_p50_us"] = rp.median_of_runs(inproc[op])["p50_us"]
        fig["daemon_cpu_us"] = round(dcpu[op], 1)
        fig["client_cpu_us"] = round(ccpu[op], 1)
        out[op] = fig
    return out


def _median_ratio(runs: Sequence[dict[str, float]], base: Sequence[dict[str, float]]) -> float:
    """Median over runs of p50 / the same run's baseline p50."""
    ratios = [r["p50_us"] / b["p50_us"] for r, b in zip(runs, base, strict=True)]
    return round(statistics.median(ratios), 2)


# --- throughput ------------------------------------------------------------------------------


def _throughput_worker(
    path: str, name: str, text: bytes, pairs: int, pipes: tuple[int, int, int, int]
) -> None:
    ready_w, go_r, go_w, out_w = pipes
    os.close(go_w)
    msgs = [_kib(text, name, i) for i in range(pairs)]
    errors = 0
    with connect(path, name=name) as client:
        os.write(ready_w, b".")
        os.read(go_r, 1)  # EOF: the parent closed its end, everyone starts
        cpu0, t0 = os.times(), time.perf_counter()
        for m in msgs:
            try:
                if client.read(client.alloc_smu("tool_result", m)) != m:
                    errors += 1
            except AgentmemError:
                errors += 1
        t1, cpu1 = time.perf_counter(), os.times()
    cpu = cpu1.user + cpu1.system - cpu0.user - cpu0.system
    line = {"ops": 2 * pairs, "elapsed": t1 - t0, "start": t0, "end": t1, "cpu": cpu}
    os.write(out_w, json.dumps({**line, "errors": errors}).encode() + b"\n")


def _throughput_run(path: str, pid: int, text: bytes, clients: int, ops: int) -> dict[str, Any]:
    pairs = max(1, ops // (2 * clients))
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    procs = [
        fork(
            _throughput_worker, path, f"tp-{clients}-{i}", text, pairs, (ready_w, go_r, go_w, out_w)
        )
        for i in range(clients)
    ]
    for fd in (ready_w, go_r, out_w):
        os.close(fd)
    try:
        wait_bytes(ready_r, clients, "throughput clients connecting")
        cpu0, t0 = pss.cpu_seconds(pid), time.perf_counter()
        os.close(go_w)
        go_w = -1
        lines = wait_lines(out_r, clients, "throughput clients")
        t1, cpu1 = time.perf_counter(), pss.cpu_seconds(pid)
    finally:
        for fd in (ready_r, go_w, out_r):
            if fd >= 0:
                os.close(fd)
        for p in procs:
            p.join()
    total = sum(x["ops"] for x in lines)
    slowest = max(x["elapsed"] for x in lines)
    return {
        "ops": total,
        "ops_s": round(total / slowest),
        "slowest_s": round(slowest, 4),
        "span_s": round(max(x["end"] for x in lines) - min(x["start"] for x in lines), 4),
        "parent_wall_s": round(t1 - t0, 4),
        "daemon_cpu_s": round(cpu1 - cpu0, 2),
        "daemon_cpu_us_per_op": round((cpu1 - cpu0) * 1e6 / total, 1),
        "clients_cpu_us_per_op": round(sum(x["cpu"] for x in lines) * 1e6 / total, 1),
        "errors": sum(x["errors"] for x in lines),
    }


def bench_throughput(sizes: Sizes, repeats: int, text: bytes, echo_p50_us: float) -> dict[str, Any]:
    """Aggregate ops/s of 1 KiB alloc + read from several client processes at once."""
    runs = min(repeats, sizes.throughput_runs)
    levels = []
    with private_daemon() as d:
        for clients in sizes.throughput_clients:
            _progress(f"throughput: {clients} clients x {runs} runs")
            per_run = [
                _throughput_run(d.socket, d.pid, text, clients, sizes.throughput_ops)
                for _ in range(runs)
            ]
            level: dict[str, Any] = {"clients": clients}
            for key in per_run[0]:
                values = [r[key] for r in per_run]
                level[key] = sum(values) if key == "errors" else round(statistics.median(values), 4)
            level["runs_ops_s"] = [r["ops_s"] for r in per_run]
            levels.append(level)
    # Baseline: the same mix from one client through the in-process transport.
    service = Service(Config())
    pairs = max(1, sizes.throughput_ops // 2)
    msgs = [_kib(text, "inproc", i) for i in range(pairs)]
    with Client(InProcessTransport(service), name="inproc") as c:
        t0 = time.perf_counter()
        for m in msgs:
            c.read(c.alloc_smu("tool_result", m))
        inproc = 2 * pairs / (time.perf_counter() - t0)
    service.close_all()
    return {
        "notes": "Each client is a forked process with its own connection; all connect, then "
        "start together; each runs alloc_smu of distinct 1 KiB content then read of it (2 ops) "
        "in a loop. ops_s = all ops / the slowest client's elapsed time (median over runs); "
        "daemon_cpu_*: the daemon's utime+stime from /proc over the run; clients_cpu_us_per_op: "
        "the clients' own CPU. Baselines: inprocess_ops_s, the same loop through the in-process "
        "transport (no socket); echo_bound_ops_s, 1e6 / epoll echo p50 of `ops` (one client, "
        "one round trip per op).",
        "runs": runs,
        "levels": levels,
        "inprocess_ops_s": round(inproc),
        "echo_bound_ops_s": round(1e6 / echo_p50_us),
        "errors": sum(level["errors"] for level in levels),
    }


# --- connections -----------------------------------------------------------------------------


def _connections_worker(
    path: str, prefix: str, n: int, text: bytes, pipes: tuple[int, int, int, int, int, int]
) -> None:
    ready_w, go_r, go_w, hold_r, hold_w, out_w = pipes
    os.close(go_w)
    os.close(hold_w)
    errors: list[str] = []
    clients: list[Client] = []
    t0 = time.perf_counter()
    for i in range(n):
        try:
            clients.append(connect(path, name=f"{prefix}-{i:03d}"))
        except AgentmemError as exc:
            errors.append(f"connect: {exc!r}")
    t1 = time.perf_counter()
    os.write(ready_w, b".")
    os.read(go_r, 1)  # everyone is connected: now serve each connection while all are open
    t2 = time.perf_counter()
    served = 0
    for i, c in enumerate(clients):
        data = _kib(text, c.name, i)
        try:
            ok = c.read(c.alloc_smu("tool_result", data)) == data
            ok = ok and c.get_stats(c.name).handles == 1
        except AgentmemError as exc:
            errors.append(f"serve: {exc!r}")
            continue
        served += ok
        if not ok:
            errors.append("serve: wrong content or stats")
    t3 = time.perf_counter()
    line: dict[str, object] = {
        "connected": len(clients),
        "served": served,
        "errors": len(errors),
        "first_errors": errors[:3],
        "connect_s": t1 - t0,
        "serve_s": t3 - t2,
    }
    os.write(out_w, json.dumps(line).encode() + b"\n")
    os.read(hold_r, 1)  # hold every connection open until the parent has measured
    for c in clients:
        c.close()


def bench_connections(sizes: Sizes, text: bytes) -> dict[str, Any]:
    """``procs x per_proc`` agents connected at once, each doing alloc + read + stats."""
    procs_n, per = sizes.connection_procs, sizes.connections_per_proc
    total = procs_n * per
    with private_daemon() as d:
        idle_fds, idle = pss.fd_count(d.pid), pss.rollup(d.pid)
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        hold_r, hold_w = os.pipe()
        out_r, out_w = os.pipe()
        pipes = (ready_w, go_r, go_w, hold_r, hold_w, out_w)
        t0 = time.perf_counter()
        procs = [
            fork(_connections_worker, d.socket, f"c{p:02d}", per, text, pipes)
            for p in range(procs_n)
        ]
        for fd in (ready_w, go_r, hold_r, out_w):
            os.close(fd)
        try:
            wait_bytes(ready_r, procs_n, "connecting")
            t1 = time.perf_counter()
            os.close(go_w)
            go_w = -1
            lines = wait_lines(out_r, procs_n, "serving")
            t2 = time.perf_counter()
            held_fds, held = pss.fd_count(d.pid), pss.rollup(d.pid)
            clients_pss = pss.total_pss(p.pid for p in procs if p.pid is not None)
            with connect(d.socket, name="bench-observer") as obs:
                agents = _domain_stats(obs).agents
                stats_ms = [_once_ms(obs.get_stats) for _ in range(5)]
            os.close(hold_w)
            hold_w = -1
        finally:
            for fd in (ready_r, go_w, hold_w, out_r):
                if fd >= 0:
                    os.close(fd)
            for p in procs:
                p.join()
        fds_after, agents_after = _settled(d)
    connected = sum(x["connected"] for x in lines)
    errors = sum(x["errors"] for x in lines)
    return {
        "notes": f"{procs_n} forked processes open {per} connections each, one registered agent "
        "per connection (distinct names). Once all are connected, each connection allocates "
        "1 KiB, reads it back (compared) and asks for its own agent stats, while every other "
        "connection stays open; the daemon's fds (/proc/PID/fd) and PSS are read while all are "
        "held. Baseline: the same daemon idle, before any connection. connect_all_s: from "
        "forking the workers until all are connected. domain_stats_ms: "
        "get_stats() of the whole domain with all agents registered (median of 5).",
        "connections": total,
        "connected": connected,
        "served": sum(x["served"] for x in lines),
        "errors": errors + (total - connected),
        "first_errors": [e for x in lines for e in x["first_errors"]][:5],
        "agents_registered": agents,
        "connect_all_s": round(t1 - t0, 3),
        "serve_all_s": round(t2 - t1, 3),
        "daemon_fds_idle": idle_fds,
        "daemon_fds_held": held_fds,
        "daemon_fds_after_close": fds_after,
        "agents_after_close": agents_after,
        "daemon_pss_idle_bytes": idle["Pss"],
        "daemon_pss_held_bytes": held["Pss"],
        "daemon_pss_per_connection_bytes": round((held["Pss"] - idle["Pss"]) / total),
        "clients_pss_bytes": clients_pss,
        "domain_stats_ms": round(statistics.median(stats_ms), 2),
    }


def _domain_stats(client: Client) -> StoreStats:
    st = client.get_stats()
    assert isinstance(st, StoreStats)
    return st


def _once_ms(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def _settled(d: DaemonProcess) -> tuple[int, int]:
    """The daemon's fds and registered agents after the workers exited, not counting the
    connection that asks. Their sockets were closed before it connected, so the daemon sees
    those EOFs no later than its request; a few more round trips are a safety margin."""
    agents = -1
    with connect(d.socket, name="bench-after") as c:
        for _ in range(100):
            agents = _domain_stats(c).agents
            if agents == 1:
                break
        fds = pss.fd_count(d.pid)
    return fds - 1, agents - 1


# --- spawn -----------------------------------------------------------------------------------

#: A fresh agent process: times ``import agentmem``, then connect, hello, the orchestrator's
#: handoff of a shared prompt, and the first zero-copy read up to touching its first byte; and
#: the same bytes read from a file, mapped from a file and copied in memory. The baselines run
#: before or after the agent's read on alternate spawns, so neither gets the warmer process.
_SPAWN_CHILD = r"""
import json, os, sys, time
started = time.perf_counter()
import agentmem
from agentmem.client.transport import UnixSocketTransport
imported = time.perf_counter()
path, name, prompt_file, baselines_first = sys.argv[1:5]

def baselines():
    import mmap
    b0 = time.perf_counter()
    with open(prompt_file, "rb") as f:
        data = f.read()
    data[0]
    b1 = time.perf_counter()
    with open(prompt_file, "rb") as f:
        mapping = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    mapping[0]
    b2 = time.perf_counter()
    copy = memoryview(data).tobytes()
    copy[0]
    b3 = time.perf_counter()
    return data, {"file_read": b1 - b0, "file_mmap": b2 - b1, "memory_copy": b3 - b2}

if baselines_first == "1":
    data, base = baselines()
t0 = time.perf_counter()
transport = UnixSocketTransport(path)
t1 = time.perf_counter()
client = agentmem.Client(transport, name=name)
t2 = time.perf_counter()
os.write(1, b"ready\n")
handle = agentmem.Handle(int(os.read(0, 64)))
t3 = time.perf_counter()
view = client.read(handle)
view[0]
t4 = time.perf_counter()
if baselines_first != "1":
    data, base = baselines()
out = {
    "started": started, "import": imported - started, "connect": t1 - t0, "hello": t2 - t1,
    "handoff": t3 - t2, "read": t4 - t3, "total": t4 - t0,
    "zero_copy": type(view.obj).__name__ == "mmap" and view.readonly and view == data,
}
print(json.dumps({**out, **base}), flush=True)
"""

ECHO_COLUMNS: tuple[str, ...] = ("p50_us", "p99_us", "mean_us", "server_cpu_us", "client_cpu_us")
ECHO_COLUMNS += ("calls", "runs_p50_us")
SPAWN_PHASES = ("connect", "hello", "handoff", "read", "total", "agent_side")
SPAWN_BASELINES = ("file_read", "file_mmap", "memory_copy")


def _us_stats(values: Sequence[float]) -> dict[str, float]:
    s = sorted(values)
    return {
        "p50_us": round(rp.percentile(s, 0.5) * 1e6, 1),
        "p99_us": round(rp.percentile(s, 0.99) * 1e6, 1),
    }


def bench_spawn(sizes: Sizes, prompt: bytes) -> dict[str, Any]:
    """Fresh interpreters, one after another, each becoming an agent that reads the prompt."""
    samples: list[dict[str, Any]] = []
    startup: list[float] = []
    wall: list[float] = []
    with private_daemon() as d, tempfile.TemporaryDirectory(prefix="agentmem-spawn-") as tmp:
        prompt_file = os.path.join(tmp, "prompt.md")
        Path(prompt_file).write_bytes(prompt)
        with connect(d.socket, name="bench-orchestrator") as orchestrator:
            handle = orchestrator.alloc_smu("system_prompt", prompt)
            for i in range(sizes.spawns):
                name = f"spawned-{i:03d}"
                cmd = [sys.executable, "-c", _SPAWN_CHILD, d.socket, name, prompt_file, str(i % 2)]
                t0 = time.perf_counter()
                with subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as child:
                    assert child.stdin is not None
                    expect_line(child.stdout, "spawn")
                    shared = orchestrator.share_content(handle, name)
                    child.stdin.write(f"{shared}\n".encode())
                    child.stdin.flush()
                    line = expect_line(child.stdout, "spawn")
                    child.wait(CHILD_TIMEOUT)
                wall.append(time.perf_counter() - t0)
                sample = json.loads(line)
                sample["agent_side"] = sample["total"] - sample["handoff"]
                startup.append(sample["started"] - t0)
                samples.append(sample)
    out: dict[str, Any] = {
        "notes": "Each spawn is a fresh `python -c` process. Timed inside it (perf_counter): "
        "from just before connect to just after touching the first byte of the first read of "
        "a 1 MiB system prompt that an orchestrator process shares with it. Phases: connect "
        "(socket connect), hello (register), handoff (tell the orchestrator it is up, which "
        "calls share_content and sends the handle back over a pipe), read (the read request, "
        "the segment's fd passed and mapped, first byte touched); agent_side = total - "
        "handoff. Baselines in the same process, same bytes: open+read of the prompt file "
        "(page cache warm), open+mmap of it, and a private copy from memory, each to its "
        "first byte. import_ms: `import agentmem` (excluded from the total); startup_ms: "
        "interpreter start-up before the script runs; process_wall_ms: Popen to exit, as seen "
        "by the parent.",
        "spawns": len(samples),
        "prompt_bytes": len(prompt),
        "zero_copy": all(s["zero_copy"] for s in samples),
    }
    for key in SPAWN_PHASES + SPAWN_BASELINES:
        out[key] = _us_stats([s[key] for s in samples])
    out["import_ms"] = round(statistics.median(s["import"] for s in samples) * 1000, 2)
    out["startup_ms"] = round(statistics.median(startup) * 1000, 2)
    out["process_wall_ms"] = round(statistics.median(wall) * 1000, 2)
    return out


# --- results ---------------------------------------------------------------------------------


def targets(sizes: Sizes) -> list[rp.Target]:
    """The goals this benchmark checks (the connection count follows the sizes)."""
    out = [
        rp.Target(f"ops.{op}.ratio_to_echo", "<=", OP_RATIO_TARGET, f"{op}: p50 / echo p50")
        for op in TARGET_OPS
    ]
    conns = sizes.connection_procs * sizes.connections_per_proc
    return [
        *out,
        rp.Target("spawn.total.p50_us", "<=", 1000.0, "agent spawn p50, us"),
        rp.Target("pss.agentmem.vs_one_copy", "<=", 1.25, "shared prompt PSS / one copy"),
        rp.Target("connections.connected", ">=", conns, "concurrent connections"),
        rp.Target("connections.errors", "<=", 0, "errors with all connections open"),
    ]


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
    ep = e["epoll"]
    fr = e["agentmem_framing"]
    uv = e["uvloop_protocol"]
    rows = [
        row(
            f"echo round trip, {e['bytes']} B, p50 / p99 us (x epoll echo)",
            f"agentmem framing: {fr['p50_us']} / {fr['p99_us']} "
            f"({fr['p50_us'] / ep['p50_us']:.2f}x)",
            f"epoll {ep['p50_us']} / {ep['p99_us']}; asyncio streams "
            f"{e['asyncio_streams']['p50_us']}; asyncio protocol "
            f"{e['asyncio_protocol']['p50_us']}; uvloop protocol "
            + (str(uv["p50_us"]) if uv else "n/a"),
        ),
        row(
            "echo CPU per round trip, server + client, us",
            f"agentmem framing: {fr['server_cpu_us']} + {fr['client_cpu_us']}",
            f"epoll {ep['server_cpu_us']} + {ep['client_cpu_us']}",
        ),
    ]
    for op in OPS:
        f = o[op]
        rows.append(
            row(
                f"{op}, p50 / p99 us (x echo p50)",
                f"{f['p50_us']} / {f['p99_us']} ({f['ratio_to_echo']}x)",
                f"echo {o['echo_p50_us']}; in-process {f['inprocess_p50_us']}; CPU daemon + client "
                f"{f['daemon_cpu_us']} + {f['client_cpu_us']}",
                *([f"ops.{op}.ratio_to_echo"] if op in TARGET_OPS else []),
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
            f"{s['total']['p50_us']} / {s['total']['p99_us']} (agent side "
            f"{s['agent_side']['p50_us']})",
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
    out += ["## echo", "", r["echo"]["notes"], ""]
    out += rp.table(
        ["server", *ECHO_COLUMNS],
        [
            [k, *(rp.compact(e[c]) for c in ECHO_COLUMNS)]
            if e
            else [k, "n/a", *[""] * (len(ECHO_COLUMNS) - 1)]
            for k, e in ((k, r["echo"][k]) for k in echo.KINDS)
        ],
        right=len(ECHO_COLUMNS),
    )
    o = r["ops"]
    out += ["## ops", "", o["notes"], ""]
    cols: tuple[str, ...] = (
        "p50_us",
        "p99_us",
        "mean_us",
        "ratio_to_echo",
        "ratio_to_framing_echo",
    )
    cols += ("inprocess_p50_us", "daemon_cpu_us", "client_cpu_us", "calls")
    out += rp.table(["op", *cols], [[op] + [o[op][k] for k in cols] for op in OPS], len(cols))
    t = r["throughput"]
    out += ["## throughput", "", t["notes"], ""]
    cols = ("clients", "ops_s", "daemon_cpu_us_per_op", "clients_cpu_us_per_op", "slowest_s")
    cols += ("errors", "runs_ops_s")
    out += rp.table(
        list(cols), [[rp.compact(lv[k]) for k in cols] for lv in t["levels"]], len(cols)
    )
    for name in ("connections", "spawn", "pss"):
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
    started = time.perf_counter()
    _progress("preparing prompt text")
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
        }
    }
    sections: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("echo", lambda: bench_echo(sizes.echo_calls, sizes.warmup, repeats)),
        ("ops", lambda: bench_ops(sizes, repeats, prompt, small_prompt, results["echo"])),
        (
            "throughput",
            lambda: bench_throughput(sizes, repeats, prompt, results["ops"]["echo_p50_us"]),
        ),
        ("connections", lambda: bench_connections(sizes, prompt)),
        ("spawn", lambda: bench_spawn(sizes, small_prompt)),
        ("pss", lambda: pss.bench_pss(sizes.pss_procs, prompt, source)),
    ]
    for name, fn in sections:
        _progress(name)
        t = time.perf_counter()
        results[name] = fn()
        results[name]["elapsed_s"] = round(time.perf_counter() - t, 2)
    results["targets"] = rp.evaluate(results, targets(sizes))
    results["meta"]["elapsed_s"] = round(time.perf_counter() - started, 1)
    md = render_markdown(results)
    print(md)
    rp.write(results, md, json_path, md_path)
    return results
