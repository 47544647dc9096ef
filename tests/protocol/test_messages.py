"""The message schema: error mapping for every code, hello, typed field access, the docs table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentmem import constants
from agentmem.errors import (
    ERRORS_BY_CODE,
    AgentmemError,
    InvalidArgument,
    ProtocolError,
    TooLarge,
    UnknownHandle,
)
from agentmem.protocol.framing import FrameDecoder, encode
from agentmem.protocol.messages import (
    MAX_OP_NAME,
    OPS,
    PROTOCOL_VERSION,
    check_hello,
    hello,
    optional,
    parse_request,
    raise_for_reply,
    reply_error,
    reply_ok,
    request,
    require,
)

PROTOCOL_DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def over_the_wire(msg: dict[str, object]) -> dict[str, object]:
    (frame,) = FrameDecoder().feed(encode(msg))
    return frame.body


@pytest.mark.parametrize(("code", "cls"), sorted(ERRORS_BY_CODE.items()))
def test_every_error_class_round_trips(code: int, cls: type[AgentmemError]):
    reply = over_the_wire(reply_error(41, cls("it went wrong: 'quoted'")))
    assert reply == {"id": 41, "err": code, "msg": "it went wrong: 'quoted'"}
    with pytest.raises(cls) as info:
        raise_for_reply(reply)
    assert type(info.value) is cls
    assert str(info.value) == "it went wrong: 'quoted'"


def test_error_codes_are_the_registered_ones():
    assert all(cls.code == code for code, cls in ERRORS_BY_CODE.items())


def test_ok_reply_returns_result():
    result = {"handle": 3, "chunks": [b"\x01" * 32]}
    assert raise_for_reply(over_the_wire(reply_ok(5, result))) == result
    assert raise_for_reply(reply_ok(5, None)) is None


def test_unknown_error_code_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="unknown error code 9999: from the future"):
        raise_for_reply({"id": 1, "err": 9999, "msg": "from the future"})


@pytest.mark.parametrize(
    "reply",
    [
        {"ok": 1},
        {"id": "1", "ok": 1},
        {"id": True, "ok": 1},
        {"id": 1},
        {"id": 1, "ok": 1, "err": 2, "msg": "x"},
        {"id": 1, "err": "2", "msg": "x"},
        {"id": 1, "err": True, "msg": "x"},
        {"id": 1, "err": 2, "msg": 3},
    ],
)
def test_malformed_replies(reply: dict[str, object]):
    with pytest.raises(ProtocolError):
        raise_for_reply(reply)


def test_error_reply_without_msg_gets_an_empty_message():
    with pytest.raises(UnknownHandle) as info:
        raise_for_reply({"id": 1, "err": UnknownHandle.code})
    assert str(info.value) == ""


def test_request_envelope():
    msg = request("read", 7, handle=3, offset=0)
    assert msg == {"id": 7, "op": "read", "handle": 3, "offset": 0}
    assert list(msg) == ["id", "op", "handle", "offset"]
    with pytest.raises(ValueError, match="envelope"):
        request("read", 7, op="write")
    with pytest.raises(ValueError, match="envelope"):
        request("read", 7, id=8)


def test_parse_request():
    assert parse_request(over_the_wire(request("mark_hot", 3, handle=1))) == (3, "mark_hot")
    assert parse_request({"id": 1, "op": "not_planned_yet"}) == (1, "not_planned_yet")
    for bad_id in ({"op": "read"}, {"id": "1", "op": "read"}, {"id": False, "op": "read"}):
        with pytest.raises(ProtocolError, match="integer id"):
            parse_request(bad_id)
    for bad_op in ({"id": 1}, {"id": 1, "op": 5}, {"id": 1, "op": ""}):
        with pytest.raises(InvalidArgument):
            parse_request(bad_op)
    with pytest.raises(InvalidArgument, match=str(MAX_OP_NAME)):
        parse_request({"id": 1, "op": "x" * (MAX_OP_NAME + 1)})


def test_require_and_optional():
    msg = {"handle": 3, "flag": True, "name": "a", "none": None}
    assert require(msg, "handle", int) == 3
    assert require(msg, "flag", bool) is True
    assert require(msg, "name", str) == "a"
    with pytest.raises(InvalidArgument, match="missing field 'size'"):
        require(msg, "size", int)
    with pytest.raises(InvalidArgument, match="field 'flag' must be int, got bool"):
        require(msg, "flag", int)
    with pytest.raises(InvalidArgument, match="field 'name' must be bytes, got str"):
        require(msg, "name", bytes)
    assert optional(msg, "size", int, 10) == 10
    assert optional(msg, "handle", int, 10) == 3
    with pytest.raises(InvalidArgument, match="field 'none' must be int"):
        optional(msg, "none", int, 10)


def test_hello_handshake():
    msg = over_the_wire(hello(1, "researcher-7", pid_hint=123))
    assert msg == {
        "id": 1,
        "op": "hello",
        "version": PROTOCOL_VERSION,
        "name": "researcher-7",
        "pid_hint": 123,
    }
    assert check_hello(msg) == "researcher-7"


@pytest.mark.parametrize(
    ("msg", "error", "match"),
    [
        ({"id": 1, "op": "read"}, ProtocolError, "expected 'hello' first"),
        ({"id": 1, "op": "hello", "name": "a"}, InvalidArgument, "missing field 'version'"),
        ({"id": 1, "op": "hello", "version": 2, "name": "a"}, ProtocolError, "version 2"),
        ({"id": 1, "op": "hello", "version": 1}, InvalidArgument, "missing field 'name'"),
        ({"id": 1, "op": "hello", "version": 1, "name": b"a"}, InvalidArgument, "must be str"),
        ({"id": 1, "op": "hello", "version": 1, "name": ""}, InvalidArgument, "empty"),
        (
            {"id": 1, "op": "hello", "version": 1, "name": "é" * constants.MAX_AGENT_NAME},
            TooLarge,
            "512 bytes",
        ),
    ],
)
def test_bad_hellos(msg: dict[str, object], error: type[Exception], match: str):
    with pytest.raises(error, match=match):
        check_hello(msg)


def test_planned_operations():
    assert {
        "hello",
        "alloc_smu",
        "share_content",
        "mark_hot",
        "get_stats",
        "read",
        "release",
        "set_state",
        "append",
        "fork",
        "messages",
        "alloc_profile",
    } == OPS


# --- docs/protocol.md cannot go stale -----------------------------------------------------------


def test_error_table_in_docs_lists_every_code():
    doc = PROTOCOL_DOC.read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (\d+) \| `(\w+)` \|", doc, flags=re.MULTILINE))
    assert {int(code): name for code, name in rows.items()} == {
        code: cls.__name__ for code, cls in ERRORS_BY_CODE.items()
    }


def test_docs_list_every_planned_operation_and_bound():
    doc = PROTOCOL_DOC.read_text(encoding="utf-8")
    for op in OPS:
        assert f"`{op}`" in doc
    for bound in ("16 MiB", "MAX_FRAME_BYTES", "MAX_DEPTH", "MAX_CONTAINER_ITEMS", "64 fds"):
        assert bound in doc
