"""Far-memory seam: topology from simulated sysfs trees, binding with a recorded and a real mbind.

No CXL hardware here: far nodes exist only in the simulated trees. The real syscall is exercised
on node 0 of this machine (must succeed) and on a node that does not exist (must fail).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import pathlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentmem.store.numa import (
    PAGE,
    FarMemory,
    NumaNode,
    Topology,
    describe,
    parse_cpulist,
    read_topology,
)

GIB = 2**30


def add_node(
    sysfs: pathlib.Path, node: int, cpulist: str | None, mem_kb: int | None
) -> pathlib.Path:
    """Write ``nodeN/cpulist`` and ``nodeN/meminfo`` as the kernel does (None: no such file)."""
    path = sysfs / "devices" / "system" / "node" / f"node{node}"
    path.mkdir(parents=True)
    if cpulist is not None:
        (path / "cpulist").write_text(cpulist + "\n")
    if mem_kb is not None:
        (path / "meminfo").write_text(
            f"Node {node} MemTotal:       {mem_kb} kB\n"
            f"Node {node} MemFree:        {mem_kb // 2} kB\n"
            f"Node {node} MemUsed:        {mem_kb - mem_kb // 2} kB\n"
        )
    return path


@pytest.fixture
def cxl_sysfs(tmp_path: pathlib.Path) -> pathlib.Path:
    """A local node 0 (2 CPUs, 16 GiB) and a CPU-less node 1 (64 GiB), as CXL shows up."""
    add_node(tmp_path, 0, "0-1", 16 * GIB // 1024)
    add_node(tmp_path, 1, "", 64 * GIB // 1024)
    node_dir = tmp_path / "devices" / "system" / "node"
    for name in ("online", "possible", "has_cpu"):  # siblings that are not node directories
        (node_dir / name).write_text("0-1\n")
    return tmp_path


class Recorder:
    """An mbind that records its calls instead of binding."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int]] = []

    def __call__(self, addr: int, length: int, node: int) -> None:
        self.calls.append((addr, length, node))


# --- topology -------------------------------------------------------------------------------


def test_topology_finds_the_cpu_less_node(cxl_sysfs: pathlib.Path) -> None:
    topo = read_topology(cxl_sysfs)
    assert topo.nodes == (
        NumaNode(node=0, cpus=(0, 1), mem_total_bytes=16 * GIB),
        NumaNode(node=1, cpus=(), mem_total_bytes=64 * GIB),
    )
    assert [n.node for n in topo.far_nodes] == [1]
    assert describe(topo) == "far memory: node 1 (64.0 GiB, no CPUs)"


def test_nodes_are_ordered_by_number_not_by_name(tmp_path: pathlib.Path) -> None:
    for node in (10, 2, 0):
        add_node(tmp_path, node, f"{node}", 1024)
    assert [n.node for n in read_topology(tmp_path).nodes] == [0, 2, 10]


def test_no_node_directory_is_an_empty_topology(tmp_path: pathlib.Path) -> None:
    topo = read_topology(tmp_path)
    assert topo == Topology(())
    assert topo.far_nodes == ()
    assert FarMemory.detect(tmp_path) is None
    assert describe(topo) == "far memory: off (no NUMA node visible in sysfs)"


def test_single_node_machine_has_no_far_memory(tmp_path: pathlib.Path) -> None:
    add_node(tmp_path, 0, "0-3", 8 * GIB // 1024)
    topo = read_topology(tmp_path)
    assert len(topo.nodes) == 1
    assert topo.far_nodes == ()
    assert FarMemory.detect(tmp_path) is None
    assert describe(topo) == "far memory: off (no CPU-less NUMA node; 1 node)"


def test_cpu_less_node_without_memory_is_not_far(tmp_path: pathlib.Path) -> None:
    add_node(tmp_path, 0, "0-1", 1024)
    add_node(tmp_path, 1, "", 0)
    topo = read_topology(tmp_path)
    assert len(topo.nodes) == 2
    assert topo.far_nodes == ()
    assert describe(topo) == "far memory: off (no CPU-less NUMA node; 2 nodes)"


def test_malformed_cpulist_skips_that_node_only(tmp_path: pathlib.Path) -> None:
    add_node(tmp_path, 0, "0-1", 1024)
    add_node(tmp_path, 1, "0-x", 4096)
    add_node(tmp_path, 2, "", 2048)
    assert [n.node for n in read_topology(tmp_path).nodes] == [0, 2]


def test_node_without_meminfo_is_skipped(tmp_path: pathlib.Path) -> None:
    add_node(tmp_path, 0, "0-1", 1024)
    add_node(tmp_path, 1, "", None)
    topo = read_topology(tmp_path)
    assert [n.node for n in topo.nodes] == [0]
    assert FarMemory.detect(tmp_path) is None


def test_meminfo_without_memtotal_or_for_another_node_is_skipped(tmp_path: pathlib.Path) -> None:
    (add_node(tmp_path, 0, "0", None) / "meminfo").write_text("Node 0 MemFree: 5 kB\n")
    (add_node(tmp_path, 1, "", None) / "meminfo").write_text("Node 7 MemTotal: 5 kB\n")
    (add_node(tmp_path, 2, "", None) / "meminfo").write_bytes(b"\xff\xfe")
    assert read_topology(tmp_path).nodes == ()


def test_detect_picks_the_far_node_with_most_memory(tmp_path: pathlib.Path) -> None:
    add_node(tmp_path, 0, "0-7", 32 * GIB // 1024)
    add_node(tmp_path, 1, "", 16 * GIB // 1024)
    add_node(tmp_path, 2, "", 64 * GIB // 1024)
    add_node(tmp_path, 3, "", 64 * GIB // 1024)  # a tie goes to the lower number
    recorder = Recorder()
    far = FarMemory.detect(tmp_path, mbind=recorder)
    assert far is not None
    assert far.node == 2
    assert far.bound_bytes == 0
    assert (
        describe(read_topology(tmp_path)) == "far memory: node 2 (64.0 GiB, no CPUs; 3 far nodes)"
    )


def test_detect_on_this_machine_does_not_raise() -> None:
    # Whatever this machine is (usually one node, or no sysfs node directory in a container),
    # detection reads it without raising and describes it in one line.
    topo = read_topology()
    line = describe(topo)
    assert line.startswith("far memory: ")
    assert "\n" not in line
    assert (FarMemory.detect() is None) == (topo.far_nodes == ())


# --- parse_cpulist --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("", ()),
        ("\n", ()),
        ("0", (0,)),
        ("0-2,5\n", (0, 1, 2, 5)),
        ("0-3,8,10-11", (0, 1, 2, 3, 8, 10, 11)),
        ("4-4", (4,)),
        ("8,0-1", (0, 1, 8)),
    ],
)
def test_parse_cpulist(text: str, cpus: tuple[int, ...]) -> None:
    assert parse_cpulist(text) == cpus


@pytest.mark.parametrize("text", ["x", "0-", "-1", "3-1", "0,,1", "0-1-2", "0 - 1", "1,a", ","])
def test_parse_cpulist_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError, match="malformed CPU list"):
        parse_cpulist(text)


def render_ranges(cpus: set[int]) -> str:
    """Render CPUs as the kernel does: runs of consecutive numbers as ``a-b``, others alone."""
    parts: list[str] = []
    ordered = sorted(cpus)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


@given(st.sets(st.integers(min_value=0, max_value=4095), max_size=200), st.booleans())
def test_parse_cpulist_round_trips_ranges(cpus: set[int], newline: bool) -> None:
    text = render_ranges(cpus) + ("\n" if newline else "")
    assert parse_cpulist(text) == tuple(sorted(cpus))


# --- FarMemory.bind with a recorded mbind ---------------------------------------------------


def test_bind_passes_page_aligned_address_and_rounded_length() -> None:
    recorder = Recorder()
    far = FarMemory(1, mbind=recorder)
    buf = mmap.mmap(-1, 5 * PAGE)
    try:
        expected_addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        far.bind(buf)
        far.bind(buf, 1)
        far.bind(buf, PAGE + 1)
        assert recorder.calls == [
            (expected_addr, 5 * PAGE, 1),
            (expected_addr, PAGE, 1),
            (expected_addr, 2 * PAGE, 1),
        ]
        assert all(addr % PAGE == 0 for addr, _, _ in recorder.calls)
        assert far.bound_bytes == 8 * PAGE
    finally:
        buf.close()  # raises BufferError if bind left the ctypes export alive
    assert buf.closed


def test_bind_leaves_the_mapping_resizable() -> None:
    far = FarMemory(0, mbind=Recorder())
    buf = mmap.mmap(-1, 2 * PAGE)
    far.bind(buf)
    buf.resize(4 * PAGE)
    assert len(buf) == 4 * PAGE
    buf.close()


def test_bind_rejects_bad_lengths_without_calling_mbind() -> None:
    recorder = Recorder()
    far = FarMemory(1, mbind=recorder)
    with mmap.mmap(-1, PAGE) as buf:
        for length in (0, -1, PAGE + 1):
            with pytest.raises(ValueError, match="bind length"):
                far.bind(buf, length)
    assert recorder.calls == []
    assert far.bound_bytes == 0


def test_bind_failure_does_not_count() -> None:
    def failing(addr: int, length: int, node: int) -> None:
        raise OSError(errno.EINVAL, "no such node")

    far = FarMemory(1, mbind=failing)
    with mmap.mmap(-1, PAGE) as buf, pytest.raises(OSError, match="no such node"):
        far.bind(buf)
    assert far.bound_bytes == 0


def test_bind_needs_a_writable_mapping() -> None:
    recorder = Recorder()
    with mmap.mmap(-1, PAGE, prot=mmap.PROT_READ) as ro, pytest.raises(TypeError):
        FarMemory(1, mbind=recorder).bind(ro)
    assert recorder.calls == []


def test_negative_node_is_rejected() -> None:
    with pytest.raises(ValueError, match="NUMA node"):
        FarMemory(-1)


# --- FarMemory.bind with the real syscall ---------------------------------------------------


def real_mbind_or_skip(buf: mmap.mmap) -> FarMemory:
    """Bind ``buf`` to node 0 with the real mbind; skip where the syscall cannot be used."""
    if not os.path.isdir("/sys/devices/system/node/node0"):
        pytest.skip(reason="no /sys/devices/system/node/node0: kernel without NUMA sysfs")
    far = FarMemory(0)
    try:
        far.bind(buf)
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EPERM):
            pytest.skip(reason=f"mbind unavailable here ({errno.errorcode[exc.errno]})")
        raise
    return far


def test_real_mbind_to_node_0_succeeds_and_moves_touched_pages() -> None:
    buf = mmap.mmap(-1, 3 * PAGE)
    buf[:] = b"x" * len(buf)  # touched first, so MPOL_MF_MOVE has pages to consider
    far = real_mbind_or_skip(buf)
    assert far.bound_bytes == 3 * PAGE
    buf[0:1] = b"y"  # still a working mapping
    assert buf[0:2] == b"yx"
    buf.close()


def test_real_mbind_binds_a_memfd_mapping() -> None:
    fd = os.memfd_create("agentmem-numa-test", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, 2 * PAGE)
        buf = mmap.mmap(fd, 2 * PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        far = real_mbind_or_skip(buf)
        assert far.bound_bytes == 2 * PAGE
        buf.close()
    finally:
        os.close(fd)


def test_real_mbind_to_a_missing_node_raises_einval() -> None:
    with mmap.mmap(-1, PAGE) as probe:
        real_mbind_or_skip(probe)  # skip first where mbind cannot run at all
    if os.path.isdir("/sys/devices/system/node/node63"):
        pytest.skip(reason="this machine has a node 63")
    far = FarMemory(63)
    with mmap.mmap(-1, PAGE) as buf, pytest.raises(OSError, match="mbind to NUMA node 63") as info:
        far.bind(buf)
    assert info.value.errno == errno.EINVAL
    assert far.bound_bytes == 0
