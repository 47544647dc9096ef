"""What a process costs the machine, read from ``/proc``: PSS first, fds and CPU time beside it.

Memory is measured as PSS (``/proc/PID/smaps_rollup``): every page a process maps counts
``1/n`` in each of the ``n`` processes mapping it, so a sum over processes counts a shared page
once. RSS counts it ``n`` times (DESIGN.md, "Sharing"). A page nobody maps (a memfd the daemon
holds but has not mapped) is in no process's PSS; :func:`shmem_bytes` is the machine-wide
cross-check for it.

Linux only. Every reader raises ``OSError`` (``FileNotFoundError`` for a gone process).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

KIB = 1024


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
