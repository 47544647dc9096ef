"""Golden protocol frames: the exact bytes peers of different versions must agree on.

A failure here means the wire format changed. That is a protocol change: bump FRAME_VERSION
(header or body encoding) or PROTOCOL_VERSION (message meaning), update docs/protocol.md, and
only then update these bytes.
"""

from __future__ import annotations

from agentmem.errors import UnknownHandle
from agentmem.protocol.framing import Encoder, FrameDecoder, encode
from agentmem.protocol.messages import hello, reply_error

# b"AP" | version 1 | flags 0 | length 30 (LE u32) | msgpack fixmap(4):
#   "id": 1, "op": "hello", "version": 1, "name": "a"
HELLO = bytes.fromhex(
    "4150" "01" "00" "1e000000"
    "84" "a26964" "01" "a26f70" "a568656c6c6f" "a776657273696f6e" "01" "a46e616d65" "a161"
)  # fmt: skip

# flags 1 (fds attached) | length 9 | fixmap(2): "id": 3, "ok": nil
OK_WITH_FDS = bytes.fromhex(
    "4150" "01" "01" "09000000"
    "82" "a26964" "03" "a26f6b" "c0"
)  # fmt: skip

# flags 0 | length 29 | fixmap(3): "id": 2, "err": 3 (UnknownHandle), "msg": "no such handle"
ERR_UNKNOWN_HANDLE = bytes.fromhex(
    "4150" "01" "00" "1d000000"
    "83" "a26964" "02" "a3657272" "03" "a36d7367" "ae6e6f20737563682068616e646c65"
)  # fmt: skip


def test_hello_frame_bytes():
    assert encode({"id": 1, "op": "hello", "version": 1, "name": "a"}) == HELLO
    assert encode(hello(1, "a")) == HELLO


def test_reply_frame_bytes():
    assert encode({"id": 3, "ok": None}, fds=True) == OK_WITH_FDS
    assert encode(reply_error(2, UnknownHandle("no such handle"))) == ERR_UNKNOWN_HANDLE


def test_encoder_makes_the_same_bytes():
    enc = Encoder()  # what the daemon and the client send with
    assert enc.encode(hello(1, "a")) == HELLO
    assert enc.encode({"id": 3, "ok": None}, fds=True) == OK_WITH_FDS
    assert enc.encode(reply_error(2, UnknownHandle("no such handle"))) == ERR_UNKNOWN_HANDLE


def test_golden_frames_decode():
    frames = FrameDecoder().feed(HELLO + OK_WITH_FDS + ERR_UNKNOWN_HANDLE)
    assert [(f.body, f.has_fds, f.offset) for f in frames] == [
        ({"id": 1, "op": "hello", "version": 1, "name": "a"}, False, 0),
        ({"id": 3, "ok": None}, True, 38),
        ({"id": 2, "err": 3, "msg": "no such handle"}, False, 55),
    ]
