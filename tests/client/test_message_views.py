"""Conversation messages read as views of the conversation's own segments (both transports)."""

from __future__ import annotations

import mmap
from typing import Any

import pytest

from agentmem.client import Client
from agentmem.errors import UnknownHandle
from tests.client.conftest import ClientFactory


def _messages(n: int, tag: str = "m", size: int = 1500) -> list[bytes]:
    return [
        (f'{{"role":"user","content":"{tag}{i:05d} ' + "x" * size + '"}').encode() for i in range(n)
    ]


def _mapped(view: memoryview) -> bool:
    """Is ``view`` a slice of a mapped segment (not a copy the daemon sent)?"""
    return isinstance(view.obj, mmap.mmap)


def _mappings(views: list[memoryview]) -> list[bytes]:
    """The whole contents of every distinct mapping ``views`` are slices of."""
    seen: dict[int, bytes] = {}
    for v in views:
        if _mapped(v):
            seen.setdefault(id(v.obj), bytes(v.obj))
    return list(seen.values())


def _conversation(client: Client, raws: list[bytes]) -> int:
    h = client.alloc_smu("conversation", [])
    for i in range(0, len(raws), 64):
        client.extend(h, raws[i : i + 64])
    return h


def test_views_are_the_messages_and_mostly_mapped(connect_agent: ClientFactory) -> None:
    a = connect_agent()
    raws = _messages(200)
    h = _conversation(a, raws)
    views = a.message_views(h)
    assert [bytes(v) for v in views] == raws == a.messages(h)
    mapped = [_mapped(v) for v in views]
    # the first 16 KiB live in the private pool and come as copies; the rest is mapped
    assert not mapped[0] and all(mapped[20:])
    assert all(v.readonly for v in views)
    with pytest.raises(TypeError):
        views[-1][0] = 0  # type: ignore[index]
    # slices, as for messages()
    assert [bytes(v) for v in a.message_views(h, 50, 60)] == raws[50:60]
    assert [bytes(v) for v in a.message_views(h, -3)] == raws[-3:]
    assert a.message_views(h, 300) == []


def test_views_see_later_appends_and_survive_release(connect_agent: ClientFactory) -> None:
    a = connect_agent()
    raws = _messages(100)
    h = _conversation(a, raws)
    first = a.message_views(h)
    more = _messages(30, tag="n")
    a.extend(h, more)
    assert [bytes(v) for v in a.message_views(h, 100)] == more
    a.release(h)
    assert [bytes(v) for v in first] == raws  # views held keep their pages


def test_a_fork_reads_the_shared_prefix_as_copies(connect_agent: ClientFactory) -> None:
    a = connect_agent()
    raws = _messages(100)
    h = _conversation(a, raws)
    f = a.fork(h)
    own = _messages(60, tag="f")
    a.extend(f, own)
    a.extend(h, _messages(5, tag="later"))  # the parent goes on in its own segments
    views = a.message_views(f)
    assert [bytes(v) for v in views] == raws + own
    # The parent's segments are not the fork's: no mapping it got shows the parent's later
    # messages (the prefix came as copies: one segment of this reply's own).
    assert not any(b'"later' in whole for whole in _mappings(views))
    a.extend(h, _messages(5, tag="after"))
    assert not any(b'"after' in whole for whole in _mappings(views))


def test_copies_above_64_kib_come_in_one_segment_of_the_reply(
    connect_agent: ClientFactory,
) -> None:
    a = connect_agent()
    raws = _messages(100)  # ~150 KB: the fork's prefix is copied, too much to go inline
    f = a.fork(_conversation(a, raws))
    views = a.message_views(f)
    assert [bytes(v) for v in views] == raws
    assert all(_mapped(v) for v in views)
    (whole,) = _mappings(views)  # one mapping, holding the copies and nothing else
    assert whole.rstrip(b"\0") == b"".join(raws)
    small = a.fork(_conversation(a, _messages(10)))  # 15 KB of copies: inline
    assert not any(_mapped(v) for v in a.message_views(small))


def test_another_agent_cannot_read_or_map_a_conversation(connect_agent: ClientFactory) -> None:
    a, b = connect_agent(), connect_agent()
    h = _conversation(a, _messages(100))
    with pytest.raises(UnknownHandle):
        b.message_views(h)
    with pytest.raises(UnknownHandle):
        b.messages(h)


def test_demoted_messages_come_back_and_are_mapped_again(connect_agent: ClientFactory) -> None:
    a = connect_agent()
    raws = _messages(120)
    h = _conversation(a, raws)
    assert a.demote(h) > 0
    views = a.message_views(h)  # promoted by the read, into the handle's own segment
    assert [bytes(v) for v in views] == raws
    again = a.message_views(h)
    assert [bytes(v) for v in again] == raws
    assert all(_mapped(v) for v in again[20:])


def test_messages_larger_than_a_chunk_and_across_segments(connect_agent: ClientFactory) -> None:
    import random

    rng = random.Random(3)
    raws = [rng.randbytes(rng.choice([200, 3000, 9000, 40_000, 300_000])) for _ in range(60)]
    a = connect_agent()
    h = a.alloc_smu("conversation", [])
    for i in range(0, len(raws), 7):
        a.extend(h, raws[i : i + 7])
    views = a.message_views(h)
    assert [bytes(v) for v in views] == raws
    assert sum(_mapped(v) for v in views) > len(raws) // 2  # most are whole slices of segments


def test_a_conversation_shared_with_another_agent_is_copied_to_it(
    connect_agent: ClientFactory,
) -> None:
    a, b = connect_agent(), connect_agent()
    raws = _messages(100)
    h = _conversation(a, raws)
    hb = a.share_content(h, b.name)
    views = b.message_views(hb)
    assert [bytes(v) for v in views] == raws
    a.extend(h, _messages(5, tag="secret"))
    # a's segments are a's alone: none of b's mappings shows what a appended since
    assert not any(b'"secret' in whole for whole in _mappings(views))
    assert all(_mapped(v) for v in a.message_views(h)[20:])


def test_an_empty_message_at_the_end_of_an_extent(connect_agent: ClientFactory) -> None:
    a = connect_agent()
    raws = _messages(40)
    h = _conversation(a, raws)
    a.extend(h, [b"", b"", raws[0], b""])
    assert [bytes(v) for v in a.message_views(h)] == [*raws, b"", b"", raws[0], b""]
    assert [bytes(v) for v in a.message_views(h, 40, 42)] == [b"", b""]


@pytest.mark.parametrize("transport", ["inprocess", "socket"])
def test_a_history_in_more_segments_than_a_frame_carries_fds(transport: str) -> None:
    import os

    from agentmem.client import connect
    from agentmem.daemon.inprocess import InProcessTransport
    from agentmem.daemon.service import Service
    from agentmem.protocol.fdpass import MAX_FDS_PER_FRAME
    from agentmem.testing import DaemonProcess

    # 64 KiB segments: every 20 KB message larger than a quarter of one gets its own.
    raws = [os.urandom(20_000) for _ in range(MAX_FDS_PER_FRAME + 40)]

    def check(client: Client) -> None:
        h = client.alloc_smu("conversation", [])
        client.extend(h, raws)
        views = client.message_views(h)
        assert [bytes(v) for v in views] == raws
        assert sum(_mapped(v) for v in views) > MAX_FDS_PER_FRAME  # over several replies

    if transport == "inprocess":
        import dataclasses

        from agentmem.config import Config

        service = Service(dataclasses.replace(Config(), segment_bytes=64 << 10))
        client = Client(InProcessTransport(service), name="many-segments")
        try:
            check(client)
        finally:
            client.close()
            service.close_all()
        return
    env = {**os.environ, "AGENTMEM_SEGMENT_BYTES": str(64 << 10)}
    with DaemonProcess(env=env) as d, connect(d.socket, name="many-segments") as client:
        check(client)


def test_iterating_views_gives_the_list_and_lets_other_calls_in(
    connect_agent: ClientFactory,
) -> None:
    from agentmem.daemon.service import MESSAGE_VIEWS_COUNT

    a = connect_agent()
    raws = _messages(300, size=100)
    h = _conversation(a, raws)
    views = a.iter_message_views(h, 5)
    first = next(views)
    assert bytes(first) == raws[5]
    a.extend(h, [b'{"later":1}'])  # another call between two views
    # the range was fixed by the first reply: the later message is not in it
    assert [bytes(first), *(bytes(v) for v in views)] == raws[5:]
    assert [bytes(v) for v in a.iter_message_views(h, -1)] == [b'{"later":1}']
    assert [bytes(v) for v in a.iter_message_views(h, 10, 13)] == raws[10:13]
    assert list(a.iter_message_views(h, 400)) == []
    assert MESSAGE_VIEWS_COUNT > 300  # one reply here; replies in turn: the list test above


def test_a_stream_of_views_keeps_no_list_of_them(connect_agent: ClientFactory) -> None:
    import gc
    import sys

    a = connect_agent()
    raws = _messages(2000, size=50)
    h = _conversation(a, raws)
    gc.collect()
    live_before = len(gc.get_objects())
    peak = 0
    for i, view in enumerate(a.iter_message_views(h)):
        assert bytes(view) == raws[i]
        if i % 100 == 0:
            peak = max(peak, sys.getrefcount(view))
    del view
    # memoryviews are not tracked by gc; what is, the reply dict and lists, is gone again
    gc.collect()
    assert len(gc.get_objects()) <= live_before + 50
    assert peak <= 4  # each view is referenced by the loop alone, not by a list held inside


def test_packed_sizes_are_the_listed_sizes() -> None:
    import array

    from agentmem.client.client import iter_message_views
    from agentmem.daemon.inprocess import InProcessTransport
    from agentmem.daemon.service import Service
    from agentmem.errors import ProtocolError

    service = Service()
    client = Client(InProcessTransport(service), name="packed")
    raws = _messages(50, size=400)
    h = _conversation(client, raws)
    req = {"op": "messages", "handle": h, "views": True}
    listed, _ = client._call_with(dict(req))
    packed, att = client._call_with({**req, "packed": True})
    assert isinstance(listed["sizes"], list) and isinstance(packed["sizes"], bytes)
    assert array.array("I", packed["sizes"]).tolist() == listed["sizes"] == [len(r) for r in raws]
    assert [bytes(v) for v in iter_message_views(packed, att, {})] == raws
    with pytest.raises(ProtocolError, match="whole uint32s"):
        list(iter_message_views({**packed, "sizes": packed["sizes"][:-1]}, att, {}))
    with pytest.raises(ProtocolError):
        list(iter_message_views({**packed, "sizes": packed["sizes"][:-4]}, att, {}))
    client.close()
    service.close_all()


def _unpacked_pieces(packed: dict[str, Any]) -> list[object]:
    """A packed reply's pieces in the listed form (bytes, or [segment, offset, length])."""
    import array

    from agentmem.protocol.messages import PACKED_COPY, PACKED_INLINE

    words = array.array("I", packed["pieces"]).tolist()
    inline = iter(packed["inline"])
    out: list[object] = []
    for i in range(0, len(words), 3):
        seg, off, n = words[i : i + 3]
        if seg == PACKED_INLINE:
            out.append(next(inline))
        else:
            out.append([-1 if seg == PACKED_COPY else seg, off, n])
    return out


@pytest.mark.parametrize("forked", [False, True])
def test_packed_pieces_are_the_listed_pieces(forked: bool) -> None:
    from agentmem.client.client import iter_message_views
    from agentmem.daemon.inprocess import InProcessTransport
    from agentmem.daemon.service import Service
    from agentmem.errors import ProtocolError

    service = Service()
    client = Client(InProcessTransport(service), name="packed")
    raws = _messages(120, size=1500)
    h = _conversation(client, raws)
    if forked:  # the prefix lies in the other handle's segments: copies, a copy segment (-1)
        h = client.fork(h)
    req = {"op": "messages", "handle": h, "views": True}
    listed, _ = client._call_with(dict(req))
    packed, att = client._call_with({**req, "packed": True})
    assert isinstance(listed["pieces"], list) and isinstance(packed["pieces"], bytes)
    assert _unpacked_pieces(packed) == listed["pieces"]
    kinds = {type(p) for p in listed["pieces"]}
    assert kinds == ({list} if forked else {bytes, list})  # the first messages inline
    assert any(seg == -1 for seg, _ in listed["map"]) is forked
    assert [bytes(v) for v in iter_message_views(packed, att, {})] == raws
    assert [bytes(v) for v in iter_message_views(listed, att, {})] == raws
    bad_cases = [
        {**packed, "pieces": packed["pieces"][:-4]},  # not whole triples
        {**packed, "inline": None},
    ]
    if packed["inline"]:
        bad_cases += [
            {**packed, "inline": packed["inline"][:-1]},  # an inline message missing
            {**packed, "inline": [*packed["inline"], b"x"]},  # one left over
            {**packed, "inline": [b"?" + packed["inline"][0], *packed["inline"][1:]]},
        ]
    for bad in bad_cases:
        with pytest.raises(ProtocolError):
            list(iter_message_views(bad, att, {}))
    client.close()
    service.close_all()


def test_pieces_that_do_not_fit_32_bits_go_as_lists() -> None:
    import array

    from agentmem.daemon.service import _pack_pieces
    from agentmem.protocol.messages import PACKED_COPY, PACKED_INLINE

    words = array.array("I", [PACKED_INLINE, 0, 2, PACKED_COPY, 0, 3, 7, 8, 9]).tobytes()
    assert _pack_pieces([b"ab", [-1, 0, 3], [7, 8, 9]]) == (words, [b"ab"])
    assert _pack_pieces([[1, 1 << 32, 5]]) is None
    assert _pack_pieces([[PACKED_INLINE, 0, 1]]) is None  # a segment id the marks would hide
