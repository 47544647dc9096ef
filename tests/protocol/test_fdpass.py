"""Fd passing over real Unix sockets with real memfds: delivered, matched, never leaked."""

from __future__ import annotations

import array
import os
import socket
import threading
from collections.abc import Iterator

import pytest

from agentmem.errors import ProtocolError
from agentmem.protocol.fdpass import (
    MAX_FDS_PER_FRAME,
    FdInbox,
    Received,
    peer_credentials,
    recv_frames,
    send_frame,
    send_parts,
)
from agentmem.protocol.framing import MAX_FRAME_BYTES, encode, encode_gathered


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def memfd_with(content: bytes) -> int:
    fd = os.memfd_create("agentmem-test", os.MFD_CLOEXEC)
    os.write(fd, content)
    return fd


def raw_sendmsg(sock: socket.socket, data: bytes, fds: list[int]) -> None:
    """Bypass send_frame's checks, as a hostile peer would."""
    sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.settimeout(10)
    b.settimeout(10)
    with a, b:
        yield a, b


@pytest.fixture
def fd_baseline() -> Iterator[None]:
    """Fail the test if it leaves more fds open than it found."""
    before = open_fds()
    yield
    assert open_fds() == before


def recv_until(sock: socket.socket, inbox: FdInbox, count: int) -> list[Received]:
    got: list[Received] = []
    while len(got) < count:
        got.extend(recv_frames(sock, inbox))
    return got


def close_received(items: list[Received]) -> None:
    for item in items:
        for fd in item.fds:
            os.close(fd)


@pytest.mark.usefixtures("fd_baseline")
def test_memfd_content_arrives(pair: tuple[socket.socket, socket.socket]):
    a, b = pair
    content = os.urandom(10_000)
    fd = memfd_with(content)
    try:
        send_frame(
            a, encode({"id": 1, "op": "share_content", "size": len(content)}, fds=True), [fd]
        )
    finally:
        os.close(fd)  # the peer holds its own duplicate now
    inbox = FdInbox()
    (item,) = recv_until(b, inbox, 1)
    assert item.frame.body == {"id": 1, "op": "share_content", "size": len(content)}
    assert item.frame.has_fds
    assert len(item.fds) == 1
    (got,) = item.fds
    try:
        assert os.pread(got, len(content) + 1, 0) == content
        assert not os.get_inheritable(got)  # received close-on-exec
    finally:
        os.close(got)
    assert inbox.held_fds == 0


@pytest.mark.usefixtures("fd_baseline")
def test_frames_with_and_without_fds_interleaved(pair: tuple[socket.socket, socket.socket]):
    a, b = pair
    plan = [0, 2, 0, 0, 1, 3, 0]
    expected: list[list[bytes]] = []
    for i, count in enumerate(plan):
        contents = [f"frame {i} fd {j}".encode() for j in range(count)]
        fds = [memfd_with(c) for c in contents]
        send_frame(a, encode({"id": i}, fds=bool(fds)), fds)
        for fd in fds:
            os.close(fd)
        expected.append(contents)
    items = recv_until(b, FdInbox(), len(plan))
    try:
        assert [item.frame.body["id"] for item in items] == list(range(len(plan)))
        for item, contents in zip(items, expected, strict=True):
            assert [os.pread(fd, 100, 0) for fd in item.fds] == contents
    finally:
        close_received(items)


@pytest.mark.usefixtures("fd_baseline")
def test_fds_ride_with_the_first_byte_of_a_large_frame(pair: tuple[socket.socket, socket.socket]):
    """A frame far larger than the socket buffer: partial sends, many recvs, one fd group."""
    a, b = pair
    payload = os.urandom(4 << 20)
    fd = memfd_with(b"big")
    frame = encode({"id": 9, "content": payload}, fds=True)
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            send_frame(a, frame, [fd])
            send_frame(a, encode({"id": 10}))
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    thread = threading.Thread(target=sender)
    thread.start()
    inbox = FdInbox()
    items: list[Received] = []
    held_seen = False
    while len(items) < 2:
        items.extend(recv_frames(b, inbox))
        held_seen = held_seen or inbox.held_fds == 1
        assert inbox.held_fds <= 1
    thread.join()
    os.close(fd)
    assert not errors
    try:
        assert held_seen
        assert items[0].frame.body == {"id": 9, "content": payload}
        assert os.pread(items[0].fds[0], 10, 0) == b"big"
        assert items[1] == Received(items[1].frame, ())
    finally:
        close_received(items)


@pytest.mark.usefixtures("fd_baseline")
def test_unasked_fds_are_closed(pair: tuple[socket.socket, socket.socket]):
    a, b = pair
    fds = [memfd_with(b"x") for _ in range(3)]
    before = open_fds()
    raw_sendmsg(a, encode({"id": 1}), fds)  # fds on a frame without FLAG_FDS
    for fd in fds:
        os.close(fd)
    inbox = FdInbox()
    (item,) = recv_until(b, inbox, 1)
    assert item.fds == ()
    assert inbox.held_fds == 0
    assert open_fds() == before - 3


@pytest.mark.usefixtures("fd_baseline")
def test_fds_in_the_middle_of_a_frame_are_closed(pair: tuple[socket.socket, socket.socket]):
    a, b = pair
    frame = encode({"id": 1, "pad": b"\0" * 100})
    fd = memfd_with(b"x")
    a.sendall(frame[:50])
    raw_sendmsg(a, frame[50:], [fd])  # first byte of this segment starts no frame
    os.close(fd)
    inbox = FdInbox()
    (item,) = recv_until(b, inbox, 1)
    assert item.fds == ()
    assert inbox.held_fds == 0


@pytest.mark.usefixtures("fd_baseline")
def test_flagged_frame_without_fds_is_a_protocol_error(pair: tuple[socket.socket, socket.socket]):
    a, b = pair
    a.sendall(encode({"id": 1}, fds=True))
    with pytest.raises(ProtocolError, match="claims fds"):
        recv_until(b, FdInbox(), 1)


@pytest.mark.usefixtures("fd_baseline")
def test_too_many_fds_are_closed_and_refused(pair: tuple[socket.socket, socket.socket]):
    a, b = pair
    fd = memfd_with(b"x")
    before = open_fds()
    raw_sendmsg(a, encode({"id": 1}, fds=True), [fd] * (MAX_FDS_PER_FRAME + 1))
    inbox = FdInbox()
    with pytest.raises(ProtocolError, match="more fds"):
        recv_frames(b, inbox)
    assert open_fds() == before
    os.close(fd)


@pytest.mark.usefixtures("fd_baseline")
def test_bad_frame_closes_everything_held(pair: tuple[socket.socket, socket.socket]):
    a, b = pair
    fd = memfd_with(b"x")
    frame = encode({"id": 1}, fds=True)
    raw_sendmsg(a, frame[:4], [fd])  # start of a frame, held with its fds
    os.close(fd)
    inbox = FdInbox()
    assert recv_frames(b, inbox) == []
    assert inbox.held_fds == 1
    a.sendall(b"\xff\xff\xff\xff" + b"garbage!")  # the length: 4 GiB, refused
    with pytest.raises(ProtocolError):
        recv_until(b, inbox, 1)
    assert inbox.held_fds == 0


@pytest.mark.usefixtures("fd_baseline")
def test_eof_between_and_inside_frames():
    a, b = socket.socketpair()
    with b:
        send_frame(a, encode({"id": 1}))
        a.close()
        inbox = FdInbox()
        assert [i.frame.body for i in recv_until(b, inbox, 1)] == [{"id": 1}]
        with pytest.raises(EOFError):
            recv_frames(b, inbox)
    a, b = socket.socketpair()
    with b:
        fd = memfd_with(b"x")
        raw_sendmsg(a, encode({"id": 2}, fds=True)[:5], [fd])
        os.close(fd)
        a.close()
        inbox = FdInbox()
        assert recv_frames(b, inbox) == []
        with pytest.raises(EOFError, match="middle of a frame"):
            recv_frames(b, inbox)
        assert inbox.held_fds == 0


def test_send_frame_checks_its_arguments(pair: tuple[socket.socket, socket.socket]):
    a, _ = pair
    with pytest.raises(ValueError, match="FLAG_FDS"):
        send_frame(a, encode({"id": 1}), [0])
    with pytest.raises(ValueError, match="FLAG_FDS"):
        send_frame(a, encode({"id": 1}, fds=True))
    with pytest.raises(ValueError, match="at least"):
        send_frame(a, b"AP")
    with pytest.raises(ValueError, match="exceed"):
        send_frame(a, encode({"id": 1}, fds=True), [0] * (MAX_FDS_PER_FRAME + 1))


def test_send_frame_raises_oserror_on_a_closed_peer():
    a, b = socket.socketpair()
    b.close()
    with a, pytest.raises(BrokenPipeError):
        send_frame(a, encode({"id": 1, "pad": b"\0" * (MAX_FRAME_BYTES // 2)}))


def test_peer_credentials_are_ours(pair: tuple[socket.socket, socket.socket]):
    a, b = pair
    assert peer_credentials(a) == (os.getpid(), os.getuid(), os.getgid())
    assert peer_credentials(b) == (os.getpid(), os.getuid(), os.getgid())


# --- FdInbox without a socket -------------------------------------------------------------------


@pytest.mark.usefixtures("fd_baseline")
def test_inbox_holds_at_most_one_group_against_a_trickle_of_fds():
    """A peer sending a huge frame one byte at a time, each byte with an fd, gains nothing."""
    frame = encode({"id": 1, "pad": b"\0" * 3000}, fds=True)
    inbox = FdInbox()
    received: list[Received] = []
    for i in range(len(frame)):
        received.extend(inbox.feed(frame[i : i + 1], [memfd_with(b"%d" % i)]))
        assert inbox.held_fds <= 1
    (item,) = received
    try:
        assert os.pread(item.fds[0], 10, 0) == b"0"  # the group that came with byte 0
    finally:
        close_received(received)


@pytest.mark.usefixtures("fd_baseline")
def test_inbox_matches_groups_by_offset():
    first = encode({"id": 1})
    second = encode({"id": 2}, fds=True)
    inbox = FdInbox()
    fd = memfd_with(b"second")
    # One recv returning the whole of `first` and the start of `second`, with its fd.
    items = inbox.feed(first + second[:3], [fd])
    assert [(i.frame.body, i.fds) for i in items] == [({"id": 1}, ())]
    assert inbox.held_fds == 1
    (item,) = inbox.feed(second[3:])
    try:
        assert item.frame.body == {"id": 2}
        assert os.pread(item.fds[0], 10, 0) == b"second"
    finally:
        close_received([item])


@pytest.mark.usefixtures("fd_baseline")
def test_inbox_close_releases_held_fds():
    inbox = FdInbox()
    assert inbox.feed(encode({"id": 1}, fds=True)[:4], [memfd_with(b"x")]) == []
    assert inbox.held_fds == 1
    inbox.close()
    inbox.close()
    assert inbox.held_fds == 0


def test_gathered_pieces_arrive_as_one_frame_through_partial_sends(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """Thousands of pieces, megabytes more than the socket buffer: every piece in order."""
    a, b = pair
    messages = [os.urandom(n) for n in [7, 3000, 0, 16_000, 1] * 300]
    msg = {"op": "append", "handle": 3, "messages": messages}
    parts = encode_gathered(msg, "messages")
    assert parts is not None and len(parts) > 1024  # more than one sendmsg's IOV_MAX
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            send_parts(a, parts)
            send_frame(a, encode({"id": 2}))
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    thread = threading.Thread(target=sender)
    thread.start()
    items = recv_until(b, FdInbox(), 2)
    thread.join()
    assert not errors
    assert items[0].frame.body == msg
    assert items[1].frame.body == {"id": 2}
