"""A mapping handed to an agent exposes only what it may read: private content is mapped only
when it sits alone in its segment; otherwise the agent gets a copy."""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator

import pytest

import agentmem
from agentmem.client.transport import UnixSocketTransport
from agentmem.protocol import messages as m
from agentmem.testing import DaemonProcess
from tests.conftest import text


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with DaemonProcess() as d:
        yield d


def raw_read(socket_path: str, name: str, content: bytes, kind: str) -> tuple[dict, list[int]]:
    """Allocate ``content`` on a raw connection and read it; the reply and any fds."""
    t = UnixSocketTransport(socket_path)
    try:
        t.request(m.hello(1, name))
        reply, _ = t.request({"id": 2, "op": "alloc_smu", "type": kind, "data": content})
        h = m.raise_for_reply(reply)
        reply, fds = t.request({"id": 3, "op": "read", "handle": h})
        return m.raise_for_reply(reply), fds  # type: ignore[return-value]
    finally:
        t.close()


def segment_bytes(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ) as mapping:
        return bytes(mapping)


def test_private_content_is_mapped_alone(daemon: DaemonProcess) -> None:
    secret = text(1, 200_000)
    other = agentmem.connect(daemon.socket, name="neighbour")
    other.alloc_smu("tool_result", secret)  # another agent's private result
    mine = text(2, 100_000)
    _, fds = raw_read(daemon.socket, "reader", mine, "tool_result")
    try:
        (fd,) = fds
        whole = segment_bytes(fd)
        assert whole.rstrip(b"\0") == mine  # the segment holds my bytes and nothing else
        assert secret[:1000] not in whole
    finally:
        for fd in fds:
            os.close(fd)
        other.close()


def test_near_duplicate_private_content_is_copied_not_mapped(daemon: DaemonProcess) -> None:
    base = text(3, 300_000)
    a = agentmem.connect(daemon.socket, name="first")
    a.alloc_smu("tool_result", base[:150_000] + b"A's private line\n" + base[150_000:])
    variant = base[:150_000] + b"B's own line\n" + base[150_000:]
    result, fds = raw_read(daemon.socket, "second", variant, "tool_result")
    assert fds == []  # sharing A's segment would show B A's private line
    assert result["data"] == variant
    a.close()


def test_prompts_are_shared_zero_copy(daemon: DaemonProcess) -> None:
    prompt = text(4, 500_000)
    a = agentmem.connect(daemon.socket, name="prompt-a")
    b = agentmem.connect(daemon.socket, name="prompt-b")
    va = a.read(a.alloc_smu("system_prompt", prompt))
    vb = b.read(b.alloc_smu("system_prompt", prompt + b"<env>cwd=/b</env>"))
    assert bytes(va) == prompt
    assert bytes(vb) == prompt + b"<env>cwd=/b</env>"
    a.close()
    b.close()


def test_large_unmappable_content_arrives_in_a_private_copy(daemon: DaemonProcess) -> None:
    base = text(5, 9 << 20)
    a = agentmem.connect(daemon.socket, name="big-a")
    b = agentmem.connect(daemon.socket, name="big-b")
    a.alloc_smu("tool_result", base + b"a")
    hb = b.alloc_smu("tool_result", base + b"b")  # shares all but the tail with a's
    view = b.read(hb)
    assert view.readonly
    assert bytes(view[-1:]) == b"b" and len(view) == len(base) + 1
    assert bytes(view) == base + b"b"
    a.close()
    b.close()
