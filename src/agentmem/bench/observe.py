"""Statistics overhead: the ``observe`` section of ``agentmem bench daemon``.

Issue target: with statistics on, op latency and daemon CPU within 5 % of with them off.
"On" is everything observability adds to a running daemon: the per-second ``agent_stats``
file, the Prometheus endpoint scraped once a second, and an observer session (what
``agentmem top`` is) asking for the recent statistics once a second. "Off" is a daemon started
with ``--no-stats-file`` and nothing watching it. Both daemons run side by side, pinned to the
same CPU as the client, and the runs alternate between them, so drift and noise hit both.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

from agentmem.bench import pss
from agentmem.bench import report as rp
from agentmem.bench.fleet import pinned
from agentmem.bench.load import kib
from agentmem.client import Client, connect
from agentmem.testing import DaemonProcess

OPS = ("alloc_1kib", "read_4kib_inline")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def _watchers(d: DaemonProcess, port: int) -> Iterator[None]:
    """Scrape /metrics and ask for recent stats once a second until the block ends."""
    stop = threading.Event()
    watcher = connect(d.socket, observer=True)

    def loop() -> None:
        while not stop.wait(1.0):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                r.read()
            watcher._op("get_stats", recent=True, daemon=True)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        watcher.close()


def _one_run(
    client: Client, text: bytes, calls: int, warmup: int, *, run: int, pid: int
) -> dict[str, dict[str, float]]:
    small = client.alloc_smu("tool_result", kib(text, f"obs inline {run}", 0, 4096))
    ops = {
        "alloc_1kib": lambda i: client.alloc_smu("tool_result", kib(text, f"obs {run}", i)),
        "read_4kib_inline": lambda i: client.read(small),
    }
    out: dict[str, dict[str, float]] = {}
    for op in OPS:
        c0 = pss.cpu_seconds_ns(pid)
        fig = rp.latency_us(rp.timed(ops[op], calls, warmup))
        fig["daemon_cpu_us"] = (pss.cpu_seconds_ns(pid) - c0) * 1e6 / (calls + warmup)
        out[op] = fig
    return out


def bench_observe(calls: int, warmup: int, repeats: int, text: bytes) -> dict[str, Any]:
    """Op p50 and daemon CPU per op with statistics on and off, alternating runs."""
    port = _free_port()
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        "off": {op: [] for op in OPS},
        "on": {op: [] for op in OPS},
    }
    with contextlib.ExitStack() as stack:
        off = stack.enter_context(DaemonProcess(extra_args=["--no-stats-file"]))
        on = stack.enter_context(DaemonProcess(extra_args=["--metrics", f"127.0.0.1:{port}"]))
        stack.enter_context(_watchers(on, port))
        clients = {
            "off": stack.enter_context(connect(off.socket, name="obs-off")),
            "on": stack.enter_context(connect(on.socket, name="obs-on")),
        }
        pids = {"off": off.pid, "on": on.pid}
        with pinned(0, 0, [off.pid, on.pid]):
            for run in range(max(repeats, 3)):
                for mode in ("off", "on") if run % 2 == 0 else ("on", "off"):
                    fig = _one_run(clients[mode], text, calls, warmup, run=run, pid=pids[mode])
                    for op in OPS:
                        runs[mode][op].append(fig[op])
    out: dict[str, Any] = {
        "notes": "Two daemons side by side, pinned with the client to one CPU, runs "
        "alternating: 'on' writes agent_stats every second, serves Prometheus metrics scraped "
        "every second, and has an observer session asking for recent stats every second; "
        "'off' runs with --no-stats-file and nothing watching. p50_ratio: median over runs of "
        "on / off; cpu_ratio: daemon CPU of all 'on' runs / all 'off' runs (the scheduler's "
        "per-thread run time, to the nanosecond; 10 ms ticks where the kernel keeps none). "
        "Target: within 5 %, i.e. <= 1.05.",
    }
    for op in OPS:
        off_runs, on_runs = runs["off"][op], runs["on"][op]
        out[op] = {
            "off_p50_us": round(statistics.median(r["p50_us"] for r in off_runs), 2),
            "on_p50_us": round(statistics.median(r["p50_us"] for r in on_runs), 2),
            "off_daemon_cpu_us": round(statistics.median(r["daemon_cpu_us"] for r in off_runs), 2),
            "on_daemon_cpu_us": round(statistics.median(r["daemon_cpu_us"] for r in on_runs), 2),
            "p50_ratio": round(
                statistics.median(
                    a["p50_us"] / b["p50_us"] for a, b in zip(on_runs, off_runs, strict=True)
                ),
                3,
            ),
            # A ratio of totals over all runs: the once-a-second work falls in some runs only.
            "cpu_ratio": round(
                sum(r["daemon_cpu_us"] for r in on_runs)
                / max(sum(r["daemon_cpu_us"] for r in off_runs), 1e-9),
                3,
            ),
        }
    return out
