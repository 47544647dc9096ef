"""Idle histories going down beside a client in use: the ``demote`` section of
``agentmem bench daemon``.

When agents go idle, the daemon's maintenance compresses their histories into the warm tier
(zstd level 6, ~6 ms a 1 MiB group with its check): seconds of work for a few agents of
seed-profile size. Measured here: ``agents`` idle agents of ``history_bytes`` of messages each
(generated conversation JSON, distinct per agent) going down together while another client
makes round trips (a ``length`` call in a loop, on its own thread): that client's p50, p99 and
longest round trip while the histories go down, beside its round trips before (the baseline,
same run), and how long the demotion took.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from agentmem.bench.walk import Pinger, latency_figures
from agentmem.bench.workloads import generated_conversations
from agentmem.client import Client, connect
from agentmem.stats import StoreStats
from agentmem.testing import DaemonProcess

#: Seconds an idle agent's history waits before the daemon takes it down, in this bench.
IDLE_SECONDS = 1


def _histories(agents: int, history_bytes: int) -> list[list[bytes]]:
    """``agents`` lists of distinct messages of about ``history_bytes`` each."""
    pool = [m for c in generated_conversations(history_bytes * 2).conversations for m in c.messages]
    out: list[list[bytes]] = []
    for i in range(agents):
        msgs: list[bytes] = []
        total = 0
        k = i * 7919 % len(pool)
        while total < history_bytes:
            m = pool[k % len(pool)].replace(b'"content":"', b'"content":"%d %d ' % (i, k), 1)
            msgs.append(m)
            total += len(m)
            k += 1
        out.append(msgs)
    return out


def _wait_demoted(watch: Client, nbytes: int) -> int:
    """Poll the daemon's once-a-second statistics until ``nbytes`` went warm (or 120 s)."""
    deadline = time.monotonic() + 120
    moved = 0
    while moved < nbytes and time.monotonic() < deadline:
        time.sleep(0.02)  # polling the once-a-second snapshot, no sync
        st = watch.get_stats(recent=True)
        assert isinstance(st, StoreStats) and st.tiering is not None
        moved = st.tiering.demoted_bytes.get("warm", 0)
    return moved


def _one_run(agents: int, history_bytes: int) -> dict[str, Any]:
    env = {**os.environ, "AGENTMEM_IDLE_AGENT_WARM_SECONDS": str(IDLE_SECONDS)}
    histories = _histories(agents + 1, history_bytes)
    with DaemonProcess(env=env) as d:
        holders = [connect(d.socket, name=f"demote-{i}") for i in range(agents + 1)]
        try:
            chats = []
            for c, msgs in zip(holders, histories, strict=True):
                chat = c.alloc_smu("conversation", [])
                for k in range(0, len(msgs), 500):
                    c.extend(chat, msgs[k : k + 500])
                chats.append(chat)
            # One history down first: the domain's conversation dictionary is trained once, on
            # its first 8 MiB of frames (~0.25 s, once per domain), not in the window.
            first = sum(len(m) for m in histories[0])
            holders[0].set_state("idle")
            with connect(d.socket, name="demote-watch0", observer=True) as watch:
                _wait_demoted(watch, int(0.95 * first))
            total = sum(len(m) for msgs in histories[1:] for m in msgs)
            with connect(d.socket, name="demote-pinger") as pinger_client:
                small = pinger_client.conversation()
                small.append({"role": "user", "content": "hi"})
                with (
                    connect(d.socket, name="demote-watch", observer=True) as watch,
                    Pinger(pinger_client, small.handle) as pinger,
                ):
                    t0 = time.perf_counter_ns()
                    time.sleep(0.5)  # the baseline window: the pinger alone
                    start = time.perf_counter_ns()
                    for c in holders[1:]:
                        c.set_state("idle")
                    moved = _wait_demoted(watch, int(first + 0.95 * total)) - first
                    end = time.perf_counter_ns()
                    # Each agent's next turn: its whole history read back (promoted) as views.
                    back = time.perf_counter_ns()
                    read = 0
                    for c, chat in zip(holders[1:], chats[1:], strict=True):
                        c.set_state("active")
                        for view in c.iter_message_views(chat):
                            read += view.nbytes
                            view.release()
                    back_end = time.perf_counter_ns()
                    assert read == total, (read, total)
                    # The last second's snapshot lags: the demotion ended within it.
                    return {
                        "demote_ms": round((end - start) / 1e6, 1),
                        "history_bytes": total,
                        "demoted_bytes": moved,
                        "during": latency_figures(pinger.overlapping(start, end)),
                        "read_back_ms": round((back_end - back) / 1e6, 1),
                        "read_back": latency_figures(pinger.overlapping(back, back_end)),
                        "baseline": latency_figures(pinger.within(t0, start)),
                    }
        finally:
            for c in holders:
                c.close()


def bench_demote(agents: int, history_bytes: int, repeats: int) -> dict[str, Any]:
    """``repeats`` runs (a fresh daemon each) of ``agents`` histories going down together."""
    runs = [_one_run(agents, history_bytes) for _ in range(max(1, repeats))]

    def med(section: str, key: str) -> float:
        return round(float(statistics.median(r[section][key] for r in runs)), 1)

    return {
        "notes": "Idle agents' histories going down to the warm tier together (the daemon "
        f"takes an idle agent's history down after {IDLE_SECONDS} s here) while another client "
        "calls 'length' in a loop on its own thread. during: that client's round trips in "
        "progress at any time from the agents going idle until the daemon's once-a-second "
        "statistics showed 95 % of their bytes demoted (so up to a second after the end); "
        "baseline: its round trips in the half second before. One more agent's history went "
        "down first, outside the window: the domain's conversation dictionary is trained on "
        "the first 8 MiB of frames, once. Medians over runs, a fresh daemon each. read_back: "
        "that client's round trips while the agents then read their histories back one after "
        "the other as views (their next turn after idling: the daemon promotes them).",
        "agents": agents,
        "history_bytes_each": history_bytes,
        "demote_ms": round(float(statistics.median(r["demote_ms"] for r in runs)), 1),
        "during_p50_us": med("during", "p50_us"),
        "during_p99_us": med("during", "p99_us"),
        "during_max_us": med("during", "max_us"),
        "during_calls": med("during", "calls"),
        "read_back_ms": round(float(statistics.median(r["read_back_ms"] for r in runs)), 1),
        "read_back_p50_us": med("read_back", "p50_us"),
        "read_back_p99_us": med("read_back", "p99_us"),
        "read_back_max_us": med("read_back", "max_us"),
        "baseline_p50_us": med("baseline", "p50_us"),
        "baseline_max_us": med("baseline", "max_us"),
        "runs_during_max_us": [r["during"]["max_us"] for r in runs],
        "runs_during_p99_us": [r["during"]["p99_us"] for r in runs],
        "runs_demote_ms": [r["demote_ms"] for r in runs],
    }
