"""Replies held for the journal sync: which are held, and that they keep their segments' fds
even if those are retired first."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from agentmem.config import Config
from agentmem.daemon.server import _holding_fds
from agentmem.daemon.service import Reply, Service, Session
from agentmem.protocol.messages import PROTOCOL_VERSION
from agentmem.store.segments import Segment


def test_a_held_reply_owns_dups_of_its_segments_fds() -> None:
    seg = Segment(1, 1 << 16, pool="private")
    seg.append(b"x" * 100)
    copy = Segment(-1, 1 << 12, pool="private", exclusive=True)  # a reply's one-off copy
    reply = Reply({"ok": None}, [seg, copy], [copy], sync=True)
    held = _holding_fds(reply)
    assert held.sync and held.body is reply.body
    dup = held.segments[0]
    assert dup is not seg and dup.fd != seg.fd
    assert held.segments[1] is copy  # transient ones are the reply's own already
    seg.close()  # retired by a later request of the same wakeup
    assert os.fstat(dup.fd).st_size >= 100  # the held reply's fd still names the memfd
    fd = dup.fd
    for s in held.transient:  # what the server does once the reply is sent
        s.close()
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)


def test_only_a_request_that_wrote_the_journal_waits_for_its_sync(tmp_path: Path) -> None:
    """Group commit holds the replies that acknowledge journaled changes; one that wrote
    nothing (a handshake, a read) goes out at once, even while another session's records wait
    for the sync."""
    service = Service(Config(), state_dir=str(tmp_path))
    a, b = service.open(os.getpid(), os.getuid()), service.open(os.getpid(), os.getuid())
    ids = itertools.count(1)

    def call(session: Session, op: str, **args: object) -> Reply:
        reply = service.handle(session, {"id": next(ids), "op": op, **args}, ())
        assert "error" not in reply.body, reply.body
        return reply

    assert not call(a, "hello", version=PROTOCOL_VERSION, name="writer").sync
    chat = call(a, "alloc_smu", type="conversation", messages=[]).body["ok"]
    call(a, "append", handle=chat, message=b'{"role":"user"}')  # not synced yet: dirty
    assert service.domains[os.getuid()].store.journal.dirty  # type: ignore[union-attr]
    assert not call(b, "hello", version=PROTOCOL_VERSION, name="reader").sync
    prompt = call(b, "alloc_smu", type="system_prompt", data=b"x" * 100).body["ok"]
    assert not call(b, "read", handle=prompt).sync  # SMUs are not journaled
    assert not call(a, "length", handle=chat).sync
    assert call(a, "append", handle=chat, message=b'{"role":"assistant"}').sync
    service.sync()
    service.close_all()
