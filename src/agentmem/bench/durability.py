"""The ``durability`` section of ``agentmem bench daemon``: what a durable append costs.

Three daemons side by side, taking the same appends: ``strict`` (the default: a reply waits for
``fdatasync`` of the journal), ``relaxed`` (written before the reply, synced every second) and
``off`` (``--state-dir none``: no journal). Measured: the p50/p99 of one client appending 1 KiB
messages one at a time (each waits for its own sync in strict mode), and the appends per second
of 8 clients appending at once, where one sync covers every append the daemon read in the same
wakeup (group commit). Runs alternate between the modes, so each is timed under the same load.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from agentmem.bench import report as rp
from agentmem.bench.fleet import private_daemon
from agentmem.client import Client, connect

MODES = {
    "strict": ["--durability", "strict"],
    "relaxed": ["--durability", "relaxed"],
    "off": ["--state-dir", "none"],
}
CLIENTS = 8


def _sequential(client: Client, calls: int, warmup: int, tag: str) -> dict[str, float]:
    h = client.alloc_smu("conversation", [])
    payload = os.urandom(512).hex().encode()  # 1 KiB, distinct per call below

    def append(i: int) -> None:
        client.append(h, payload[:1000] + f"{tag}-{i:08d}".encode()[:24])

    samples = rp.timed(append, calls, warmup)
    client.release(h)
    return rp.latency_us(samples)


def _concurrent(socket: str, calls: int, tag: str) -> float:
    """Appends per second of ``CLIENTS`` clients appending ``calls`` each, at once."""
    clients = [connect(socket, name=f"bench-{tag}-{k}", autostart=False) for k in range(CLIENTS)]
    handles = [c.alloc_smu("conversation", []) for c in clients]
    go = threading.Barrier(CLIENTS + 1)

    def work(k: int) -> None:
        c, h = clients[k], handles[k]
        go.wait()
        for i in range(calls):
            c.append(h, b"x" * 1000 + f"{tag}-{k}-{i}".encode())

    threads = [threading.Thread(target=work, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    go.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for c in clients:
        c.close()
    return CLIENTS * calls / elapsed


def bench_durability(calls: int, warmup: int, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "notes": "1 KiB conversation appends through a real daemon per durability mode "
        "(strict: reply after fdatasync; relaxed: after write, synced each second; off: no "
        "journal), runs alternating between modes. sequential: one client, one append at a "
        "time, median over runs of p50/p99 (us). concurrent_appends_per_s: 8 clients (threads, "
        "one connection each) appending at once, median over runs: one fdatasync covers every "
        "append read in the same wakeup. Journal on the state directory's file system "
        f"({os.statvfs('/').f_bsize}-byte blocks here).",
    }
    seq: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    conc: dict[str, list[float]] = {m: [] for m in MODES}
    with (
        private_daemon(MODES["strict"]) as strict,
        private_daemon(MODES["relaxed"]) as relaxed,
        private_daemon(MODES["off"]) as off,
    ):
        daemons = {"strict": strict, "relaxed": relaxed, "off": off}
        for run in range(repeats):
            for mode, d in daemons.items():
                with connect(d.socket, name=f"bench-seq-{mode}", autostart=False) as c:
                    seq[mode].append(_sequential(c, calls, warmup, f"{mode}{run}"))
                conc[mode].append(_concurrent(d.socket, max(calls // 4, 20), f"{mode}{run}"))
    for mode in MODES:
        med = rp.median_of_runs(seq[mode])
        rates = sorted(conc[mode])
        out[mode] = {
            "append_p50_us": med["p50_us"],
            "append_p99_us": med["p99_us"],
            "concurrent_appends_per_s": round(rates[len(rates) // 2]),
        }
    out["strict_vs_off_p50"] = round(
        out["strict"]["append_p50_us"] / out["off"]["append_p50_us"], 2
    )
    out["relaxed_vs_off_p50"] = round(
        out["relaxed"]["append_p50_us"] / out["off"]["append_p50_us"], 2
    )
    return out
