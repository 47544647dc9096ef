"""A whole-domain statistics walk beside other clients: the ``walk`` section of
``agentmem bench daemon``.

``get_stats()`` of a whole domain walks every chunk reference (seconds for millions of
messages). The daemon runs that walk in slices between other requests (``Deferred`` in
``daemon/service.py``), so its cost falls on the caller, not on every agent. Measured here on a
domain of ``agents`` conversations of ``messages`` messages each: how long the caller waits,
the daemon's CPU for the walk, and the round trips another client made meanwhile (a
``length`` call in a loop, on its own thread): their p50, p99 and longest, beside the same
client's round trips over a window as long just before the walk (the baseline, same run).
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

from agentmem.bench import pss
from agentmem.client import Client, connect
from agentmem.ids import Handle
from agentmem.stats import StoreStats
from agentmem.testing import DaemonProcess


class Pinger:
    """A client doing round trips on its own thread, each recorded as (start ns, length ns)."""

    def __init__(self, client: Client, handle: Handle) -> None:
        self.samples: list[tuple[int, int]] = []
        self._client = client
        self._handle = handle
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pinger", daemon=True)

    def _run(self) -> None:
        clock, length, handle = time.perf_counter_ns, self._client.length, self._handle
        samples = self.samples
        while not self._stop.is_set():
            t0 = clock()
            length(handle)
            samples.append((t0, clock() - t0))

    def __enter__(self) -> Pinger:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def within(self, start: int, end: int) -> list[int]:
        """Lengths of the round trips that began and ended in [start, end) ns, in us."""
        return [n // 1000 for t, n in list(self.samples) if start <= t and t + n < end]

    def overlapping(self, start: int, end: int) -> list[int]:
        """Lengths of the round trips in progress at any time in [start, end) ns, in us
        (one that began before a walk and was held by it counts)."""
        return [n // 1000 for t, n in list(self.samples) if t < end and t + n > start]


def latency_figures(us: list[int]) -> dict[str, float]:
    us = sorted(us)
    if not us:
        return {"calls": 0, "p50_us": 0.0, "p99_us": 0.0, "max_us": 0.0}
    return {
        "calls": len(us),
        "p50_us": float(statistics.median(us)),
        "p99_us": float(us[min(len(us) - 1, int(len(us) * 0.99))]),
        "max_us": float(us[-1]),
    }


def bench_walk(agents: int, messages: int, repeats: int) -> dict[str, Any]:
    """Fresh whole-domain statistics of ``agents`` x ``messages`` messages, ``repeats`` times,
    while another client makes round trips."""
    runs: list[dict[str, Any]] = []
    with DaemonProcess() as d:
        holders = [connect(d.socket, name=f"walk-{i}") for i in range(agents)]
        try:
            for i, c in enumerate(holders):
                chat = c.conversation()
                for start in range(0, messages, 1000):
                    chat.extend(
                        {"role": "user", "content": f"agent {i} message {j} " + "x" * (j % 700)}
                        for j in range(start, min(messages, start + 1000))
                    )
            with connect(d.socket, name="walk-pinger") as pinger_client:
                small = pinger_client.conversation()
                small.append({"role": "user", "content": "hi"})
                handle = small.handle
                with (
                    connect(d.socket, name="walk-caller") as caller,
                    Pinger(pinger_client, handle) as pinger,
                ):
                    caller.get_stats()  # warm-up: the first walk allocates its dicts
                    for _ in range(max(1, repeats)):
                        before = time.perf_counter_ns()
                        # The baseline window, as long as a walk was: the pinger alone.
                        time.sleep(runs[-1]["walk_ms"] / 1e3 if runs else 0.5)
                        c0 = pss.cpu_seconds_ns(d.pid)
                        start = time.perf_counter_ns()
                        stats = caller.get_stats()
                        end = time.perf_counter_ns()
                        assert isinstance(stats, StoreStats)
                        cpu = pss.cpu_seconds_ns(d.pid) - c0
                        runs.append(
                            {
                                "walk_ms": round((end - start) / 1e6, 2),
                                "walk_daemon_cpu_ms": round(cpu * 1e3, 2),
                                "during": latency_figures(pinger.overlapping(start, end)),
                                "baseline": latency_figures(pinger.within(before, start)),
                                "messages": stats.messages,
                            }
                        )
        finally:
            for c in holders:
                c.close()

    def med(path: tuple[str, ...]) -> float:
        values = []
        for r in runs:
            v: Any = r
            for k in path:
                v = v[k]
            values.append(v)
        return round(float(statistics.median(values)), 2)

    return {
        "notes": "A domain of agents x messages conversation messages; a caller asks for "
        "fresh whole-domain statistics (a walk of every chunk reference) while another "
        "client calls 'length' in a loop on its own thread. during: that client's round "
        "trips in progress at any time during the walk; baseline: its round trips within a "
        "window as long just before. Medians over runs; walk_daemon_cpu_ms is the "
        "daemon's CPU over the walk (the other client's round trips included).",
        "agents": agents,
        "messages_each": messages,
        "messages": runs[-1]["messages"] if runs else 0,
        "walk_ms": med(("walk_ms",)),
        "walk_daemon_cpu_ms": med(("walk_daemon_cpu_ms",)),
        "during_max_us": med(("during", "max_us")),
        "during_p99_us": med(("during", "p99_us")),
        "during_p50_us": med(("during", "p50_us")),
        "during_calls": med(("during", "calls")),
        "baseline_max_us": med(("baseline", "max_us")),
        "baseline_p99_us": med(("baseline", "p99_us")),
        "baseline_p50_us": med(("baseline", "p50_us")),
        "runs_walk_ms": [r["walk_ms"] for r in runs],
        "runs_during_max_us": [r["during"]["max_us"] for r in runs],
        "runs_baseline_max_us": [r["baseline"]["max_us"] for r in runs],
    }
