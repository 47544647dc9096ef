"""``agentmem bench store``: what the in-process store saves and what it costs.

Six sections, each figure beside a baseline measured in the same process on the same bytes:

* ``conversations``: every conversation allocated (one agent each) and demoted to warm; stored
  bytes are warm frames *plus* dictionaries, against zstd -3 file by file and concatenated;
* ``near_duplicate_prompts``: 100 agents, one real Claude Code prompt each with its own session
  fields; hot unique bytes against whole-object hashing;
* ``prompt_versions``: every version of the history folders, hot, then warm;
* ``throughput``: allocate, demote and read back large content, against BLAKE3, FastCDC and zstd;
* ``latency``: one 1 KiB allocation, one ``share_content``, one hot 1 MiB read, against a dict
  insert and a BLAKE3 call;
* ``metadata_bytes_per_chunk``: the Python heap the index takes per chunk, *measured* with
  tracemalloc (hot payloads live in memfd segments, which tracemalloc does not see), beside the
  store's own estimate.

Without a corpus every section runs on generated data (``workloads``), and the output says so.
Every section reports ``raw_bytes``, ``stored_bytes`` and ``ratio``; its ``notes`` say what they
mean there. MB is 10**6 bytes. Timings use ``time.perf_counter``; the median of ``repeats`` runs
is kept and every run is reported.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import linecache
import mmap
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import zstandard
from blake3 import blake3

from agentmem.bench import report as rp
from agentmem.bench import workloads as wl
from agentmem.chunking import default_chunker
from agentmem.config import Config
from agentmem.constants import WARM_GROUP_BYTES
from agentmem.ids import Handle
from agentmem.states import SMUType
from agentmem.store import Store, StoreStats

MB = 1_000_000
MIB = 1 << 20

#: Bytes of large content per throughput run, in SMUs of THROUGHPUT_SMU_BYTES ("large content":
#: each is chunked by FastCDC and gets a dedicated hot segment).
THROUGHPUT_BYTES = 64 * MIB
THROUGHPUT_SMU_BYTES = 8 * MIB
#: Calls per latency measurement, timed in batches of LATENCY_BATCH.
LATENCY_CALLS = 20_000
LATENCY_BATCH = 100
#: Distinct 1 KiB allocations traced for metadata per allocation.
METADATA_SMUS = 20_000
#: Generated conversation data (trajectory file bytes) when there is no corpus.
GENERATED_CONVERSATION_BYTES = 20 * MB

#: The sections of the results, in order.
SECTIONS = (
    "conversations",
    "near_duplicate_prompts",
    "prompt_versions",
    "throughput",
    "latency",
    "metadata_bytes_per_chunk",
)
#: (key in the results, comparison, target, what it is)
TARGETS: tuple[tuple[str, str, float, str], ...] = (
    ("conversations.ratio", ">=", 8.0, "conversations: raw / (warm frames + dictionaries)"),
    ("throughput.alloc_mb_s", ">=", 300.0, "alloc large content, MB/s"),
    ("throughput.demote_mb_s", ">=", 150.0, "demote to warm (compress + verify), MB/s"),
    ("throughput.read_warm_mb_s", ">=", 500.0, "read warm content, MB/s"),
    ("latency.alloc_1kib_ns", "<=", 10_000.0, "alloc_smu of 1 KiB, ns"),
    ("latency.share_content_ns", "<=", 1_000.0, "share_content, ns"),
    ("metadata_bytes_per_chunk.per_chunk", "<=", 256.0, "metadata per chunk (large SMU), B"),
)


def _stats(store: Store) -> StoreStats:
    s = store.get_stats()
    assert isinstance(s, StoreStats)
    return s


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else 0.0


def _progress(msg: str) -> None:
    print(f"[bench store] {msg}", file=sys.stderr, flush=True)


# --- zstd baselines --------------------------------------------------------------------------


def zstd_each(buffers: Sequence[bytes], level: int = 3) -> int:
    """Bytes of every buffer compressed alone (one-shot frames), summed."""
    cctx = zstandard.ZstdCompressor(level=level)
    return sum(len(cctx.compress(b)) for b in buffers)


def zstd_stream(buffers: Sequence[bytes], level: int = 3) -> int:
    """Bytes of all buffers compressed as one stream, in order (size unknown up front, as the
    zstd CLI compresses a pipe: level 3 then matches within a 2 MiB window)."""
    cobj = zstandard.ZstdCompressor(level=level).compressobj()
    return sum(len(cobj.compress(b)) for b in buffers) + len(cobj.flush())


# --- conversations ---------------------------------------------------------------------------


def bench_conversations(cs: wl.ConversationSet) -> dict[str, Any]:
    """One agent per conversation, all allocated, then all demoted; read back and compared."""
    store = Store(Config())
    handles: list[Handle] = []
    t0 = time.perf_counter()
    for i, conv in enumerate(cs.conversations):
        agent = store.register_agent(f"conv-{i:05d}")
        handles.append(store.alloc_smu(SMUType.CONVERSATION, conv.messages, agent))
    t1 = time.perf_counter()
    hot = _stats(store)
    moved = sum(store.demote(h) for h in handles)
    t2 = time.perf_counter()
    st = _stats(store)
    verified = all(
        [bytes(m) for m in store.messages(h)] == conv.messages
        for h, conv in zip(handles, cs.conversations, strict=True)
    )
    t3 = time.perf_counter()
    store.close()

    raw = sum(len(m) for c in cs.conversations for m in c.messages)
    frames, dicts, hot_left = st.warm.stored_bytes, st.dictionary_bytes, st.hot.raw_bytes
    stored = frames + dicts + hot_left
    jsonl = [b"\n".join(c.messages) + b"\n" for c in cs.conversations]
    files = [data for _, data in cs.files]
    file_bytes = sum(len(f) for f in files)
    jsonl_bytes = sum(len(j) for j in jsonl)
    return {
        "data": cs.source,
        "notes": "raw_bytes: the message bytes stored (each message as compact JSON); "
        "stored_bytes: warm frames + dictionaries (+ any hot bytes left). zstd3_* baselines: "
        "level 3 over the trajectory files as stored (per file; all files concatenated in "
        "sorted order as one stream); *_jsonl: over the same message bytes as stored, one "
        "JSONL document per conversation (alone; all concatenated). The _jsonl pair compares "
        "like with like.",
        "conversations": len(cs.conversations),
        "messages": sum(len(c.messages) for c in cs.conversations),
        "agents": len(handles),
        "parsed_as": cs.parsed_as,
        "folders": cs.folders,
        "subset": cs.notes,
        "raw_bytes": raw,
        "unique_bytes_hot": hot.unique_bytes,
        "dedup_ratio_hot": _ratio(raw, hot.unique_bytes),
        "bytes_demoted": moved,
        "warm_frame_bytes": frames,
        "warm_frames": st.warm.containers,
        "dictionary_bytes": dicts,
        "dictionaries": st.dictionaries,
        "hot_bytes_left": hot_left,
        "stored_bytes": stored,
        "ratio": _ratio(raw, stored),
        "ratio_without_dictionaries": _ratio(raw, frames + hot_left),
        "metadata_bytes": st.metadata_bytes,
        "ratio_with_metadata": _ratio(raw, stored + st.metadata_bytes),
        "verified": verified,
        "raw_file_bytes": file_bytes,
        "zstd3_per_file_ratio": _ratio(file_bytes, zstd_each(files)),
        "zstd3_concat_ratio": _ratio(file_bytes, zstd_stream(files)),
        "zstd3_per_conversation_jsonl_ratio": _ratio(jsonl_bytes, zstd_each(jsonl)),
        "zstd3_concat_jsonl_ratio": _ratio(jsonl_bytes, zstd_stream(jsonl)),
        "seconds": {
            "alloc": round(t1 - t0, 3),
            "demote": round(t2 - t1, 3),
            "read_and_compare": round(t3 - t2, 3),
        },
    }


# --- near-duplicate prompts ------------------------------------------------------------------


def bench_near_duplicates(sc: wl.PromptScenario, agents: int) -> dict[str, Any]:
    """``agents`` agents each allocate their own copy of one prompt; hot, uncompressed."""
    variants = [sc.render(i) for i in range(agents)]
    store = Store(Config())
    handles = [
        store.alloc_smu(SMUType.SYSTEM_PROMPT, v, store.register_agent(f"agent-{i:03d}"))
        for i, v in enumerate(variants)
    ]
    st = _stats(store)
    verified = all(bytes(store.read(h)) == v for h, v in zip(handles, variants, strict=True))
    one_view = sum(len(store.views(h)) == 1 for h in handles)
    store.close()
    raw = sum(len(v) for v in variants)
    distinct = {blake3(v).digest(): len(v) for v in variants}
    own = [sc.per_agent_bytes(i) for i in range(agents)]
    return {
        "data": sc.source,
        "notes": "raw_bytes: all copies; stored_bytes: hot unique plain bytes "
        "(StoreStats.hot.raw_bytes, nothing compressed). whole_object_ratio: the same copies "
        "deduplicated by hashing each copy whole. byte_exact_bound_ratio: one copy plus every "
        "other agent's own field bytes, the best any dedup could do.",
        "agents": agents,
        "prompt_bytes": sc.base_bytes,
        "sites": sc.sites,
        "per_agent_field_bytes_mean": round(statistics.mean(own), 1),
        "raw_bytes": raw,
        "stored_bytes": st.hot.raw_bytes,
        "ratio": _ratio(raw, st.hot.raw_bytes),
        "hot_segment_bytes": st.hot.stored_bytes,
        "hot_physical_bytes": st.hot.physical_bytes,
        "chunks": st.chunks,
        "metadata_bytes": st.metadata_bytes,
        "ratio_with_metadata": _ratio(raw, st.hot.raw_bytes + st.metadata_bytes),
        "distinct_whole_objects": len(distinct),
        "whole_object_ratio": _ratio(raw, sum(distinct.values())),
        "byte_exact_bound_ratio": _ratio(raw, len(variants[0]) + sum(own[1:])),
        "reads_as_one_view": one_view,
        "verified": verified,
    }


# --- prompt versions -------------------------------------------------------------------------


def bench_versions(versions: Sequence[wl.Version], source: str) -> dict[str, Any]:
    """Every version as its own SMU of one agent, hot; then everything demoted to warm."""
    store = Store(Config())
    agent = store.register_agent("versions")
    handles = [store.alloc_smu(v.smu_type, v.data, agent) for v in versions]
    hot = _stats(store)
    for h in handles:
        store.demote(h)
    st = _stats(store)
    verified = all(bytes(store.read(h)) == v.data for h, v in zip(handles, versions, strict=True))
    pending = sum(store.dictionaries.pending_bytes(t) for t in SMUType)
    store.close()
    raw = sum(len(v.data) for v in versions)
    data = [v.data for v in versions]
    distinct = {blake3(d).digest(): len(d) for d in data}
    warm = st.warm.stored_bytes + st.dictionary_bytes
    folders: dict[str, int] = {}
    for v in versions:
        folder = v.name.rsplit("/", 1)[0]
        folders[folder] = folders.get(folder, 0) + 1
    return {
        "data": source,
        "notes": "raw_bytes: every version file; stored_bytes: hot unique plain bytes. "
        "warm_ratio: raw / (warm frames + dictionary_bytes), where dictionary_bytes counts "
        "trained dictionaries and the training samples still pending (held in memory until a "
        "type has seen dict_train_bytes). zstd3_*: level 3 over the same files.",
        "files": len(versions),
        "folders": folders,
        "raw_bytes": raw,
        "stored_bytes": hot.hot.raw_bytes,
        "ratio": _ratio(raw, hot.hot.raw_bytes),
        "whole_object_ratio": _ratio(raw, sum(distinct.values())),
        "chunks": hot.chunks,
        "metadata_bytes": hot.metadata_bytes,
        "warm_frame_bytes": st.warm.stored_bytes,
        "dictionary_bytes": st.dictionary_bytes,
        "dictionaries": st.dictionaries,
        "pending_sample_bytes": pending,
        "warm_ratio": _ratio(raw, warm),
        "warm_ratio_frames_only": _ratio(raw, st.warm.stored_bytes),
        "zstd3_per_file_ratio": _ratio(raw, zstd_each(data)),
        "zstd3_concat_ratio": _ratio(raw, zstd_stream(data)),
        "verified": verified,
    }


# --- throughput ------------------------------------------------------------------------------


def _mb_s(nbytes: int, seconds: float) -> float:
    return round(nbytes / seconds / MB, 1) if seconds > 0 else 0.0


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _throughput_run(parts: Sequence[bytes]) -> dict[str, Any]:
    gc.collect()
    store = Store(Config())
    agent = store.register_agent("throughput")
    total = sum(len(p) for p in parts)
    # A dictionary is trained once per SMU type per store lifetime; time it apart from the
    # steady state the figures below describe (samples: the content itself, 16 KiB pieces).
    tt = time.perf_counter()
    trained = None
    for p in parts:
        for i in range(0, len(p), 16 << 10):
            trained = trained or store.dictionaries.observe(
                SMUType.TOOL_RESULT, p[i : i + (16 << 10)]
            )
        if trained is not None:
            break
    training_s = time.perf_counter() - tt
    t0 = time.perf_counter()
    handles = [store.alloc_smu(SMUType.TOOL_RESULT, p, agent) for p in parts]
    t1 = time.perf_counter()
    moved = sum(store.demote(h) for h in handles)
    t2 = time.perf_counter()
    back = [store.read(h) for h in handles]
    t3 = time.perf_counter()
    ok = all(b == p for b, p in zip(back, parts, strict=True))
    st = _stats(store)
    del back
    store.close()
    return {
        "alloc_mb_s": _mb_s(total, t1 - t0),
        "demote_mb_s": _mb_s(moved, t2 - t1),
        "dictionary_training_s": round(training_s, 3),
        "read_warm_mb_s": _mb_s(total, t3 - t2),
        "bytes_demoted": moved,
        "unique_bytes": st.warm.raw_bytes,
        "stored_bytes": st.warm.stored_bytes + st.dictionary_bytes,
        "chunks": st.chunks,
        "verified": ok,
    }


def _baseline_run(parts: Sequence[bytes]) -> dict[str, float]:
    total = sum(len(p) for p in parts)
    chunker = default_chunker()
    cctx = zstandard.ZstdCompressor(level=3)
    dctx = zstandard.ZstdDecompressor()
    blocks = [
        p[i : i + WARM_GROUP_BYTES] for p in parts for i in range(0, len(p), WARM_GROUP_BYTES)
    ]
    whole: list[bytes] = []
    grouped: list[bytes] = []
    out = {
        "blake3_mb_s": _timed(lambda: [blake3(p).digest() for p in parts]),
        "fastcdc_mb_s": _timed(lambda: [chunker.cut(p) for p in parts]),
        "zstd3_compress_mb_s": _timed(lambda: whole.extend(cctx.compress(p) for p in parts)),
        "zstd3_compress_64k_mb_s": _timed(lambda: grouped.extend(cctx.compress(b) for b in blocks)),
        "zstd3_decompress_mb_s": _timed(lambda: [dctx.decompress(c) for c in whole]),
        "zstd3_decompress_64k_mb_s": _timed(lambda: [dctx.decompress(c) for c in grouped]),
        "copy_mb_s": _timed(lambda: [bytearray(p) for p in parts]),
    }
    res = {k: _mb_s(total, v) for k, v in out.items()}
    res["zstd3_ratio"] = _ratio(total, sum(len(c) for c in whole))
    res["zstd3_64k_ratio"] = _ratio(total, sum(len(c) for c in grouped))
    return res


def bench_throughput(data: bytes, smu_bytes: int, repeats: int, source: str) -> dict[str, Any]:
    """Large content: allocate (hash + chunk, hot), demote (compress + verify), read warm."""
    parts = list(wl.chunks_of(data, smu_bytes))
    runs = []
    bases = []
    for _ in range(repeats):
        runs.append(_throughput_run(parts))
        bases.append(_baseline_run(parts))

    def med(rows: Sequence[dict[str, Any]], key: str) -> float:
        return round(float(statistics.median(r[key] for r in rows)), 3)

    base = {k: med(bases, k) for k in bases[0]}
    alloc, demote, read = (med(runs, k) for k in ("alloc_mb_s", "demote_mb_s", "read_warm_mb_s"))
    hash_and_cut = 1 / (1 / base["blake3_mb_s"] + 1 / base["fastcdc_mb_s"])
    return {
        "data": source,
        "notes": "raw_bytes: content per run; stored_bytes: warm frames + dictionaries after the "
        "demote (last run). MB/s over plain bytes (demote: bytes moved). Each run uses a fresh "
        "Store with the default Config (verify_frames on), so each demote also trains its "
        "dictionary once. Baselines run on the same bytes in the same process; *_64k over "
        "blocks of WARM_GROUP_BYTES, the store's frame size.",
        "smus": len(parts),
        "smu_bytes": smu_bytes,
        "repeats": repeats,
        "raw_bytes": len(data),
        "stored_bytes": runs[-1]["stored_bytes"],
        "ratio": _ratio(len(data), runs[-1]["stored_bytes"]),
        "chunks": runs[-1]["chunks"],
        "alloc_mb_s": alloc,
        "demote_mb_s": demote,
        "read_warm_mb_s": read,
        "runs": runs,
        "baseline": base,
        "baseline_runs": bases,
        "alloc_vs_blake3_plus_fastcdc": _ratio(alloc, hash_and_cut),
        "demote_vs_zstd3_compress_64k": _ratio(demote, base["zstd3_compress_64k_mb_s"]),
        "read_warm_vs_zstd3_decompress_64k": _ratio(read, base["zstd3_decompress_64k_mb_s"]),
        "verified": all(r["verified"] for r in runs),
    }


# --- latency ---------------------------------------------------------------------------------


def _batched(items: Sequence[Any], fn: Callable[[Any], object], batch: int) -> dict[str, float]:
    """Per-call ns of ``fn(item)`` timed per batch: median (and p10/p90) over the batches."""
    gc.collect()
    per_call: list[float] = []
    clock = time.perf_counter_ns
    for start in range(0, len(items), batch):
        group = items[start : start + batch]
        t = clock()
        for item in group:
            fn(item)
        per_call.append((clock() - t) / len(group))
    per_call.sort()
    n = len(per_call)
    return {
        "median": round(statistics.median(per_call), 1),
        "p10": round(per_call[n // 10], 1),
        "p90": round(per_call[min(n - 1, n * 9 // 10)], 1),
    }


def bench_latency(messages: Sequence[bytes], prompt: bytes, batch: int) -> dict[str, Any]:
    """In-process call latency; every store measurement on a fresh store."""
    store = Store(Config())
    a, b = store.register_agent("a"), store.register_agent("b")
    alloc = store.alloc_smu
    kind = SMUType.TOOL_RESULT
    t_alloc = _batched(messages, lambda m: alloc(kind, m, a), batch)
    st = _stats(store)
    first = alloc(kind, messages[0], a)
    share = store.share_content
    t_share = _batched(messages, lambda _: share(first, b), batch)
    store.close()

    store = Store(Config())
    a = store.register_agent("a")
    conv = store.alloc_smu(SMUType.CONVERSATION, [], a)
    append = store.append
    t_append = _batched(messages, lambda m: append(conv, m), batch)
    store.close()

    store = Store(Config())
    h = store.alloc_smu(SMUType.SYSTEM_PROMPT, prompt, store.register_agent("a"))
    read = store.read
    view = read(h)
    zero_copy = isinstance(view.obj, mmap.mmap) and view == prompt
    del view
    t_read = _batched(messages, lambda _: read(h), batch)
    store.close()

    table: dict[bytes, object] = {}
    t_dict = _batched(messages, lambda m: table.__setitem__(m, None), batch)
    t_blake3 = _batched(messages, lambda m: blake3(m).digest(), batch)
    index: dict[bytes, object] = {}
    t_both = _batched(messages, lambda m: index.__setitem__(blake3(m).digest(), m), batch)
    big = memoryview(prompt)
    t_copy = _batched(messages[: max(1, len(messages) // 10)], lambda _: bytes(big), batch)
    t_slice = _batched(messages, lambda _: big[0 : len(big)], batch)
    size = len(messages[0])
    return {
        "notes": f"per-call ns: each batch of {batch} calls timed with perf_counter_ns, "
        "divided by its size; median (p10, p90) over the batches. raw_bytes: the distinct "
        "messages allocated; stored_bytes: hot unique bytes after those allocations.",
        "calls": len(messages),
        "batch": batch,
        "message_bytes": size,
        "raw_bytes": size * len(messages),
        "stored_bytes": st.hot.raw_bytes,
        "ratio": _ratio(size * len(messages), st.hot.raw_bytes),
        "alloc_1kib_ns": t_alloc["median"],
        "share_content_ns": t_share["median"],
        "append_1kib_ns": t_append["median"],
        "read_hot_1mib_ns": t_read["median"],
        "read_hot_1mib_zero_copy": zero_copy,
        "prompt_bytes": len(prompt),
        "spread": {
            "alloc_1kib": t_alloc,
            "share_content": t_share,
            "append_1kib": t_append,
            "read_hot_1mib": t_read,
        },
        "baseline": {
            "dict_insert_1kib_ns": t_dict["median"],
            "blake3_1kib_ns": t_blake3["median"],
            "blake3_plus_dict_insert_ns": t_both["median"],
            "copy_1mib_ns": t_copy["median"],
            "memoryview_slice_1mib_ns": t_slice["median"],
        },
    }


# --- metadata --------------------------------------------------------------------------------


def _traced(fn: Callable[[], object], sites: int = 0) -> tuple[int, dict[str, int]]:
    """Python-heap bytes still allocated after ``fn()``, as tracemalloc sees them, and the
    ``sites`` source lines that allocated most of them (``path:line  code`` -> bytes)."""
    gc.collect()
    tracemalloc.start()
    try:
        first = tracemalloc.take_snapshot() if sites else None
        before = tracemalloc.get_traced_memory()[0]
        fn()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        top: dict[str, int] = {}
        if first is not None:
            for diff in tracemalloc.take_snapshot().compare_to(first, "lineno"):
                frame = diff.traceback[0]
                if frame.filename == tracemalloc.__file__ or len(top) == sites:
                    continue
                where = "/".join(Path(frame.filename).parts[-2:]) + f":{frame.lineno}"
                code = linecache.getline(frame.filename, frame.lineno).strip()
                top[f"{where}  {code}"] = diff.size_diff
    finally:
        tracemalloc.stop()
    return after - before, top


def bench_metadata(large: bytes, messages: Sequence[bytes]) -> dict[str, Any]:
    """Index bytes per chunk, measured: every input exists before tracing starts, and the hot
    payload goes to memfd segments, so the traced growth is the store's metadata."""
    store = Store(Config())
    agent = store.register_agent("metadata")
    held: list[Handle | None] = [None]

    def alloc_large() -> None:
        held[0] = store.alloc_smu(SMUType.TOOL_RESULT, large, agent)

    traced_large, sites = _traced(alloc_large, sites=6)
    st = _stats(store)
    large_row: dict[str, Any] = {
        "bytes": len(large),
        "chunks": st.chunks,
        "traced_bytes": traced_large,
        "per_chunk": round(traced_large / st.chunks, 1),
        "store_estimate_bytes": st.metadata_bytes,
        "store_estimate_per_chunk": round(st.metadata_bytes / st.chunks, 1),
        "per_chunk_by_site": {k: round(v / st.chunks, 1) for k, v in sites.items()},
    }
    store.close()

    store = Store(Config())
    agent = store.register_agent("metadata")
    handles: list[Handle | None] = [None] * len(messages)
    alloc = store.alloc_smu
    kind = SMUType.TOOL_RESULT

    def alloc_small() -> None:
        for i, m in enumerate(messages):
            handles[i] = alloc(kind, m, agent)

    traced_small, small_sites = _traced(alloc_small, sites=8)
    st = _stats(store)
    n = len(messages)
    small_row = {
        "smus": n,
        "chunks": st.chunks,
        "bytes": sum(len(m) for m in messages),
        "traced_bytes": traced_small,
        "per_allocation": round(traced_small / n, 1),
        "store_estimate_bytes": st.metadata_bytes,
        "store_estimate_per_allocation": round(st.metadata_bytes / n, 1),
        "per_allocation_by_site": {k: round(v / n, 1) for k, v in small_sites.items()},
    }
    store.close()
    return {
        "notes": "traced_bytes: tracemalloc's traced memory after - before one allocation "
        "call (large SMU) or all 1 KiB allocations, inputs created before tracing; nothing of "
        "the payload is on the Python heap (hot chunks live in memfd segments), so nothing is "
        "subtracted. Includes segment objects and dict growth. raw_bytes: plain bytes of the "
        "large SMU; stored_bytes: its measured metadata; ratio: plain bytes per metadata byte.",
        "raw_bytes": len(large),
        "stored_bytes": traced_large,
        "ratio": _ratio(len(large), traced_large),
        "per_chunk": large_row["per_chunk"],
        "per_1kib_allocation": small_row["per_allocation"],
        "large_smu": large_row,
        "kib_smus": small_row,
    }


# --- the run ---------------------------------------------------------------------------------


def _lookup(results: dict[str, Any], dotted: str) -> float:
    section, key = dotted.split(".", 1)
    return float(results[section][key])


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, op, target, what in TARGETS:
        value = _lookup(results, key)
        met = value >= target if op == ">=" else value <= target
        out.append(
            {"key": key, "what": what, "op": op, "target": target, "value": value, "met": met}
        )
    return out


# --- markdown --------------------------------------------------------------------------------


def _summary(r: dict[str, Any]) -> list[list[object]]:
    targets = {t["key"]: t for t in r["targets"]}

    def row(measure: str, value: object, baseline: str, key: str = "") -> list[object]:
        t = targets.get(key)
        if t is None:
            return [measure, value, baseline, "-", "-"]
        return [measure, value, baseline, f"{t['op']} {t['target']:,.0f}", t["met"] or "**no**"]

    c, n, v = r["conversations"], r["near_duplicate_prompts"], r["prompt_versions"]
    t, lat, m = r["throughput"], r["latency"], r["metadata_bytes_per_chunk"]
    tb, lb = t["baseline"], lat["baseline"]
    return [
        row(
            f"conversations ({c['conversations']}, one agent each): raw / (warm frames + dicts)",
            f"{c['ratio']:.2f}x ({c['ratio_without_dictionaries']:.2f}x without dicts)",
            f"zstd -3 on the same message bytes: {c['zstd3_per_conversation_jsonl_ratio']:.2f}x "
            f"per conversation, {c['zstd3_concat_jsonl_ratio']:.2f}x concatenated; on the files: "
            f"{c['zstd3_per_file_ratio']:.2f}x per file, {c['zstd3_concat_ratio']:.2f}x concat",
            "conversations.ratio",
        ),
        row(
            f"{n['agents']} agents x one prompt (`{Path(n['data']).name}`, "
            f"{n['per_agent_field_bytes_mean']:.0f} B of own fields each): raw / hot unique",
            f"{n['ratio']:.2f}x",
            f"whole-object hashing {n['whole_object_ratio']:.2f}x; byte-exact bound "
            f"{n['byte_exact_bound_ratio']:.2f}x",
        ),
        row(
            f"prompt versions ({v['files']} files), hot: raw / hot unique",
            f"{v['ratio']:.2f}x",
            f"whole-object hashing {v['whole_object_ratio']:.2f}x",
        ),
        row(
            "prompt versions, warm: raw / (frames + dicts and pending samples)",
            f"{v['warm_ratio']:.2f}x ({v['warm_ratio_frames_only']:.2f}x frames only)",
            f"zstd -3 per file {v['zstd3_per_file_ratio']:.2f}x, concat "
            f"{v['zstd3_concat_ratio']:.2f}x",
        ),
        row(
            f"alloc large content ({t['smus']} SMUs of {t['smu_bytes'] / MB:.1f} MB), MB/s",
            t["alloc_mb_s"],
            f"BLAKE3 {tb['blake3_mb_s']:,.0f}, FastCDC {tb['fastcdc_mb_s']:,.0f}, copy "
            f"{tb['copy_mb_s']:,.0f}; store = {t['alloc_vs_blake3_plus_fastcdc']:.2f} x "
            "(BLAKE3 then FastCDC)",
            "throughput.alloc_mb_s",
        ),
        row(
            "demote to warm (compress + verify), MB/s",
            t["demote_mb_s"],
            f"zstd -3 compress {tb['zstd3_compress_64k_mb_s']:,.0f} (64 KiB blocks), "
            f"{tb['zstd3_compress_mb_s']:,.0f} (whole SMU)",
            "throughput.demote_mb_s",
        ),
        row(
            "read warm content back, MB/s",
            t["read_warm_mb_s"],
            f"zstd -3 decompress {tb['zstd3_decompress_64k_mb_s']:,.0f} (64 KiB blocks), "
            f"{tb['zstd3_decompress_mb_s']:,.0f} (whole SMU)",
            "throughput.read_warm_mb_s",
        ),
        row(
            "alloc_smu of a 1 KiB message, ns",
            lat["alloc_1kib_ns"],
            f"dict insert {lb['dict_insert_1kib_ns']:,.0f}, BLAKE3 {lb['blake3_1kib_ns']:,.0f}, "
            f"both {lb['blake3_plus_dict_insert_ns']:,.0f}",
            "latency.alloc_1kib_ns",
        ),
        row("share_content, ns", lat["share_content_ns"], "-", "latency.share_content_ns"),
        row("append a 1 KiB message to a conversation, ns", lat["append_1kib_ns"], "-"),
        row(
            f"read a hot 1 MiB prompt (zero-copy: {rp.cell(lat['read_hot_1mib_zero_copy'])}), ns",
            lat["read_hot_1mib_ns"],
            f"copy 1 MiB {lb['copy_1mib_ns']:,.0f}, memoryview slice "
            f"{lb['memoryview_slice_1mib_ns']:,.0f}",
        ),
        row(
            f"metadata per chunk, one SMU of {m['large_smu']['chunks']:,} chunks (tracemalloc), B",
            m["per_chunk"],
            f"store's own estimate {m['large_smu']['store_estimate_per_chunk']:.0f}",
            "metadata_bytes_per_chunk.per_chunk",
        ),
        row(
            f"metadata per 1 KiB SMU allocation ({m['kib_smus']['smus']:,} SMUs), B",
            m["per_1kib_allocation"],
            f"store's own estimate {m['kib_smus']['store_estimate_per_allocation']:.0f}",
        ),
    ]


def _flat(section: dict[str, Any]) -> list[list[object]]:
    rows: list[list[object]] = []
    for k, v in section.items():
        if k in ("notes", "runs", "baseline_runs", "folders", "spread"):
            continue
        if isinstance(v, dict):
            for kk, vv in v.items():
                if isinstance(vv, dict):  # e.g. metadata by allocation site
                    rows += [[f"{k}.{kk}: `{site}`", n] for site, n in vv.items()]
                elif not isinstance(vv, list):
                    rows.append([f"{k}.{kk}", vv])
        elif isinstance(v, list):
            rows.append([k, "; ".join(map(str, v)) or "-"])
        else:
            rows.append([k, v])
    return rows


def render_markdown(r: dict[str, Any]) -> str:
    """The results as markdown: a summary with baselines and targets, then every section."""
    meta = r["meta"]
    out = ["# agentmem bench store", ""]
    if meta["data"] == "generated":
        out.append(
            "**Data: generated** (no `--corpus`): deterministic look-alike agent data. The "
            "figures describe that data, not real agents; run with `--corpus` for those."
        )
    else:
        out.append(f"Data: corpus at `{meta['corpus']}`.")
    out += [
        "",
        f"Python {meta['python']} on {meta['machine']}, {meta['cpus']} CPUs; zstandard "
        f"{meta['zstandard']}; timings: median of {meta['repeats']} runs; scale {meta['scale']}; "
        f"{meta['elapsed_s']} s in all. MB = 10^6 bytes.",
        "",
    ]
    out += rp.table(
        ["measure", "agentmem", "baseline (same run, same bytes)", "target", "met"], _summary(r)
    )
    out += ["## conversations: folders", ""]
    out += rp.table(
        ["folder", "files", "conversations", "messages", "file bytes", "message bytes"],
        [[k, *v.values()] for k, v in r["conversations"]["folders"].items()],
        right=5,
    )
    t = r["throughput"]
    cols = [("alloc", "alloc_mb_s"), ("demote", "demote_mb_s"), ("read warm", "read_warm_mb_s")]
    base = [("BLAKE3", "blake3_mb_s"), ("FastCDC", "fastcdc_mb_s")]
    base += [("zstd -3 c 64K", "zstd3_compress_64k_mb_s")]
    base += [("zstd -3 d 64K", "zstd3_decompress_64k_mb_s")]
    out += ["## throughput: every run (MB/s)", ""]
    out += rp.table(
        ["run"] + [name for name, _ in cols + base],
        [
            [i + 1] + [x[k] for _, k in cols] + [b[k] for _, k in base]
            for i, (x, b) in enumerate(zip(t["runs"], t["baseline_runs"], strict=True))
        ],
        right=len(cols) + len(base),
    )
    for name in SECTIONS:
        sec = r[name]
        out += [f"## {name}", "", sec["notes"], ""]
        out += rp.table(["field", "value"], _flat(sec), right=2)
    return "\n".join(out)


def run(
    corpus: Path | None = None,
    json_path: Path | None = None,
    md_path: Path | None = None,
    repeats: int = 5,
    scale: float = 1.0,
) -> dict[str, Any]:
    """Run every section; print the markdown tables; write JSON (and markdown) if asked.

    ``scale`` < 1 shrinks every workload (for tests: a fraction of the corpus files, fewer
    bytes and calls); the output records it. Returns the results written as JSON.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    if not 0 < scale <= 1:
        raise ValueError("scale must be in (0, 1]")
    started = time.perf_counter()
    tp_bytes = max(MIB, int(THROUGHPUT_BYTES * scale))
    smu_bytes = max(MIB // 8, int(THROUGHPUT_SMU_BYTES * scale))
    calls = max(10 * LATENCY_BATCH, int(LATENCY_CALLS * scale))
    n_meta = max(10 * LATENCY_BATCH, int(METADATA_SMUS * scale))
    label = "corpus" if corpus is not None else "generated"

    _progress(f"loading {label} data")
    if corpus is not None:
        convs = wl.load_conversations(corpus, fraction=scale)
        prompt_path = wl.claude_code_prompt(corpus)
        scenario = (
            wl.scenario_from_text(
                prompt_path.read_text(encoding="utf-8"), str(prompt_path.relative_to(corpus))
            )
            if prompt_path is not None
            else wl.generated_prompt()
        )
        versions = wl.corpus_versions(corpus)
        versions_source = f"corpus: {corpus} (system_prompts/*-history, tool_defs/*-history)"
        large = wl.concatenated(convs.files, tp_bytes)
        large_source = f"corpus conversation files in path order, first {tp_bytes} bytes"
    else:
        convs = wl.generated_conversations(int(GENERATED_CONVERSATION_BYTES * scale))
        scenario = wl.generated_prompt()
        versions = wl.generated_versions()
        versions_source = "generated (6 prompts x 8 versions, a few line edits apart)"
        large = wl.concatenated(wl.generated_conversations(tp_bytes, seed=8).files, tp_bytes)
        large_source = f"generated trajectory files (seed 8), {tp_bytes} bytes"
    _progress(f"near-duplicate prompt: {scenario.source}")
    messages = wl.kib_messages(large, max(calls, n_meta))
    prompt = wl.prompt_text(corpus, MIB)

    results: dict[str, Any] = {
        "meta": {
            "benchmark": "agentmem bench store",
            "data": label,
            "corpus": str(corpus) if corpus is not None else None,
            "scale": scale,
            "repeats": repeats,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "zstandard": zstandard.__version__,
            "config": dataclasses.asdict(Config()),
        }
    }
    sections: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("conversations", lambda: bench_conversations(convs)),
        (
            "near_duplicate_prompts",
            lambda: bench_near_duplicates(scenario, wl.PROMPT_AGENTS),
        ),
        ("prompt_versions", lambda: bench_versions(versions, versions_source)),
        ("throughput", lambda: bench_throughput(large, smu_bytes, repeats, large_source)),
        ("latency", lambda: bench_latency(messages[:calls], prompt, LATENCY_BATCH)),
        ("metadata_bytes_per_chunk", lambda: bench_metadata(large, messages[:n_meta])),
    ]
    for name, fn in sections:
        _progress(name)
        t = time.perf_counter()
        results[name] = fn()
        results[name]["elapsed_s"] = round(time.perf_counter() - t, 2)
    results["targets"] = evaluate_targets(results)
    results["meta"]["elapsed_s"] = round(time.perf_counter() - started, 1)

    md = render_markdown(results)
    print(md)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2) + "\n")
    if md_path is not None:
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(md)
    return results
