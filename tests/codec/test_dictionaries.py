"""Dictionaries: content-addressed ids, training, and the per-SMU-type DictionarySet."""

from __future__ import annotations

import json
import random

import pytest

from agentmem.codec import (
    HEADER,
    Dictionary,
    DictionarySet,
    decode_frame,
    dictionary_id,
    encode_frame,
    read_header,
    train_dictionary,
)
from agentmem.codec import dictionaries as dictionaries_module
from agentmem.errors import InvalidArgument, UnknownDictionary
from agentmem.hashing import chunk_id
from agentmem.states import SMUType

# --- generated agent messages --------------------------------------------------------------

_SENTENCE = (
    "the test fails because the function returns None instead of the expected value so I will "
    "read the file first then look at how the parser handles nested models and fix the bug in "
    "the separability matrix before running the whole suite again with verbose output"
)
_WORDS = _SENTENCE.split(" ")
_FILES = ["src/parser.py", "tests/test_parser.py", "setup.cfg", "lib/models/core.py", "README.md"]
_TOOLS = ["bash", "read_file", "edit_file", "search", "run_tests"]


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def agent_message(rng: random.Random) -> bytes:
    """One JSON chat message as agent frameworks log them: 0.2-2 KiB, role + content + tools."""
    kind = rng.choice(["user", "assistant", "tool", "assistant"])
    if kind == "assistant":
        name = rng.choice(_TOOLS)
        args: dict[str, object] = {"command": f"grep -rn {rng.choice(_WORDS)} {rng.choice(_FILES)}"}
        if name != "bash":
            args = {"path": rng.choice(_FILES), "line": rng.randint(1, 900)}
        msg: dict[str, object] = {
            "role": "assistant",
            "content": "THOUGHT: " + " ".join(_sentence(rng, 12) for _ in range(rng.randint(1, 5))),
            "tool_calls": [
                {
                    "id": f"call_{rng.getrandbits(64):016x}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
            ],
        }
    elif kind == "tool":
        lines = [
            f"{rng.choice(_FILES)}:{rng.randint(1, 999)}:    {_sentence(rng, 6)}"
            for _ in range(rng.randint(2, 20))
        ]
        msg = {
            "role": "tool",
            "tool_call_id": f"call_{rng.getrandbits(64):016x}",
            "content": f"<returncode>{rng.choice([0, 0, 1])}</returncode>\n<output>\n"
            + "\n".join(lines)
            + "\n</output>",
        }
    else:
        msg = {"role": "user", "content": " ".join(_sentence(rng, 10) for _ in range(3))}
    return json.dumps(msg).encode()


def agent_messages(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    return [agent_message(rng) for _ in range(count)]


@pytest.fixture(scope="module")
def trained() -> Dictionary:
    d = train_dictionary(agent_messages(1, 2000), SMUType.CONVERSATION, 16 << 10)
    assert d is not None
    return d


# --- ids and the Dictionary value ----------------------------------------------------------


def test_dictionary_id_is_blake3_prefix() -> None:
    data = b"agentmem"
    assert dictionary_id(data) == int.from_bytes(chunk_id(data)[:4], "little")
    assert dictionary_id(data) == 0xD7308CDA  # pinned: ids must be stable across releases


def test_dictionary_id_never_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    class ZeroDigest:
        def __init__(self, data: bytes) -> None:
            pass

        def digest(self) -> bytes:
            return bytes(32)

    monkeypatch.setattr(dictionaries_module, "blake3", ZeroDigest)
    assert dictionary_id(b"anything") == 1


def test_dictionary_validation() -> None:
    data = b"x" * 64
    Dictionary(dictionary_id(data), SMUType.TOOL_DEF, data)
    with pytest.raises(InvalidArgument, match="does not match"):
        Dictionary(dictionary_id(data) ^ 1, SMUType.TOOL_DEF, data)
    with pytest.raises(InvalidArgument, match="shorter"):
        Dictionary.from_data(b"1234567", SMUType.TOOL_DEF)
    with pytest.raises(InvalidArgument):
        Dictionary.from_data(bytearray(data), SMUType.TOOL_DEF)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        Dictionary.from_data(data, 3)  # type: ignore[arg-type]


def test_parsed_forms_are_cached_and_not_part_of_equality(trained: Dictionary) -> None:
    fresh = Dictionary.from_data(trained.data, trained.smu_type)
    assert trained.zstd is trained.zstd
    assert trained.zstd_for_level(3) is trained.zstd_for_level(3)
    assert trained.zstd_for_level(3) is not trained.zstd_for_level(9)
    assert fresh == trained
    assert hash(fresh) == hash(trained)
    assert "_zstd" not in repr(trained)


# --- training ------------------------------------------------------------------------------


def test_training_needs_enough_samples() -> None:
    assert train_dictionary([], SMUType.CONVERSATION, 4096) is None
    assert train_dictionary([b"", b""], SMUType.CONVERSATION, 4096) is None
    assert train_dictionary(agent_messages(2, 3), SMUType.CONVERSATION, 4096) is None
    assert train_dictionary(agent_messages(2, 50), SMUType.CONVERSATION, 4096) is not None
    with pytest.raises(InvalidArgument):
        train_dictionary(agent_messages(2, 50), SMUType.CONVERSATION, 255)


def test_training_is_deterministic() -> None:
    samples = agent_messages(3, 300)
    a = train_dictionary(samples, SMUType.TOOL_RESULT, 4096)
    b = train_dictionary(list(samples), SMUType.TOOL_RESULT, 4096)
    assert a is not None
    assert a == b
    assert len(a.data) <= 4096


def test_dictionary_improves_small_message_compression(trained: Dictionary) -> None:
    """The reason dictionaries exist: ~1 KiB messages compress far better with one."""
    messages = [m for m in agent_messages(99, 400) if 300 <= len(m) <= 2048]
    assert len(messages) > 100
    raw = sum(len(m) for m in messages)
    without = sum(len(encode_frame(m)) for m in messages)
    with_dict = [encode_frame(m, dictionary=trained) for m in messages]
    ratio_without = raw / without
    ratio_with = raw / sum(len(f) for f in with_dict)
    assert ratio_with > ratio_without * 1.3, (ratio_with, ratio_without)
    assert all(read_header(f).dict_id == trained.dict_id for f in with_dict)
    lookup = {trained.dict_id: trained}
    assert [decode_frame(f, lookup) for f in with_dict] == messages


# --- DictionarySet -------------------------------------------------------------------------


def test_set_trains_exactly_once_at_threshold() -> None:
    dset = DictionarySet(train_bytes=100_000, dict_size=8192)
    seen = 0
    trained_at = []
    for i, m in enumerate(agent_messages(4, 1500)):
        seen += len(m)
        result = dset.observe(SMUType.CONVERSATION, m)
        if result is not None:
            trained_at.append((i, seen))
            assert dset.current(SMUType.CONVERSATION) is result
            assert dset[result.dict_id] is result
    assert len(trained_at) == 1
    index, seen_then = trained_at[0]
    assert seen_then >= 100_000
    assert seen_then - len(agent_messages(4, 1500)[index]) < 100_000  # the first call past it
    assert dset.pending_bytes(SMUType.CONVERSATION) == 0
    assert len(dset) == 1


def test_types_train_independently() -> None:
    dset = DictionarySet(train_bytes=30_000, dict_size=4096)
    for m in agent_messages(5, 200):
        dset.observe(SMUType.TOOL_RESULT, m)
    assert dset.current(SMUType.TOOL_RESULT) is not None
    assert dset.current(SMUType.CONVERSATION) is None
    assert dset.current(SMUType.SYSTEM_PROMPT) is None


def test_old_dictionary_stays_readable(trained: Dictionary) -> None:
    dset = DictionarySet(train_bytes=1 << 20, dict_size=8192)
    dset.add(trained)
    message = agent_messages(6, 1)[0]
    old_frame = encode_frame(message, dictionary=dset.current(SMUType.CONVERSATION))
    newer = train_dictionary(agent_messages(7, 1000), SMUType.CONVERSATION, 8192)
    assert newer is not None
    assert newer.dict_id != trained.dict_id
    dset.add(newer)
    assert dset.current(SMUType.CONVERSATION) is newer
    assert len(dset) == 2
    assert decode_frame(old_frame, dset) == message
    assert set(dset) == {trained.dict_id, newer.dict_id}  # iteration yields ids, like a Mapping
    assert dict(dset) == {trained.dict_id: trained, newer.dict_id: newer}


def test_add_without_making_current(trained: Dictionary) -> None:
    dset = DictionarySet(train_bytes=1 << 20, dict_size=8192)
    dset.add(trained, current=False)
    assert dset.current(SMUType.CONVERSATION) is None
    assert dset.get(trained.dict_id) is trained
    dset.add(trained)  # adding again is harmless
    assert dset.current(SMUType.CONVERSATION) is trained
    assert len(dset) == 1


def test_add_refuses_id_collision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dictionaries_module, "dictionary_id", lambda data: 42)
    dset = DictionarySet(train_bytes=1 << 20, dict_size=8192)
    dset.add(Dictionary(42, SMUType.TOOL_DEF, b"a" * 16))
    with pytest.raises(InvalidArgument, match="collision"):
        dset.add(Dictionary(42, SMUType.TOOL_DEF, b"b" * 16))


def test_unknown_id() -> None:
    dset = DictionarySet(train_bytes=1 << 20, dict_size=8192)
    with pytest.raises(UnknownDictionary):
        dset.get(1234)
    with pytest.raises(UnknownDictionary):
        dset[1234]
    assert 1234 not in dset
    assert dset.get(1234, None) is None
    frame = encode_frame(b"abc " * 500, dictionary=Dictionary.from_data(b"abc " * 8, SMUType.BLOB))
    with pytest.raises(UnknownDictionary):
        decode_frame(frame, dset)


def test_blob_never_trains() -> None:
    dset = DictionarySet(train_bytes=10_000, dict_size=4096)
    for m in agent_messages(8, 500):
        assert dset.observe(SMUType.BLOB, m) is None
    assert dset.current(SMUType.BLOB) is None
    assert dset.pending_bytes(SMUType.BLOB) == 0
    assert dset.memory_bytes == 0


def test_memory_is_bounded() -> None:
    train_bytes = 200_000
    dset = DictionarySet(train_bytes=train_bytes, dict_size=4096)
    rng = random.Random(9)
    trainable = [t for t in SMUType if t is not SMUType.BLOB]
    huge = b"x" * (1 << 20)
    for i in range(400):
        smu_type = trainable[i % len(trainable)]
        sample = huge if i % 50 == 0 else agent_message(rng)
        dset.observe(smu_type, sample)
        for t in trainable:
            assert dset.pending_bytes(t) < train_bytes  # between calls, per type
        dict_bytes = sum(len(d.data) for d in dset.values())
        assert dset.memory_bytes <= dict_bytes + len(trainable) * train_bytes
    # a 1 MiB sample counts for its first 64 KiB only
    assert dset.pending_bytes(SMUType.CONVERSATION) <= train_bytes


def test_failed_training_frees_samples_and_stops_collecting() -> None:
    dset = DictionarySet(train_bytes=100, dict_size=4096)
    assert dset.observe(SMUType.TOOL_DEF, b"y" * 60) is None
    assert dset.observe(SMUType.TOOL_DEF, b"z" * 60) is None  # 2 samples: zstd cannot train
    assert dset.current(SMUType.TOOL_DEF) is None
    assert dset.memory_bytes == 0
    assert dset.observe(SMUType.TOOL_DEF, b"w" * 500) is None
    assert dset.pending_bytes(SMUType.TOOL_DEF) == 0


def test_observe_copies_the_sample() -> None:
    dset = DictionarySet(train_bytes=1 << 20, dict_size=4096)
    buf = bytearray(b"q" * 100)
    dset.observe(SMUType.CONVERSATION, memoryview(buf))
    buf[:] = b"r" * 100
    assert dset._samples[SMUType.CONVERSATION] == [b"q" * 100]  # white box: kept a copy
    assert dset.observe(SMUType.CONVERSATION, b"") is None
    assert dset.pending_bytes(SMUType.CONVERSATION) == 100


def test_set_validates_arguments() -> None:
    with pytest.raises(InvalidArgument):
        DictionarySet(train_bytes=0, dict_size=4096)
    with pytest.raises(InvalidArgument):
        DictionarySet(train_bytes=1000, dict_size=100)


def test_frames_written_with_set_dictionary_decode(trained: Dictionary) -> None:
    dset = DictionarySet(train_bytes=1 << 20, dict_size=8192)
    dset.add(trained)
    for m in agent_messages(10, 50):
        f = encode_frame(m, dictionary=dset.current(SMUType.CONVERSATION))
        assert len(f) >= HEADER.size
        assert decode_frame(f, dset) == m
