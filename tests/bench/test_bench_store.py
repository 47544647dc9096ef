"""``agentmem bench store`` on small generated data: every section and key is present and sane.

No timing assertions (speeds belong to the machine); the checks are on shape, on verification,
and on the ratios that deduplication and compression must produce on any agent-like data.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentmem.bench import store as bench_store
from agentmem.bench import workloads as wl
from agentmem.config import Config

#: Small enough for a few seconds, large enough that conversations train their dictionary
#: (2 MiB of samples by default) and the throughput SMUs are chunked.
SCALE = 0.2


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    returned = bench_store.run(
        corpus=None,
        json_path=out / "store.json",
        md_path=out / "store.md",
        repeats=1,
        scale=SCALE,
    )
    return {
        "returned": returned,
        "json": json.loads((out / "store.json").read_text()),
        "md": (out / "store.md").read_text(),
    }


@pytest.fixture(scope="module")
def results(run: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = run["json"]
    return data


def test_json_file_is_what_run_returns(run: dict[str, Any]) -> None:
    assert run["json"] == json.loads(json.dumps(run["returned"]))


@pytest.mark.parametrize("section", bench_store.SECTIONS)
def test_every_section_has_raw_stored_ratio(results: dict[str, Any], section: str) -> None:
    sec = results[section]
    assert sec["raw_bytes"] > 0
    assert sec["stored_bytes"] > 0
    assert sec["ratio"] == pytest.approx(sec["raw_bytes"] / sec["stored_bytes"], rel=1e-3)
    assert sec["notes"]


def test_meta_says_generated(results: dict[str, Any], run: dict[str, Any]) -> None:
    assert results["meta"]["data"] == "generated"
    assert results["meta"]["corpus"] is None
    assert results["meta"]["scale"] == SCALE
    assert "**Data: generated**" in run["md"]


def test_conversations_compress_and_read_back(results: dict[str, Any]) -> None:
    c = results["conversations"]
    assert c["verified"] is True
    assert c["agents"] == c["conversations"] > 1
    # A dictionary is trained once a type has dict_train_bytes of frames (8 MiB by default).
    if c["raw_bytes"] > 2 * Config().dict_train_bytes:
        assert c["dictionaries"] >= 1
    assert c["hot_bytes_left"] == 0
    assert c["stored_bytes"] == c["warm_frame_bytes"] + c["dictionary_bytes"]
    assert c["ratio"] > 3
    assert c["ratio_without_dictionaries"] >= c["ratio"]
    for key in (
        "zstd3_per_file_ratio",
        "zstd3_concat_ratio",
        "zstd3_per_conversation_jsonl_ratio",
        "zstd3_concat_jsonl_ratio",
    ):
        assert c[key] > 2, key
    # One stream finds what file-by-file compression cannot.
    assert c["zstd3_concat_ratio"] > c["zstd3_per_file_ratio"]


def test_near_duplicate_prompts_dedup_where_whole_objects_cannot(results: dict[str, Any]) -> None:
    n = results["near_duplicate_prompts"]
    assert n["agents"] == wl.PROMPT_AGENTS
    assert n["distinct_whole_objects"] == n["agents"]
    assert n["whole_object_ratio"] == pytest.approx(1.0, abs=0.01)
    assert n["ratio"] > 5
    assert n["byte_exact_bound_ratio"] >= n["ratio"]
    assert 150 < n["per_agent_field_bytes_mean"] < 600
    assert n["verified"] is True


def test_prompt_versions_dedup_then_compress(results: dict[str, Any]) -> None:
    v = results["prompt_versions"]
    assert v["verified"] is True
    assert v["ratio"] > 1.2
    assert v["warm_ratio_frames_only"] > v["ratio"]
    assert v["warm_ratio"] > 0
    assert v["zstd3_concat_ratio"] > v["zstd3_per_file_ratio"] > 1


def test_throughput_reports_every_run_and_baselines(results: dict[str, Any]) -> None:
    t = results["throughput"]
    assert t["verified"] is True
    assert len(t["runs"]) == len(t["baseline_runs"]) == 1
    for key in ("alloc_mb_s", "demote_mb_s", "read_warm_mb_s"):
        assert t[key] > 0
    for key in ("blake3_mb_s", "fastcdc_mb_s", "zstd3_compress_mb_s", "zstd3_decompress_mb_s"):
        assert t["baseline"][key] > 0
    assert t["smus"] >= 2
    assert t["chunks"] > t["smus"]
    assert t["ratio"] > 2


def test_latency_is_measured_against_baselines(results: dict[str, Any]) -> None:
    lat = results["latency"]
    for key in ("alloc_1kib_ns", "share_content_ns", "append_1kib_ns", "read_hot_1mib_ns"):
        assert lat[key] > 0
    assert lat["read_hot_1mib_zero_copy"] is True
    assert lat["message_bytes"] == 1024
    assert lat["ratio"] == pytest.approx(1.0)  # distinct messages: nothing to deduplicate
    assert set(lat["baseline"]) >= {"dict_insert_1kib_ns", "blake3_1kib_ns"}


def test_metadata_is_measured_per_chunk(results: dict[str, Any]) -> None:
    m = results["metadata_bytes_per_chunk"]
    assert m["large_smu"]["chunks"] > 100
    assert 50 < m["per_chunk"] < 2000
    assert 50 < m["per_1kib_allocation"] < 4000
    assert m["large_smu"]["store_estimate_per_chunk"] > 0
    assert m["kib_smus"]["smus"] == m["kib_smus"]["chunks"]


def test_targets_are_evaluated(results: dict[str, Any]) -> None:
    keys = [t["key"] for t in results["targets"]]
    assert keys == [k for k, *_ in bench_store.TARGETS]
    for t in results["targets"]:
        assert isinstance(t["met"], bool)


def test_markdown_has_every_section(run: dict[str, Any]) -> None:
    for section in bench_store.SECTIONS:
        assert f"## {section}" in run["md"]
    assert "| measure | agentmem |" in run["md"]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="repeats"):
        bench_store.run(repeats=0)
    with pytest.raises(ValueError, match="scale"):
        bench_store.run(scale=0)


# --- workloads -------------------------------------------------------------------------------


def _msg(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def test_parse_one_record_with_messages() -> None:
    doc = {"info": {}, "messages": [_msg("system", "s"), _msg("user", "u")]}
    [(how, messages)] = wl.parse_conversations(json.dumps(doc).encode())
    assert how == "messages"
    assert messages == [
        wl.encode_message(_msg("system", "s")),
        wl.encode_message(_msg("user", "u")),
    ]


def test_parse_list_of_records_and_history_key() -> None:
    doc = [{"conversations": [_msg("user", "a")]}, {"history": [_msg("user", "b")] * 2}]
    got = wl.parse_conversations(json.dumps(doc).encode())
    assert [(how, len(m)) for how, m in got] == [("conversations", 1), ("history", 2)]


def test_parse_toolbench_takes_the_longest_prefix() -> None:
    prefixes = [[_msg("system", "s")], [_msg("system", "s"), _msg("user", "u")]]
    doc = {"tree": {}, "answer_generation": {"train_messages": prefixes}}
    [(how, messages)] = wl.parse_conversations(json.dumps(doc).encode())
    assert how == "train_messages"
    assert len(messages) == 2


def test_parse_falls_back_to_fields_then_lines() -> None:
    [(how, messages)] = wl.parse_conversations(b'{"prompt": "p", "response": "r"}')
    assert how == "fields"
    assert messages == [b'{"prompt":"p"}', b'{"response":"r"}']
    [(how, messages)] = wl.parse_conversations(b"not json\nsecond line\n\n")
    assert how == "lines"
    assert messages == [b"not json", b"second line"]


def test_prompt_fields_go_where_the_prompt_has_them() -> None:
    text = (
        "intro\n - Primary working directory: `<project-dir>`\n - OS Version: Darwin 25.5.0\n"
        " - You are powered by the model named X. The exact model ID is x.\nmiddle\n"
        "Current branch: main Status: [live working-tree status injected here] end\n"
    )
    sc = wl.scenario_from_text(text, "test")
    assert sc.sites.startswith("5 fields in place")
    a, b = sc.render(0).decode(), sc.render(1).decode()
    assert a != b
    assert "<project-dir>" not in a and "[live" not in a
    assert a.startswith("intro\n") and a.endswith(" end\n")
    assert sc.render(0) == a.encode()  # deterministic


def test_prompt_without_fields_gets_one_env_block() -> None:
    text = "line\n" * 100
    sc = wl.scenario_from_text(text, "test")
    assert "inserted" in sc.sites
    assert b"<env>" in sc.render(3)
    assert len(sc.render(3)) == len(text) + sc.per_agent_bytes(3)


def test_generated_data_is_deterministic_and_text_like() -> None:
    a = wl.generated_conversations(200_000)
    b = wl.generated_conversations(200_000)
    assert [c.messages for c in a.conversations] == [c.messages for c in b.conversations]
    assert wl.generated_versions() == wl.generated_versions()
    msgs = wl.kib_messages(b"abc" * 1000, 50)
    assert len(set(msgs)) == 50
    assert {len(m) for m in msgs} == {1024}
