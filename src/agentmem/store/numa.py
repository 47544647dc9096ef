"""Far memory: find a CPU-less NUMA node and bind mappings to it with ``mbind(2)``.

Why a NUMA node: Linux exposes CXL-attached memory (and other far memory: persistent memory in
system-RAM mode, memory on another socket that has no cores) as a NUMA node that has memory but
no CPUs. Content the store demotes but does not compress can live there: it stays a plain
mapping that readers use zero-copy, at a higher latency, in memory cheaper than local DRAM.

This module is the detection and binding half of that seam. The store decides what goes there;
this module only says whether such a node exists and binds a mapping's pages to it.

* :func:`read_topology` reads ``/sys/devices/system/node/node*/`` (``cpulist`` and ``meminfo``).
  No node directory (a kernel without NUMA, some containers) is an empty topology, not an
  error; a node whose files cannot be read or parsed is skipped and logged at debug level.
* :class:`FarMemory` calls ``mbind(addr, len, MPOL_BIND, {node}, ..., MPOL_MF_MOVE)`` through
  ``libc.syscall``: Python has no binding for it and libnuma is not a dependency. On a memfd
  (``store.segments``) the kernel keeps the policy with the file (tmpfs "shared policy"), so
  pages allocated later through any mapping of that range should follow it too (kernel
  documentation; not observable on a one-node machine). ``MPOL_MF_MOVE`` migrates pages
  already touched, when only this process maps them.

What is tested, and what is not: the topology parser runs against simulated sysfs trees
(tests/store/test_numa.py); the binding runs with an injected ``mbind`` and also with the real
syscall on node 0 of the test machine (it must succeed) and on a node that does not exist (it
must fail with ``EINVAL``). No CXL hardware or multi-node machine is available here, so binding
to a real far node, and the latency or placement that results, has never been measured.

Leaf module of the store layer: standard library only.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import mmap
import os
import pathlib
import platform
import re
import struct
from collections.abc import Callable

log = logging.getLogger(__name__)

PAGE = mmap.PAGESIZE

#: ``mbind`` syscall number per ``platform.machine()`` (asm/unistd.h; libc exports no wrapper).
SYS_MBIND = {"x86_64": 237, "aarch64": 235}

#: ``mode`` of ``mbind``: allocate only from the nodes in the mask (linux/mempolicy.h).
MPOL_BIND = 2

#: ``flags`` of ``mbind``: also migrate pages already allocated (those mapped by this process
#: only). Without it the policy would govern only pages touched after the call.
MPOL_MF_MOVE = 2

#: Bits of a C ``unsigned long`` (a word of mbind's node mask).
_ULONG_BITS = struct.calcsize("L") * 8

_CPU_RANGE = re.compile(r"(\d+)(?:-(\d+))?")
_NODE_DIR = re.compile(r"node(\d+)")


@dataclasses.dataclass(frozen=True, slots=True)
class NumaNode:
    """One NUMA node as sysfs describes it."""

    node: int
    """The node number (``N`` of ``nodeN``)."""
    cpus: tuple[int, ...]
    """CPUs of the node, ascending, from ``nodeN/cpulist``; empty for a CPU-less node."""
    mem_total_bytes: int
    """Memory of the node, from the ``MemTotal`` line of ``nodeN/meminfo`` (kB there)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Topology:
    """The NUMA nodes of the machine that could be read, by ascending node number."""

    nodes: tuple[NumaNode, ...]
    """Every readable node; empty when sysfs has no node directory."""

    @property
    def far_nodes(self) -> tuple[NumaNode, ...]:
        """Nodes with memory and no CPUs: where far memory (CXL) shows up."""
        return tuple(n for n in self.nodes if n.mem_total_bytes > 0 and not n.cpus)


def parse_cpulist(text: str) -> tuple[int, ...]:
    """Parse a kernel CPU list (``"0-3,8,10-11"``) into ascending, distinct CPU numbers.

    An empty list (``""`` or ``"\\n"``, as a CPU-less node's ``cpulist`` reads) is ``()``.
    Raises ``ValueError`` naming the offending part for anything else that is not
    ``N`` or ``N-M`` (with ``N <= M``) separated by commas.
    """
    text = text.strip()
    if not text:
        return ()
    cpus: set[int] = set()
    for part in text.split(","):
        match = _CPU_RANGE.fullmatch(part)
        if match is None:
            raise ValueError(f"malformed CPU list {text!r}: {part!r} is not N or N-M")
        first = int(match[1])
        last = first if match[2] is None else int(match[2])
        if last < first:
            raise ValueError(f"malformed CPU list {text!r}: range {part!r} runs backwards")
        cpus.update(range(first, last + 1))
    return tuple(sorted(cpus))


def _mem_total_bytes(meminfo: str, node: int) -> int:
    """The ``Node N MemTotal: K kB`` line of a node's ``meminfo``, in bytes."""
    match = re.search(rf"^Node\s+{node}\s+MemTotal:\s+(\d+)\s+kB\s*$", meminfo, re.MULTILINE)
    if match is None:
        raise ValueError(f"no 'Node {node} MemTotal: ... kB' line")
    return int(match[1]) * 1024


def _read_node(path: pathlib.Path, node: int) -> NumaNode:
    """One node directory; raises ``OSError`` or ``ValueError`` when it cannot be used."""
    cpus = parse_cpulist((path / "cpulist").read_text())
    mem = _mem_total_bytes((path / "meminfo").read_text(), node)
    return NumaNode(node=node, cpus=cpus, mem_total_bytes=mem)


def read_topology(sysfs: str | os.PathLike[str] = "/sys") -> Topology:
    """Read the NUMA nodes under ``<sysfs>/devices/system/node``. Never raises for sysfs content.

    A missing or unlistable directory gives ``Topology(())``; a node whose ``cpulist`` or
    ``meminfo`` is missing, unreadable or malformed is left out (logged at debug level).
    """
    root = pathlib.Path(sysfs, "devices", "system", "node")
    try:
        entries = list(root.iterdir())
    except OSError as exc:
        log.debug("no NUMA topology at %s: %s", root, exc)
        return Topology(())
    numbered = []
    for entry in entries:
        match = _NODE_DIR.fullmatch(entry.name)
        if match is not None:
            numbered.append((int(match[1]), entry))
    nodes = []
    for node, path in sorted(numbered):
        try:
            nodes.append(_read_node(path, node))
        except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            log.debug("NUMA node %d skipped: %s", node, exc)
    return Topology(tuple(nodes))


def _largest_far(topology: Topology) -> NumaNode | None:
    """The far node with the most memory (the lowest number on a tie), or None."""
    far = topology.far_nodes
    return max(far, key=lambda n: (n.mem_total_bytes, -n.node)) if far else None


def _syscall_mbind(addr: int, length: int, node: int) -> None:
    """``mbind(addr, length, MPOL_BIND, {node}, maxnode, MPOL_MF_MOVE)``; OSError on failure."""
    import ctypes  # here and in bind: only a machine with a far node needs it (~0.4 MiB PSS)

    machine = platform.machine()
    nr = SYS_MBIND.get(machine)
    if nr is None:
        raise OSError(errno.ENOSYS, f"mbind: syscall number unknown on {machine}")
    words = node // _ULONG_BITS + 1
    mask = (ctypes.c_ulong * words)()
    mask[node // _ULONG_BITS] = 1 << (node % _ULONG_BITS)
    # The kernel reads maxnode - 1 bits of the mask (a long-standing off-by-one that every
    # caller, libnuma included, compensates for), hence the + 1.
    maxnode = words * _ULONG_BITS + 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    result = libc.syscall(
        ctypes.c_long(nr),
        ctypes.c_void_p(addr),
        ctypes.c_ulong(length),
        ctypes.c_int(MPOL_BIND),
        ctypes.byref(mask),
        ctypes.c_ulong(maxnode),
        ctypes.c_uint(MPOL_MF_MOVE),
    )
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mbind to NUMA node {node}: {os.strerror(err)}")


class FarMemory:
    """Binds memory ranges to one far node with ``mbind(2)``.

    ``mbind`` is the seam: ``mbind(addr, length, node)`` binds ``length`` bytes at the
    page-aligned ``addr`` to ``node`` or raises ``OSError``; the default is the real syscall.

    Not thread-safe (``bound_bytes`` is a plain counter). Holds no reference to the mappings it
    binds: the caller owns them, and the binding ends when the pages are unmapped.
    """

    __slots__ = ("_mbind", "bound_bytes", "node")

    def __init__(self, node: int, *, mbind: Callable[[int, int, int], None] | None = None) -> None:
        if node < 0:
            raise ValueError(f"NUMA node must be >= 0, not {node}")
        self.node = node
        #: Page-rounded bytes bound by successful :meth:`bind` calls, summed over calls (a
        #: range bound twice counts twice).
        self.bound_bytes = 0
        self._mbind = _syscall_mbind if mbind is None else mbind

    def bind(self, buf: mmap.mmap, length: int | None = None) -> None:
        """Bind the first ``length`` bytes of ``buf`` (all of it by default) to this node.

        ``length`` is rounded up to whole pages. ``buf`` must be a writable mapping (ctypes
        takes its address through a writable export; a read-only one raises ``TypeError``);
        the export is released before returning, so ``buf`` can still be closed or resized.
        Raises ``ValueError`` when ``length`` is not in ``1..len(buf)`` and ``OSError`` from
        ``mbind`` (``EINVAL`` for a node without memory, ``ENOSYS``/``EPERM`` where the
        syscall is unavailable or filtered); ``bound_bytes`` only grows on success.
        """
        size = len(buf) if length is None else length
        if not 0 < size <= len(buf):
            raise ValueError(f"bind length {size} out of range 1..{len(buf)}")
        import ctypes

        first = ctypes.c_char.from_buffer(buf)
        try:
            addr = ctypes.addressof(first)
        finally:
            del first  # drops the buffer export; a live one makes mmap.close() raise
        if addr % PAGE:
            raise ValueError(f"mapping address {addr:#x} is not page-aligned")
        rounded = -(-size // PAGE) * PAGE
        self._mbind(addr, rounded, self.node)
        self.bound_bytes += rounded

    @classmethod
    def detect(
        cls,
        sysfs: str | os.PathLike[str] = "/sys",
        *,
        mbind: Callable[[int, int, int], None] | None = None,
    ) -> FarMemory | None:
        """A binder for the far node with the most memory, or None (the usual machine)."""
        far = _largest_far(read_topology(sysfs))
        return None if far is None else cls(far.node, mbind=mbind)


def describe(topology: Topology) -> str:
    """One line for ``stats``: the far node :meth:`FarMemory.detect` would pick, or why none.

    It reports what was detected, not whether the store binds anything there.
    """
    far = _largest_far(topology)
    if far is None:
        count = len(topology.nodes)
        if count == 0:
            return "far memory: off (no NUMA node visible in sysfs)"
        plural = "" if count == 1 else "s"
        return f"far memory: off (no CPU-less NUMA node; {count} node{plural})"
    others = len(topology.far_nodes)
    extra = f"; {others} far nodes" if others > 1 else ""
    gib = far.mem_total_bytes / 2**30
    return f"far memory: node {far.node} ({gib:.1f} GiB, no CPUs{extra})"
