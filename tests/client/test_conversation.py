"""Conversation: a list of message dicts backed by agentmem, on both transports."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentmem.client import Client
from agentmem.client.conversation import CACHE_BYTES, Conversation
from agentmem.errors import InvalidArgument, UnknownHandle, WrongType
from agentmem.ids import Handle
from agentmem.stats import StoreStats
from tests.client.conftest import ClientFactory
from tests.daemon.conftest import wait_until

ANTHROPIC: list[dict[str, Any]] = [
    {"role": "user", "content": "Fix the failing test in tests/test_parse.py"},
    {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Let me run it first."},
            {
                "type": "tool_use",
                "id": "toolu_01A",
                "name": "bash",
                "input": {"command": "pytest -q tests/test_parse.py", "timeout": 60},
            },
        ],
    },
    {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_01A",
                "content": [{"type": "text", "text": "1 failed: AssertionError: 'é' != 'e'"}],
                "is_error": True,
            }
        ],
    },
    {"role": "assistant", "content": "The parser strips accents: ünïcödé, 日本語, 🚀 all break."},
]

OPENAI: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a coding agent."},
    {"role": "user", "content": "What is the weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21.5, "sky": "☀"}'},
    {"role": "assistant", "content": "21.5 °C and sunny.", "refusal": None},
]


def stored(message: dict[str, Any]) -> bytes:
    """The encoding the brief fixes: compact JSON, keys unsorted, UTF-8."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def settled_stats(client: Client, agents: Sequence[Client]) -> StoreStats:
    """Domain stats once only ``agents`` are registered: clients closed by earlier tests on
    the shared daemon are released asynchronously, when the daemon reads their EOF."""
    names = {a.name for a in agents}
    seen: list[StoreStats] = []

    def settled() -> bool:
        s = client.get_stats()
        assert isinstance(s, StoreStats)
        seen.append(s)
        return {a.name for a in s.per_agent} == names

    wait_until(settled, f"only {sorted(names)} are registered")
    return seen[-1]


# --- list parity -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
messages_st = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "tool"]), "content": json_values}
)
bounds = st.none() | st.integers(-8, 8)
ops_st = st.lists(
    st.one_of(
        st.tuples(st.just("append"), messages_st),
        st.tuples(st.just("extend"), st.lists(messages_st, max_size=4)),
        st.tuples(st.just("iadd"), st.lists(messages_st, max_size=4)),
        st.tuples(st.just("index"), st.integers(-8, 8)),
        st.tuples(st.just("slice"), st.tuples(bounds, bounds, st.sampled_from([None, 1, 2, -1]))),
        st.tuples(st.just("whole"), st.none()),
    ),
    max_size=12,
)


def check_op(conv: Conversation, model: list[dict[str, Any]], op: str, arg: Any) -> None:
    if op == "append":
        conv.append(arg)
        model.append(arg)
    elif op == "extend":
        conv.extend(arg)
        model.extend(arg)
    elif op == "iadd":
        conv += arg
        model += arg
    elif op == "index":
        if -len(model) <= arg < len(model):
            assert conv[arg] == model[arg]
            assert conv.raw(arg) == stored(model[arg])
        else:
            with pytest.raises(IndexError):
                conv[arg]
    elif op == "slice":
        s = slice(*arg)
        assert conv[s] == model[s]
    else:
        assert len(conv) == len(model)
        assert bool(conv) == bool(model)
        assert list(conv) == model
        assert list(reversed(conv)) == model[::-1]
        assert conv == model
        assert model == conv


@pytest.mark.parametrize("cache_bytes", [CACHE_BYTES, 0, 200], ids=["cache", "nocache", "small"])
def test_behaves_like_a_list(connect_agent: ClientFactory, cache_bytes: int) -> None:
    client = connect_agent()

    @settings(max_examples=25, deadline=None)
    @given(initial=st.lists(messages_st, max_size=4), ops=ops_st)
    def run(initial: list[dict[str, Any]], ops: list[tuple[str, Any]]) -> None:
        conv = Conversation(client, client.conversation(initial).handle, cache_bytes=cache_bytes)
        model = list(initial)
        try:
            for op, arg in ops:
                check_op(conv, model, op, arg)
            check_op(conv, model, "whole", None)
        finally:
            conv.release()

    run()


@pytest.mark.parametrize("history", [ANTHROPIC, OPENAI], ids=["anthropic", "openai"])
def test_sdk_message_lists_round_trip(
    connect_agent: ClientFactory, history: list[dict[str, Any]]
) -> None:
    client = connect_agent()
    conv = client.conversation()
    for msg in history:
        conv.append(msg)
    assert conv == history
    assert list(conv) == history
    assert conv.copy() == history and type(conv.copy()) is list
    for i, msg in enumerate(history):
        assert conv.raw(i) == stored(msg)
        assert list(conv[i]) == list(msg)  # key order is the caller's
    assert conv[1:3] == history[1:3] and type(conv[1:3]) is list
    assert conv[-1] == history[-1] and conv[-len(history)] == history[0]
    assert history[2] in conv and {"role": "user"} not in conv
    assert conv.index(history[2]) == 2
    assert conv.count(history[0]) == 1
    assert f"len={len(history)}" in repr(conv)
    # Another object on the same handle, caching nothing, sees the same list.
    assert Conversation(client, conv.handle, cache_bytes=0) == history
    assert client.conversation(handle=conv.handle) == history


def test_equality(connect_agent: ClientFactory) -> None:
    client = connect_agent()
    a = client.conversation(ANTHROPIC)
    b = client.conversation(ANTHROPIC)
    assert a == b and b == a and a == ANTHROPIC
    assert ANTHROPIC == a  # noqa: SIM300  # the list on the left: reflected to Conversation
    assert a == client.conversation(handle=a.handle)  # same handle, same history
    assert a != OPENAI and a != ANTHROPIC[:-1] and a != tuple(ANTHROPIC)
    # Equal as dicts, different as bytes: equal, as two lists would be.
    x = client.conversation([{"role": "user", "content": "hi"}])
    y = client.conversation([{"content": "hi", "role": "user"}])
    assert x.raw(0) != y.raw(0)
    assert x == y
    b.append({"role": "user", "content": "more"})
    assert a != b
    with pytest.raises(TypeError):
        hash(a)
    # + itself is under test: a plain list, nothing stored.
    assert a + [{"role": "user"}] == [*ANTHROPIC, {"role": "user"}]  # noqa: RUF005
    assert [{"role": "user"}] + a == [{"role": "user"}, *ANTHROPIC]  # noqa: RUF005
    assert len(a) == len(ANTHROPIC)


def test_indices_out_of_range_and_bad_keys(connect_agent: ClientFactory) -> None:
    client = connect_agent()
    empty = client.conversation()
    assert not empty and len(empty) == 0 and list(empty) == [] and empty[:] == []
    assert repr(empty).endswith("len=0)")
    for i in (0, -1):
        with pytest.raises(IndexError):
            empty[i]
    conv = client.conversation(OPENAI)
    n = len(OPENAI)
    for i in (n, n + 5, -n - 1):
        with pytest.raises(IndexError):
            conv[i]
    assert conv[-n] == OPENAI[0] and conv[n - 1] == OPENAI[-1]
    assert conv[::-1] == OPENAI[::-1] and conv[1::2] == OPENAI[1::2] and conv[-2:] == OPENAI[-2:]
    assert conv[10:20] == [] and conv[3:1] == []
    with pytest.raises(TypeError):
        conv["role"]  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="step"):
        conv[::0]


MUTATORS: list[tuple[str, Callable[[Conversation], object]]] = [
    ("setitem", lambda c: c.__setitem__(0, {"role": "user"})),
    ("delitem", lambda c: c.__delitem__(0)),
    ("insert", lambda c: c.insert(0, {"role": "user"})),
    ("pop", lambda c: c.pop()),
    ("remove", lambda c: c.remove(ANTHROPIC[0])),
    ("clear", lambda c: c.clear()),
    ("reverse", lambda c: c.reverse()),
    ("sort", lambda c: c.sort()),
]


@pytest.mark.parametrize(("name", "mutate"), MUTATORS, ids=[m[0] for m in MUTATORS])
def test_in_place_edits_raise_type_error(
    connect_agent: ClientFactory, name: str, mutate: Callable[[Conversation], object]
) -> None:
    conv = connect_agent().conversation(ANTHROPIC)
    with pytest.raises(TypeError, match=r"fork\(\).*truncated\(n\)") as info:
        mutate(conv)
    assert isinstance(info.value, WrongType)
    assert conv == ANTHROPIC


def test_a_bad_message_stores_nothing(connect_agent: ClientFactory) -> None:
    client = connect_agent()
    conv = client.conversation(ANTHROPIC[:2])
    circular: dict[str, Any] = {"role": "user"}
    circular["self"] = circular
    bad: list[object] = [
        {"role": "user", "content": object()},
        {"role": "user", "content": {1, 2}},
        {"role": "user", "content": "\ud800"},  # a lone surrogate is not UTF-8
        circular,
        "not a dict",
        [("role", "user")],
    ]
    for msg in bad:
        with pytest.raises(InvalidArgument):
            conv.append(msg)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument):
            conv.extend([ANTHROPIC[2], msg])  # type: ignore[list-item]
        with pytest.raises(InvalidArgument):
            conv += [ANTHROPIC[2], msg]  # type: ignore[list-item]
    with pytest.raises(InvalidArgument, match="model_dump"):
        conv.append({"content": object()})
    with pytest.raises(InvalidArgument):
        conv.extend(ANTHROPIC[2])  # type: ignore[arg-type]  # one message, not a list
    assert len(conv) == 2 and conv == ANTHROPIC[:2]
    held = client.handles()
    with pytest.raises(InvalidArgument):
        client.conversation([ANTHROPIC[0], bad[0]])  # type: ignore[list-item]
    assert client.handles() == held


def test_fork_diverges_and_truncated_shares(connect_agent: ClientFactory) -> None:
    client = connect_agent()
    base = client.conversation(ANTHROPIC[:3])
    fork = base.fork()
    assert fork.handle != base.handle and fork == base
    base.append(ANTHROPIC[3])
    fork.append({"role": "assistant", "content": "another path"})
    assert base == ANTHROPIC
    assert fork == [*ANTHROPIC[:3], {"role": "assistant", "content": "another path"}]
    before = settled_stats(client, [client]).messages
    assert before == 5  # three shared, one each after the fork
    head = base.truncated(2)
    assert head == ANTHROPIC[:2] and base == ANTHROPIC  # a new conversation; base unchanged
    assert base.truncated(-1) == ANTHROPIC[:-1]
    assert base.truncated(99) == ANTHROPIC
    assert settled_stats(client, [client]).messages == before  # same history, same nodes
    head.append({"role": "user", "content": "again"})
    assert len(head) == 3 and len(base) == 4


def test_two_agents_with_one_history_store_it_once(connect_agent: ClientFactory) -> None:
    a, b = connect_agent(), connect_agent()
    history = ANTHROPIC + OPENAI
    ca = a.conversation()
    for msg in history:
        ca.append(msg)
    cb = b.conversation(history[:3])
    cb += history[3:]
    assert ca == cb == history
    s = settled_stats(a, [a, b])
    assert s.messages == len(history)
    cb.append({"role": "user", "content": "only b says this"})
    assert settled_stats(a, [a, b]).messages == len(history) + 1


def test_reads_are_served_from_the_cache(
    connect_agent: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = connect_agent()
    calls: list[tuple[int, int | None]] = []
    real = client.messages

    def counting(handle: Any, start: int = 0, stop: int | None = None) -> list[bytes]:
        calls.append((start, stop))
        return real(handle, start, stop)

    monkeypatch.setattr(client, "messages", counting)
    history = ANTHROPIC + OPENAI
    conv = client.conversation(history[:5])
    conv.extend(history[5:8])
    conv.append(history[8])
    assert calls == []
    assert list(conv) == history
    assert len(calls) == 1  # one request, for the (empty) tail
    calls.clear()
    assert [conv[i] for i in range(len(history))] == history and conv[2:6] == history[2:6]
    assert calls == []  # positive indexes and bounded slices inside the cached prefix
    # Appends through another object on the same handle show up at the next whole read.
    elsewhere = {"role": "user", "content": "from elsewhere"}
    Conversation(client, conv.handle).append(elsewhere)
    mine = {"role": "assistant", "content": "mine"}
    conv.append(mine)  # not cached at len(history): that position holds the other append
    assert conv[len(history)] == elsewhere and conv[-1] == mine
    assert conv == [*history, elsewhere, mine]


def test_release_and_context_manager(connect_agent: ClientFactory) -> None:
    client = connect_agent()
    with client.conversation(OPENAI) as conv:
        assert conv[0] == OPENAI[0]
        h = conv.handle
    assert h not in [x["handle"] for x in client.handles()]
    for use in (lambda: conv[0], lambda: len(conv), lambda: conv.append(OPENAI[0]), conv.fork):
        with pytest.raises(UnknownHandle):
            use()
    conv.release()  # idempotent
    assert "released" in repr(conv)


def test_wrapping_an_existing_handle(connect_agent: ClientFactory) -> None:
    client = connect_agent()
    h = client.alloc_smu("conversation", [stored(m) for m in OPENAI])
    conv = client.conversation(handle=h)
    assert conv.handle == h and conv == OPENAI
    with pytest.raises(InvalidArgument):
        client.conversation(OPENAI, handle=h)
    blob = client.alloc_smu("blob", b"not a conversation")
    with pytest.raises(WrongType):
        client.conversation(handle=blob)
    with pytest.raises(UnknownHandle):
        client.conversation(handle=Handle(connect_agent().conversation().handle + 1000))
