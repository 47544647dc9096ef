"""Message nodes in both forms (records.MessageNode): a node that is its own chunk's entry, and
one that references entries; they must behave as one kind of node whatever happens to them."""

from __future__ import annotations

import pytest

from agentmem import constants
from agentmem.hashing import chunk_id, message_id
from agentmem.ids import Handle, MessageId
from agentmem.states import SMUType, Tier
from agentmem.store import Store
from agentmem.store.conversations import message_id_of, node_at, nodes
from agentmem.store.records import MARK_STRIDE, ConversationRef, MessageNode
from tests.conftest import message, text


def conv_ref(store: Store, h: Handle) -> ConversationRef:
    ref = store.refs[h]
    assert isinstance(ref, ConversationRef)
    return ref


def texts(store: Store, h: Handle, start: int = 0, stop: int | None = None) -> list[bytes]:
    return [bytes(m) for m in store.messages(h, start, stop)]


def test_a_new_one_chunk_message_is_its_own_entry(store: Store) -> None:
    a = store.register_agent("a")
    h = store.alloc_smu(SMUType.CONVERSATION, [message(i) for i in range(3)], a)
    for node in conv_ref(store, h).path:
        assert node.owns_chunk and node.chunks == (node,) and node.refs == 1
        assert store.chunks[node.id] is node
    assert store.nodes == {} and store.get_stats().messages == 3  # type: ignore[union-attr]
    assert store.check().ok


def test_a_fork_gives_the_shared_tip_an_entry_of_its_own(store: Store) -> None:
    a = store.register_agent("a")
    h = store.alloc_smu(SMUType.CONVERSATION, [message(i) for i in range(4)], a)
    f = store.fork(h)
    tip = conv_ref(store, h).tip
    assert tip is not None and not tip.owns_chunk and tip.refs == 2
    assert store.chunks[tip.id] is tip.chunks[0] and tip.chunks[0].refs == 1
    store.append(h, message(10))
    store.append(f, message(11))
    assert store.check().ok
    assert texts(store, h) == [message(i) for i in range(4)] + [message(10)]
    assert texts(store, f) == [message(i) for i in range(4)] + [message(11)]
    store.release(h)
    assert store.check().ok and texts(store, f)[-1] == message(11)
    store.release(f)
    s = store.get_stats()
    assert (s.chunks, s.messages, s.hot.chunks) == (0, 0, 0)  # type: ignore[union-attr]
    assert store.nodes == {}


def test_the_same_history_written_twice_is_one_chain(store: Store) -> None:
    a, b = store.register_agent("a"), store.register_agent("b")
    msgs = [message(i) for i in range(5)]
    h = store.alloc_smu(SMUType.CONVERSATION, msgs, a)
    g = store.alloc_smu(SMUType.CONVERSATION, msgs[:3], b)
    assert store.get_stats().messages == 5  # type: ignore[union-attr]
    assert conv_ref(store, g).tip is conv_ref(store, h).path[2]
    store.append(g, message(99))  # diverges after the shared prefix
    assert store.check().ok
    store.release(h)
    assert texts(store, g) == [*msgs[:3], message(99)] and store.check().ok


def test_content_repeated_elsewhere_is_stored_once(store: Store) -> None:
    a = store.register_agent("a")
    same = message(7)
    h = store.alloc_smu(SMUType.CONVERSATION, [same, message(1), same], a)
    prompt = store.alloc_smu(SMUType.TOOL_RESULT, same, a)  # the same bytes as an SMU
    ref = conv_ref(store, h)
    first, _, last = ref.path
    assert first.chunks[0] is last.chunks[0] and first.chunks[0].refs == 3
    assert store.get_stats().chunks == 2  # type: ignore[union-attr]
    assert store.check().ok
    store.release(h)
    assert bytes(store.read(prompt)) == same and store.check().ok
    store.release(prompt)
    assert store.get_stats().chunks == 0  # type: ignore[union-attr]


def test_an_smu_first_then_the_same_message(store: Store) -> None:
    a = store.register_agent("a")
    same = message(3)
    p = store.alloc_smu(SMUType.TOOL_RESULT, same, a)
    h = store.alloc_smu(SMUType.CONVERSATION, [same], a)
    node = conv_ref(store, h).path[0]
    assert not node.owns_chunk and node.chunks[0].refs == 2
    store.release(p)
    assert texts(store, h) == [same] and store.check().ok


def test_long_messages_are_several_chunks(store: Store) -> None:
    a = store.register_agent("a")
    big = text(5, 60_000)
    h = store.alloc_smu(SMUType.CONVERSATION, [message(0), big, message(1)], a)
    node = conv_ref(store, h).path[1]
    assert not node.owns_chunk and len(node.chunks) > 1 and node.id == chunk_id(big)
    assert texts(store, h) == [message(0), big, message(1)] and store.check().ok
    store.release(h)
    assert store.get_stats().chunks == 0 and store.nodes == {}  # type: ignore[union-attr]


def test_messages_up_to_16_kib_are_one_chunk_found_whole(store: Store) -> None:
    # Above the 4 KiB where other content is cut: a message's own chunk up to
    # MESSAGE_WHOLE_MAX (an index entry a message, not one a cut piece), repeats found whole.
    a = store.register_agent("a")
    mid = text(8, 10_000)
    edge = text(9, constants.MESSAGE_WHOLE_MAX)
    over = text(10, constants.MESSAGE_WHOLE_MAX + 1)
    h = store.alloc_smu(SMUType.CONVERSATION, [mid, edge, over], a)
    first, second, third = conv_ref(store, h).path
    assert first.owns_chunk and second.owns_chunk and first.id == chunk_id(mid)
    assert not third.owns_chunk and len(third.chunks) > 1
    again = store.alloc_smu(SMUType.CONVERSATION, [message(0), mid], a)
    repeat = conv_ref(store, again).path[1]
    assert not repeat.owns_chunk and repeat.chunks[0].id == chunk_id(mid)
    assert repeat.chunks[0].refs == 2 and not first.owns_chunk  # one chunk, held twice now
    # The same bytes as an SMU are cut as SMUs are: they share no chunk with the message.
    smu = store.alloc_smu(SMUType.TOOL_RESULT, mid, a)
    assert repeat.chunks[0].refs == 2
    assert texts(store, h) == [mid, edge, over] and texts(store, again) == [message(0), mid]
    assert store.check().ok
    for handle in (h, again, smu):
        store.release(handle)
    assert store.get_stats().chunks == 0 and store.nodes == {}  # type: ignore[union-attr]


def test_ids_chain_as_message_id_does(store: Store) -> None:
    a = store.register_agent("a")
    msgs = [message(i) for i in range(4)]
    h = store.alloc_smu(SMUType.CONVERSATION, msgs, a)
    mid: MessageId | None = None
    for node, m in zip(conv_ref(store, h).path, msgs, strict=True):
        mid = message_id(mid, chunk_id(m))
        assert message_id_of(node) == mid


@pytest.mark.parametrize("length", [0, 1, MARK_STRIDE - 1, MARK_STRIDE, 3 * MARK_STRIDE + 5])
def test_ranges_read_the_same_with_marks(store: Store, length: int) -> None:
    a = store.register_agent("a")
    msgs = [b"m%d" % i for i in range(length)]
    h = store.alloc_smu(SMUType.CONVERSATION, msgs, a)
    ref = conv_ref(store, h)
    path = ref.path
    assert len(path) == length == store.length(h)
    assert [node_at(ref, i) for i in range(length)] == path
    for start, stop in [(0, None), (1, 5), (-3, None), (MARK_STRIDE - 2, MARK_STRIDE + 2), (5, 2)]:
        assert nodes(ref, start, stop) == path[start:stop]
        assert texts(store, h, start, stop) == msgs[start:stop]
    f = store.fork(h)
    store.append(f, b"more")
    assert texts(store, f) == [*msgs, b"more"] and texts(store, h) == msgs


def test_nodes_move_between_tiers_as_entries_do(store: Store) -> None:
    a = store.register_agent("a")
    msgs = [message(i) for i in range(30)]
    h = store.alloc_smu(SMUType.CONVERSATION, msgs, a)
    store.demote(h)
    assert {n.tier for n in conv_ref(store, h).path} == {Tier.WARM}
    assert texts(store, h) == msgs  # read back, promoted
    assert {n.tier for n in conv_ref(store, h).path} == {Tier.HOT}
    assert store.check().ok


def test_repair_gives_a_node_claimed_twice_an_entry(store: Store) -> None:
    a = store.register_agent("a")
    h = store.alloc_smu(SMUType.CONVERSATION, [message(i) for i in range(3)], a)
    f = store.alloc_smu(SMUType.CONVERSATION, [], a)
    node = conv_ref(store, h).path[1]
    fake = conv_ref(store, f)  # a fault no public call can cause: a second claim, unrecorded
    fake.tip, fake.length = node, 2
    assert isinstance(node, MessageNode) and node.owns_chunk
    assert not store.check().ok
    _before, fixed, unfixable = store.repair()
    assert fixed and unfixable == [] and store.check().ok
    assert not node.owns_chunk and node.refs == 2
