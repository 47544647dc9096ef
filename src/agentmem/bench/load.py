"""Many client processes at once: the ``throughput`` and ``connections`` sections of
``agentmem bench daemon``.

Every client is a forked process with its own connections. They connect, say so on a pipe,
and wait on another until the parent closes it, so all start together; each reports one JSON
line when done, and (``connections``) holds its connections open until the parent has read the
daemon's fds and PSS.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from agentmem.bench import pss
from agentmem.bench import report as rp
from agentmem.bench.fleet import fork, private_daemon, wait_bytes, wait_lines
from agentmem.client import Client, connect
from agentmem.config import Config
from agentmem.daemon.inprocess import InProcessTransport
from agentmem.daemon.service import Service
from agentmem.errors import AgentmemError
from agentmem.stats import StoreStats
from agentmem.testing import DaemonProcess


def kib(text: bytes, tag: str, i: int, size: int = 1024) -> bytes:
    """``size`` bytes of ``text``, distinct for every (tag, i): a header, then a window."""
    head = f"{tag} {i:08d} ".encode()
    start = (i * 7919) % (len(text) - size)
    return head + text[start : start + size - len(head)]


def _throughput_worker(
    path: str, name: str, text: bytes, pairs: int, pipes: tuple[int, int, int, int]
) -> None:
    ready_w, go_r, go_w, out_w = pipes
    os.close(go_w)
    msgs = [kib(text, name, i) for i in range(pairs)]
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


def bench_throughput(
    levels: Sequence[int], ops: int, runs: int, text: bytes, echo_p50_us: float
) -> dict[str, Any]:
    """Aggregate ops/s of 1 KiB alloc + read from ``levels`` client processes at once, ``ops``
    operations a run, ``runs`` runs a level."""
    figs = []
    with private_daemon() as d:
        for clients in levels:
            rp.progress("daemon", f"throughput: {clients} clients x {runs} runs")
            per_run = [_throughput_run(d.socket, d.pid, text, clients, ops) for _ in range(runs)]
            level: dict[str, Any] = {"clients": clients}
            for key in per_run[0]:
                values = [r[key] for r in per_run]
                level[key] = sum(values) if key == "errors" else round(statistics.median(values), 4)
            level["runs_ops_s"] = [r["ops_s"] for r in per_run]
            figs.append(level)
    # Baseline: the same mix from one client through the in-process transport.
    service = Service(Config())
    pairs = max(1, ops // 2)
    msgs = [kib(text, "inproc", i) for i in range(pairs)]
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
        "levels": figs,
        "inprocess_ops_s": round(inproc),
        "echo_bound_ops_s": round(1e6 / echo_p50_us),
        "errors": sum(level["errors"] for level in figs),
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
        data = kib(text, c.name, i)
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


def bench_connections(procs_n: int, per: int, text: bytes) -> dict[str, Any]:
    """``procs_n x per`` agents connected at once, each doing alloc + read + stats."""
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
