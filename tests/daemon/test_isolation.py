"""Isolation, attacked for real: other uids, other agents' handles, hashes, shared segments.

Each test plays the attacker against a real daemon over its real socket: a process that drops
to ``nobody``, an agent guessing handle numbers, a request naming content by its hash, a client
trying every way the kernel offers to change a sealed segment it was handed.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import mmap
import os
import stat
from collections.abc import Callable, Iterator

import pytest

import agentmem
from agentmem.client.transport import UnixSocketTransport
from agentmem.daemon.service import HANDLERS, Service
from agentmem.errors import (
    AgentExists,
    DaemonUnavailable,
    InvalidArgument,
    UnknownAgent,
    UnknownHandle,
)
from agentmem.hashing import chunk_id
from agentmem.protocol import messages as m
from agentmem.stats import StoreStats
from agentmem.store.segments import SEALS, SHARE_SEALS
from agentmem.testing import DaemonProcess
from tests.conftest import text
from tests.daemon.conftest import Channel, Child, Closed, RawPeer, is_reset, needs_root, nobody

# --- another uid ----------------------------------------------------------------------------


def _connect_as_other_user(path: str) -> Callable[[Channel], object]:
    def attempt(channel: Channel) -> object:
        try:
            agentmem.connect(path, name="intruder")
        except DaemonUnavailable as exc:
            cause = exc.__cause__
            return ("unavailable", cause.errno if isinstance(cause, OSError) else None)
        return ("served", None)

    return attempt


@needs_root
def test_other_uid_cannot_reach_a_private_daemon(daemon: DaemonProcess) -> None:
    """The 0700 runtime directory stops another uid before the socket: connect gets EACCES."""
    assert stat.S_IMODE(os.stat(daemon.dir).st_mode) == 0o700
    child = Child(_connect_as_other_user(daemon.socket), user=nobody())
    assert child.recv() == ("unavailable", errno.EACCES)
    assert child.join() == 0


@needs_root
def test_peercred_refuses_another_uid_even_through_an_open_directory() -> None:
    """With the directory and socket opened to everyone, SO_PEERCRED alone refuses the peer:
    its connect succeeds, then the daemon closes the connection without serving it."""

    def intrude(channel: Channel) -> object:
        peer = RawPeer(socket_path)
        try:
            peer.hello("intruder")
        except Closed:
            return "closed"
        except OSError as exc:
            return "closed" if is_reset(exc) else f"error {exc!r}"
        finally:
            peer.close()
        return "served"

    with DaemonProcess() as d:
        socket_path = d.socket
        os.chmod(d.dir, 0o711)
        os.chmod(d.socket, 0o666)
        child = Child(intrude, user=nobody())
        assert child.recv() == "closed"
        assert child.join() == 0
        assert f"refused a connection: uid {nobody().pw_uid} may not use this daemon" in d.log()
        with agentmem.connect(d.socket, name="owner") as owner:  # still serving its owner
            assert owner.get_stats().agents == 1  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def multi_user() -> Iterator[DaemonProcess]:
    """A daemon that also serves ``nobody``, on a socket in a directory it creates itself."""
    d = DaemonProcess(extra_args=["--allow-uid", str(nobody().pw_uid)])
    os.chmod(d.dir, 0o711)  # the parent: traversable, not listable
    d.dir = os.path.join(d.dir, "run")  # absent: the daemon creates it for multi-user mode
    d.socket = os.path.join(d.dir, "agentmem.sock")
    with d:
        yield d


@needs_root
def test_multi_user_mode_opens_the_socket_but_not_the_directory(multi_user: DaemonProcess) -> None:
    assert stat.S_IMODE(os.stat(multi_user.dir).st_mode) == 0o711
    assert stat.S_IMODE(os.stat(multi_user.socket).st_mode) == 0o666


@needs_root
def test_each_uid_gets_its_own_domain_without_cross_uid_dedup(multi_user: DaemonProcess) -> None:
    prompt = text(11, 100_000)  # hot and mapped by readers
    note = text(12, 2_000)  # answered inline
    with agentmem.connect(multi_user.socket, name="root-agent") as mine:
        handles = [mine.alloc_smu("system_prompt", prompt), mine.alloc_smu("tool_result", note)]
        before = mine.get_stats()
        assert isinstance(before, StoreStats)
        assert before.unique_bytes == len(prompt) + len(note)

        def other_user(channel: Channel) -> object:
            with agentmem.connect(multi_user.socket, name="nobody-agent") as theirs:
                hs = [
                    theirs.alloc_smu("system_prompt", prompt),
                    theirs.alloc_smu("tool_result", note),
                ]
                contents = [bytes(theirs.read(h)) for h in hs]
                s = theirs.get_stats()
                assert isinstance(s, StoreStats)
                attempts: list[Callable[[], object]] = [
                    functools.partial(theirs.share_content, hs[0], "root-agent"),
                    functools.partial(theirs.get_stats, "root-agent"),
                    *(functools.partial(theirs.read, agentmem.Handle(h)) for h in handles),
                ]
                outcomes = []
                for attempt in attempts:
                    try:
                        attempt()
                        outcomes.append("allowed")
                    except (UnknownAgent, UnknownHandle) as exc:
                        outcomes.append(type(exc).__name__)
                # A number of the other domain may happen to be one of its own: that is its
                # own content then, not the other uid's.
                coincide = sorted(set(handles) & set(hs))
                channel.send(
                    {
                        "contents": contents,
                        "agents": [a.name for a in s.per_agent],
                        "unique_bytes": s.unique_bytes,
                        "handles": s.handles,
                        "uid": os.getuid(),
                        "attempts": outcomes,
                        "coincide": coincide,
                    }
                )
                channel.wait()  # hold the content while the owner looks at its own domain
            return None

        child = Child(other_user, user=nobody())
        seen = child.recv()
        assert seen["uid"] == nobody().pw_uid
        assert seen["contents"] == [prompt, note]
        assert seen["agents"] == ["nobody-agent"]  # only its own domain's agents
        assert seen["unique_bytes"] == len(prompt) + len(note)  # its own copy
        assert seen["handles"] == 2
        # Names and handles of the other domain do not exist for it.
        assert seen["coincide"] == []  # 40-bit random handle bases: practically never
        assert seen["attempts"] == [
            "UnknownAgent",
            "UnknownAgent",
            "UnknownHandle",
            "UnknownHandle",
        ]

        during = mine.get_stats()
        assert isinstance(during, StoreStats)
        assert during.unique_bytes == before.unique_bytes  # no dedup against the other uid
        assert during.physical_bytes == before.physical_bytes
        assert during.logical_bytes == before.logical_bytes
        assert [a.name for a in during.per_agent] == ["root-agent"]
        child.release()
        assert child.recv() is None
        assert child.join() == 0
        assert [bytes(mine.read(h)) for h in handles] == [prompt, note]


# --- another agent's handles ----------------------------------------------------------------


@pytest.fixture
def victim_and_thief(daemon: DaemonProcess) -> Iterator[tuple[RawPeer, RawPeer]]:
    with RawPeer(daemon.socket) as victim, RawPeer(daemon.socket) as thief:
        victim.hello("victim")
        thief.hello("thief")
        yield victim, thief


def test_agent_cannot_use_another_agents_handle(
    victim_and_thief: tuple[RawPeer, RawPeer],
) -> None:
    victim, thief = victim_and_thief
    secret = text(21, 50_000)
    blob = victim.call("alloc_smu", type="tool_result", data=secret)
    conv = victim.call("alloc_smu", type="conversation", messages=[b"private"])
    attempts: list[tuple[str, dict[str, object]]] = [
        ("read", {}),
        ("release", {}),
        ("share_content", {"target": "thief"}),
        ("fork", {}),
        ("mark_hot", {}),
        ("demote", {}),
        ("length", {}),
        ("messages", {}),
        ("append", {"message": b"injected"}),
    ]
    for h in (blob, conv):
        for op, args in attempts:
            with pytest.raises(UnknownHandle):
                thief.call(op, handle=h, **args)
    assert thief.call("handles") == []
    assert "extents" in victim.call("read", handle=blob)  # all still the victim's
    assert victim.call("messages", handle=conv)["messages"] == [b"private"]
    assert victim.call("length", handle=conv) == 1


def test_guessing_handle_numbers_finds_only_ones_own(
    victim_and_thief: tuple[RawPeer, RawPeer],
) -> None:
    victim, thief = victim_and_thief
    own: set[int] = set()
    theirs: dict[int, bytes] = {}
    for i in range(600):  # interleaved, so the thief's numbers sit among the victim's
        data = b"%d:" % i + text(i, 64)
        if i % 3 == 0:
            own.add(thief.call("alloc_smu", type="blob", data=data))
        else:
            theirs[victim.call("alloc_smu", type="blob", data=data)] = data
    # Small numbers, and every number around the thief's own (handles of one domain come from
    # one sequence, so the victim's sit right between them).
    guesses = set(range(1, 2001)) | set(range(min(own) - 1000, max(own) + 1000))
    assert set(theirs) <= guesses
    readable = set()
    for h in sorted(guesses):
        reply = thief.request("read", handle=h)
        if "ok" in reply:
            readable.add(h)
        else:
            assert reply["err"] == UnknownHandle.code, reply
    assert readable == own
    for h in sorted(guesses - own):  # releasing blindly touches nothing of the victim's
        assert thief.request("release", handle=h)["err"] == UnknownHandle.code
    for h, data in theirs.items():
        assert victim.call("read", handle=h) == {"data": data}


def test_agent_names_and_pids_are_not_taken_from_the_client(daemon: DaemonProcess) -> None:
    with RawPeer(daemon.socket) as first, RawPeer(daemon.socket) as impostor:
        first.hello("planner")
        reply = impostor.request(
            m.OP_HELLO, version=m.PROTOCOL_VERSION, name="planner", pid=1, uid=0
        )
        assert reply["err"] == AgentExists.code  # a live agent's name cannot be taken over
        info = impostor.call(m.OP_HELLO, version=m.PROTOCOL_VERSION, name="other", pid=1)
        assert info["pid"] == os.getpid()  # the kernel's word (SO_PEERCRED), not the claim


# --- content by hash ------------------------------------------------------------------------

#: Every field an operation may read. None names content: "handle" is a per-connection
#: capability checked against the session's own table; the rest are arguments.
ALLOWED_FIELDS = frozenset(
    {
        "handle",
        "type",
        "data",
        "messages",
        "message",
        "size",
        "target",
        "hot",
        "agent",
        "state",
        "importance",
        "start",
        "stop",
        "views",  # messages: extents of the handle's own conversation segments
        "stack",  # alloc_smu: the caller's collapsed Python stack (allocation profile)
        "sample",
        "daemon",  # get_stats: add the daemon section
        "recent",  # get_stats: the last tick's statistics
        "reset",  # alloc_profile
        "repair",  # check: fix refcount drift (names no content)
        # publish/unpublish/open: a name the publisher chose, granting what it published;
        # never a content id (publishing is an explicit grant, DESIGN.md's "published domain")
        "name",
    }
)
HASH_FIELDS = ("hash", "id_hash", "digest", "chunk", "chunk_id", "cid", "content_id", "smu", "key")


class _RecordingBody(dict[str, object]):
    """A request body that notes every field a handler looks at."""

    def __init__(self, **fields: object) -> None:
        super().__init__(**fields)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> object:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: object = None) -> object:
        self.read.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)

    def __iter__(self) -> Iterator[str]:
        self.read.add("*every field*")
        return super().__iter__()

    def keys(self):  # type: ignore[no-untyped-def]  # dict's own view types
        self.read.add("*every field*")
        return super().keys()

    def items(self):  # type: ignore[no-untyped-def]
        self.read.add("*every field*")
        return super().items()


def test_no_operation_reads_a_field_that_could_name_content() -> None:
    """Run every handler (in-process, on a real store) with a body holding every known
    argument plus the content's hash under many names; record what each one reads."""
    svc = Service()
    session = svc.open(os.getpid(), os.getuid())
    svc.handle(session, m.hello(0, "prober"), ())
    content = text(31, 30_000)
    cid = chunk_id(content)
    read_by: dict[str, set[str]] = {}
    for op, handler in HANDLERS.items():
        for smu_type in ("tool_result", "conversation"):
            blob = svc.handle(session, m.request("alloc_smu", 1, type="blob", data=content), ())
            conv = svc.handle(
                session, m.request("alloc_smu", 2, type="conversation", messages=[b"m"]), ()
            )
            h = (conv if smu_type == "conversation" else blob).body["ok"]
            body = _RecordingBody(
                handle=h,
                type=smu_type,
                data=b"new",
                messages=[b"x"],
                message=b"y",
                size=3,
                target="prober",
                hot=True,
                agent="prober",
                state="active",
                importance=1,
                start=0,
                stop=1,
                stack="probe.py:main",
                sample=1,
                daemon=True,
                recent=True,
                reset=True,
                **dict.fromkeys(HASH_FIELDS, cid),
            )
            fd_variants: list[tuple[int, ...]] = [()]
            if op == "alloc_smu":
                memfd = os.memfd_create("probe", os.MFD_ALLOW_SEALING)
                os.write(memfd, b"new")
                fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, SHARE_SEALS | fcntl.F_SEAL_WRITE)
                fd_variants.append((memfd,))
            for fds in fd_variants:
                try:
                    handler(svc, session, body, fds)
                except agentmem.AgentmemError:
                    pass
                finally:
                    for fd in fds:
                        os.close(fd)
            read_by.setdefault(op, set()).update(body.read)
    svc.close_all()
    strays = {op: sorted(fields - ALLOWED_FIELDS) for op, fields in read_by.items()}
    assert {op: f for op, f in strays.items() if f} == {}
    assert read_by["read"] == {"handle"}


def test_a_hash_gets_nothing(daemon: DaemonProcess) -> None:
    """Knowing the hash of another agent's content, try it under every field of every op."""
    secrets = [text(41, 40_000), text(42, 1_000)]  # mapped and inline
    with RawPeer(daemon.socket) as owner, RawPeer(daemon.socket) as thief:
        owner.hello("owner")
        thief.hello("thief")
        for s in secrets:
            owner.call("alloc_smu", type="tool_result", data=s)
        for s in secrets:
            cid = chunk_id(s)
            reply = thief.request("read", hash=cid)
            assert reply["err"] == InvalidArgument.code  # no handle, no content
            assert "handle" in str(reply["msg"])
            for op in HANDLERS:
                for field in HASH_FIELDS:
                    args: dict[str, object] = {field: cid}
                    if op == "alloc_smu":
                        args["type"] = "tool_result"
                    ident = next(thief.ids)
                    thief.send_msg(m.request(op, ident, **args))
                    body, fds = thief.recv()
                    for fd in fds:
                        with mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ) as mp:
                            assert s not in bytes(mp)
                        os.close(fd)
                    assert s[:64] not in repr(body).encode(), (op, field)
        assert thief.call("handles") == []  # nothing was granted


# --- shared segments ------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
_MAP_FAILED = ctypes.c_void_p(-1).value
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_MADV_REMOVE = 9


def _libc_errno(rc: int) -> int:
    """0 if a libc call returning ``rc`` succeeded, else its errno."""
    return 0 if rc == 0 else ctypes.get_errno()


def _refused(fn: Callable[[], object]) -> int:
    """The errno ``fn`` failed with; 0 if it succeeded (the attack worked)."""
    try:
        fn()
    except OSError as exc:
        return exc.errno or -1
    return 0


@pytest.mark.parametrize(
    ("kind", "size", "seals"),
    [("system_prompt", 40_000, SHARE_SEALS), ("tool_result", 3 << 19, SEALS)],
    ids=["in-a-shared-segment", "in-a-segment-of-its-own"],
)
def test_received_segment_cannot_be_changed(
    daemon: DaemonProcess, kind: str, size: int, seals: int
) -> None:
    content = os.urandom(size)
    reader = agentmem.connect(daemon.socket, name="reader")
    held = reader.alloc_smu(kind, content)  # the attacker's copy is this very copy
    attacker = UnixSocketTransport(daemon.socket)  # what the client uses: fds as attachments
    try:
        m.raise_for_reply(attacker.request(m.hello(1, "attacker"))[0])
        reply, _ = attacker.request(m.request("alloc_smu", 2, type=kind, data=content))
        h = m.raise_for_reply(reply)
        reply, attachments = attacker.request(m.request("read", 3, handle=h))
        result = m.raise_for_reply(reply)
        assert isinstance(result, dict)
        assert len(result["map"]) == 1 and len(attachments) == 1
        (fd,) = attachments
        assert isinstance(fd, int)
        (seg_id, capacity), ((ext_seg, off, n),) = result["map"][0], result["extents"]
        assert ext_seg == seg_id and n == size
        try:
            assert fcntl.fcntl(fd, fcntl.F_GET_SEALS) == seals
            assert os.fstat(fd).st_size == capacity
            outcome = _attack_segment(fd, capacity, off)
            assert fcntl.fcntl(fd, fcntl.F_GET_SEALS) == seals
            assert os.fstat(fd).st_size == capacity
            with mmap.mmap(fd, capacity, mmap.MAP_SHARED, mmap.PROT_READ) as mp:
                assert mp[off : off + n] == content
        finally:
            os.close(fd)
        # The other agent holding the content reads it unchanged.
        assert bytes(reader.read(held)) == content
        # The daemon still appends to the segment it shared; new content reads back exactly.
        after = os.urandom(30_000)
        assert bytes(reader.read(reader.alloc_smu(kind, after))) == after
    finally:
        attacker.close()
        reader.close()
    eperm, eacces = errno.EPERM, errno.EACCES
    assert outcome == {
        "write": eperm,
        "pwrite": eperm,
        "ftruncate larger": eperm,
        "ftruncate smaller": eperm,
        "ftruncate to 0": eperm,
        "posix_fallocate": eperm,
        "punch a hole": eperm,
        "mmap writable shared": eperm,
        "mprotect a read-only shared map writable": eacces,
        "madvise MADV_REMOVE": eacces,
        "write through /proc/self/mem": errno.EIO,
        "reopen O_RDWR, write": eperm,
        "reopen O_RDWR, mmap writable shared": eperm,
        "add F_SEAL_WRITE": eperm,
        "add no seal (F_SEAL_SEAL is set)": eperm,
        "private copy-on-write mapping stays private": 0,
    }


def _attack_segment(fd: int, capacity: int, off: int) -> dict[str, int]:
    """Every way to change a memfd's bytes or size we know of; errno of each (0: it worked)."""
    out: dict[str, int] = {}
    out["write"] = _refused(lambda: os.write(fd, b"X"))
    out["pwrite"] = _refused(lambda: os.pwrite(fd, b"X", off))
    out["ftruncate larger"] = _refused(lambda: os.ftruncate(fd, capacity * 2))
    out["ftruncate smaller"] = _refused(lambda: os.ftruncate(fd, capacity // 2))
    out["ftruncate to 0"] = _refused(lambda: os.ftruncate(fd, 0))
    out["posix_fallocate"] = _refused(lambda: os.posix_fallocate(fd, 0, capacity * 2))
    page = off - off % mmap.PAGESIZE
    out["punch a hole"] = _libc_errno(
        _libc.fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, page, mmap.PAGESIZE)
    )
    out["mmap writable shared"] = _refused(
        lambda: mmap.mmap(fd, capacity, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    )
    addr = _libc.mmap(None, capacity, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    assert addr not in (None, _MAP_FAILED), os.strerror(ctypes.get_errno())
    try:
        out["mprotect a read-only shared map writable"] = _libc_errno(
            _libc.mprotect(addr, capacity, mmap.PROT_READ | mmap.PROT_WRITE)
        )
        out["madvise MADV_REMOVE"] = _libc_errno(
            _libc.madvise(addr + page, mmap.PAGESIZE, _MADV_REMOVE)
        )

        def poke() -> None:
            with open("/proc/self/mem", "r+b", buffering=0) as mem:
                mem.seek(addr + off)
                mem.write(b"X")

        out["write through /proc/self/mem"] = _refused(poke)
    finally:
        _libc.munmap(addr, capacity)
    rw = os.open(f"/proc/self/fd/{fd}", os.O_RDWR | os.O_CLOEXEC)  # root may reopen it...
    try:
        out["reopen O_RDWR, write"] = _refused(lambda: os.pwrite(rw, b"X", off))
        out["reopen O_RDWR, mmap writable shared"] = _refused(
            lambda: mmap.mmap(rw, capacity, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        )
    finally:
        os.close(rw)
    out["add F_SEAL_WRITE"] = _refused(
        lambda: fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE)
    )
    out["add no seal (F_SEAL_SEAL is set)"] = _refused(
        lambda: fcntl.fcntl(fd, fcntl.F_ADD_SEALS, 0)
    )
    # MAP_PRIVATE may be written: the writes land in the attacker's own copy-on-write pages.
    with mmap.mmap(fd, capacity, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE) as priv:
        original = priv[off : off + 16]
        priv[off : off + 16] = b"X" * 16
        with mmap.mmap(fd, capacity, mmap.MAP_SHARED, mmap.PROT_READ) as shared:
            out["private copy-on-write mapping stays private"] = (
                0 if shared[off : off + 16] == original else -1
            )
    return out
