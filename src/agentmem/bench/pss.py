"""What processes cost the machine, read from ``/proc``; and the ``pss`` scenario of
``agentmem bench daemon``: one prompt read by many processes, shared or privately copied.

Memory is measured as PSS (``/proc/PID/smaps_rollup``): every page a process maps counts
``1/n`` in each of the ``n`` processes mapping it, so a sum over processes counts a shared page
once. RSS counts it ``n`` times (DESIGN.md, "Sharing"). A page nobody maps (a memfd the daemon
holds but has not mapped) is in no process's PSS; :func:`shmem_bytes` is the machine-wide
cross-check for it.

Linux only. Every reader raises ``OSError`` (``FileNotFoundError`` for a gone process).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agentmem.bench.fleet import expect_line, private_daemon
from agentmem.client import connect
from agentmem.stats import StoreStats

KIB = 1024
#: smaps_rollup fields compared before and after.
KEYS = ("Pss", "Pss_Anon", "Pss_Shmem")


def rollup(pid: int) -> dict[str, int]:
    """The ``kB`` fields of ``/proc/PID/smaps_rollup`` in bytes (``Pss``, ``Rss``,
    ``Pss_Anon``, ``Pss_Shmem``, ...)."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * KIB
    return out


def pss_bytes(pid: int) -> int:
    """The process's proportional set size, in bytes."""
    return rollup(pid)["Pss"]


def total_pss(pids: Iterable[int]) -> int:
    """PSS summed over ``pids``: the memory those processes cost together."""
    return sum(pss_bytes(pid) for pid in pids)


def fd_count(pid: int) -> int:
    """Open file descriptors of the process (entries of ``/proc/PID/fd``)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used (``utime + stime`` of
    ``/proc/PID/stat``), in seconds; resolution one clock tick (10 ms here)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def cpu_seconds_ns(pid: int) -> float:
    """CPU time the process's live threads have run, in seconds, to the nanosecond (the
    scheduler's ``sum_exec_runtime``: first field of each ``/proc/PID/task/TID/schedstat``);
    :func:`cpu_seconds` where the kernel does not keep it. For short intervals: a run of
    15,000 requests is ~0.3 s of daemon CPU, where a 10 ms tick is a 3 % error. Threads that
    have exited are not counted (``cpu_seconds`` counts them)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        return cpu_seconds(pid)
    return total / 1e9 if total else cpu_seconds(pid)


def shmem_bytes() -> int:
    """Machine-wide shared memory (``Shmem`` of ``/proc/meminfo``: memfd, tmpfs, SysV), bytes.

    Includes every other process's shared memory too: compare two readings taken close
    together, and treat the difference as a cross-check, not a measurement.
    """
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Shmem:"):
                return int(line.split()[1]) * KIB
    raise OSError("no Shmem line in /proc/meminfo")


# --- the scenario ----------------------------------------------------------------------------

#: A reader: connects (agentmem) or not (private), says ready, then loads the prompt (shared
#: handle, or a private copy read from a file), touches one byte of every page of it, says so,
#: and holds still until its stdin closes.
_PSS_CHILD = r"""
import sys
mode, path, name, prompt_file = sys.argv[1:5]
if mode == "agentmem":
    import agentmem
    client = agentmem.connect(path, name=name)
sys.stdout.buffer.write(b"ready\n"); sys.stdout.flush()
line = sys.stdin.buffer.readline()
if mode == "agentmem":
    views = client.views(agentmem.Handle(int(line)))
else:
    with open(prompt_file, "rb") as f:
        views = [memoryview(f.read())]
touched = sum(sum(bytes(v[::4096])) + v[-1] for v in views)  # one byte of every page
mapped = all(type(v.obj).__name__ == "mmap" for v in views)
sys.stdout.buffer.write(b"%d %d %d\n" % (sum(len(v) for v in views), mapped, touched))
sys.stdout.flush()
sys.stdin.buffer.read()
"""


def _pss_case(mode: str, n: int, prompt: bytes, prompt_file: str) -> dict[str, Any]:
    """``n`` readers of the prompt: PSS before and after it is loaded (+ the daemon's)."""
    with contextlib.ExitStack() as stack:
        path, daemon_pid = "", 0
        if mode == "agentmem":
            d = stack.enter_context(private_daemon())
            path, daemon_pid = d.socket, d.pid
        children = []
        for i in range(n):
            cmd = [sys.executable, "-c", _PSS_CHILD, mode, path, f"reader-{i:02d}", prompt_file]
            # On leaving: stdin closed (the child's cue to exit), then waited for.
            popen = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            children.append(stack.enter_context(popen))
        for c in children:
            expect_line(c.stdout, "pss reader")
        pids = [c.pid for c in children] + ([daemon_pid] if daemon_pid else [])
        before = {pid: rollup(pid) for pid in pids}
        shmem0 = shmem_bytes()
        handles = [b"go"] * n
        index = {"hot_physical_bytes": 0, "chunks": 0, "metadata_bytes": 0}
        if mode == "agentmem":
            holder = stack.enter_context(connect(path, name="bench-holder"))
            h = holder.alloc_smu("system_prompt", prompt)
            handles = [str(holder.share_content(h, f"reader-{i:02d}")).encode() for i in range(n)]
        for c, handle in zip(children, handles, strict=True):
            assert c.stdin is not None
            c.stdin.write(handle + b"\n")
            c.stdin.flush()
        loaded = [expect_line(c.stdout, "pss reader").split() for c in children]
        after = {pid: rollup(pid) for pid in pids}
        shmem1 = shmem_bytes()
        if mode == "agentmem":
            st = holder.get_stats()
            assert isinstance(st, StoreStats)
            index = {
                "hot_physical_bytes": st.hot.physical_bytes,
                "chunks": st.chunks,
                "metadata_bytes": st.metadata_bytes,
            }
        for c in children:
            assert c.stdin is not None
            c.stdin.close()
    deltas = [after[c.pid]["Pss"] - before[c.pid]["Pss"] for c in children]
    daemon = {k: after[daemon_pid][k] - before[daemon_pid][k] for k in KEYS} if daemon_pid else {}
    daemon_delta = daemon.get("Pss", 0)
    total = sum(deltas) + daemon_delta
    return {
        "processes": n,
        "loaded_bytes_each": int(statistics.median(int(x[0]) for x in loaded)),
        "zero_copy": all(x[1] == b"1" for x in loaded),
        "total_pss_bytes": total,
        "vs_one_copy": round(total / len(prompt), 3),
        "per_process_pss_bytes_p50": int(statistics.median(deltas)),
        "daemon_pss_delta_bytes": daemon_delta,
        "daemon_pss_anon_delta_bytes": daemon.get("Pss_Anon", 0),
        "daemon_pss_shmem_delta_bytes": daemon.get("Pss_Shmem", 0),
        "raw_total_pss_before_bytes": sum(before[p]["Pss"] for p in pids),
        "raw_total_pss_after_bytes": sum(after[p]["Pss"] for p in pids),
        "raw_total_rss_after_bytes": sum(after[p]["Rss"] for p in pids),
        "pss_shmem_delta_bytes": sum(after[p]["Pss_Shmem"] - before[p]["Pss_Shmem"] for p in pids),
        "pss_anon_delta_bytes": sum(after[p]["Pss_Anon"] - before[p]["Pss_Anon"] for p in pids),
        "machine_shmem_delta_bytes": shmem1 - shmem0,
        "daemon_hot_physical_bytes": index["hot_physical_bytes"],
        "daemon_chunks": index["chunks"],
        "daemon_metadata_bytes_estimate": index["metadata_bytes"],
    }


def bench_pss(procs: int, prompt: bytes, source: str) -> dict[str, Any]:
    """The prompt's memory cost: shared through the daemon vs one private copy per process."""
    with tempfile.TemporaryDirectory(prefix="agentmem-pss-") as tmp:
        prompt_file = os.path.join(tmp, "prompt.md")
        Path(prompt_file).write_bytes(prompt)
        shared = _pss_case("agentmem", procs, prompt, prompt_file)
        private = _pss_case("private", procs, prompt, prompt_file)
    return {
        "notes": f"{procs} fresh processes each load a {len(prompt) / (1 << 20):g} MiB "
        f"prompt ({source}) and touch one byte of every page; PSS from /proc/PID/smaps_rollup "
        "while all hold still. agentmem: each is a connected agent reading a handle the "
        "holder (this process, not counted) shared with it: zero-copy views of one sealed "
        "segment; the daemon is counted. private: each reads the prompt file into its own "
        "bytes object (plain Python, agentmem not imported). total_pss_bytes = sum over the "
        "processes (+ daemon) of PSS after loading minus PSS before (the prompt's cost); "
        "raw_* are the plain sums. machine_shmem_delta_bytes: /proc/meminfo Shmem over the "
        "same interval (machine-wide, a cross-check for segment pages no process maps). "
        "daemon_pss_anon_delta_bytes: the daemon's heap growth for the prompt, mostly its "
        "index of daemon_chunks chunks (daemon_metadata_bytes_estimate: the store's own "
        "estimate of that index).",
        "prompt_bytes": len(prompt),
        "agentmem": shared,
        "private": private,
        "agentmem_vs_private": round(shared["total_pss_bytes"] / private["total_pss_bytes"], 4),
    }
