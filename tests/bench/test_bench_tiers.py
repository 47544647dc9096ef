"""``agentmem bench tiers`` on a tiny generated trace: the report's shape, that every replay saw
the same trace, that hot bytes kept to the budget, and that the files are written.

No timing assertions, and none on which policy wins: that is what the benchmark measures.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from typing import Any

import pytest

from agentmem.bench import tiers

#: A few seconds: six agents (products 0 and 1 have two each) for 15 simulated minutes, enough
#: for sessions to start and end and for the budget to bite.
AGENTS = 6
SPAN_S = 900.0


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    returned = tiers.run(
        json_path=out / "tiers.json",
        md_path=out / "tiers.md",
        agents=AGENTS,
        quick=True,
        span_s=SPAN_S,
    )
    return {
        "returned": returned,
        "json": json.loads((out / "tiers.json").read_text()),
        "md": (out / "tiers.md").read_text(),
    }


@pytest.fixture(scope="module")
def results(run: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = run["json"]
    return data


def _replays(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [results[sc][p] for sc in tiers.SCENARIOS for p in tiers.POLICIES]


def test_json_file_is_what_run_returns(run: dict[str, Any]) -> None:
    assert run["json"] == json.loads(json.dumps(run["returned"]))


def test_markdown_says_generated_and_has_every_table(run: dict[str, Any]) -> None:
    md = run["md"]
    assert md.startswith("# agentmem bench tiers")
    assert "**Data: generated**" in md
    for heading in ("## Targets", "## Every replay", "## Reads by the coldest tier"):
        assert heading in md
    for sc in tiers.SCENARIOS:
        assert f"## Bytes per tier over time, {sc}" in md


def test_meta_records_the_trace_and_budgets(results: dict[str, Any]) -> None:
    meta = results["meta"]
    assert meta["data"] == "generated" and meta["corpus"] is None
    assert meta["agents"] == AGENTS and meta["span_s"] == SPAN_S
    assert meta["trace"]["sessions"] > 0 and meta["trace"]["requests"] > 0
    ws = meta["working_set_bytes"]
    assert ws > 0
    assert meta["hot_budget_bytes"] == int(ws * tiers.HOT_FRACTION) < ws
    assert meta["config"]["hot_budget_bytes"] == meta["hot_budget_bytes"]


def test_every_replay_saw_the_same_trace(results: dict[str, Any]) -> None:
    trace = results["meta"]["trace"]
    for r in _replays(results):
        assert r["appends"] == trace["appends"]
        assert r["reads_total"] == 3 * trace["requests"]  # prompt, tools, conversation
        assert sum(t["calls"] for t in r["reads"].values()) == r["reads_total"]


@pytest.mark.parametrize("scenario", tiers.SCENARIOS)
def test_hot_bytes_stay_within_budget_and_one_segment(
    results: dict[str, Any], scenario: str
) -> None:
    segment = results["meta"]["config"]["segment_bytes"]
    for policy in tiers.POLICIES:
        r = results[scenario][policy]
        assert r["budget_bytes"] == results["meta"]["hot_budget_bytes"]
        assert r["hot_max_bytes"] <= r["budget_bytes"] + segment
        assert r["max_over_budget_bytes"] == max(0, r["hot_max_bytes"] - r["budget_bytes"])
        assert all(s["hot_bytes"] <= r["budget_bytes"] + segment for s in r["series"])


def test_promotions_are_the_reads_that_were_not_hot(results: dict[str, Any]) -> None:
    for r in _replays(results):
        # Only active agents read; a read of content not all hot promotes it once, or is
        # served decoded when even demoting cannot make room.
        assert r["promotions_by_state"]["idle"] == 0
        assert r["promotions_total"] == r["promotions_active"]
        not_hot = r["reads"]["warm"]["calls"] + r["reads"]["cold"]["calls"]
        by_phase = r["promoting_reads"]
        promoting_reads = sum(sum(v.values()) for v in by_phase.values())
        assert promoting_reads + r["reads_served_decoded"] == not_hot
        # the rest are appends that wrote demoted content again (it is in use again)
        assert r["promotions_active"] == promoting_reads + r["promotions_active_on_append"]
        assert r["promotions_active_session_start"] == sum(by_phase["session_start"].values())
        assert r["promotions_active_mid_session"] == sum(by_phase["mid_session"].values())
        for phase, shared in r["promoting_reads_shared_only"].items():
            assert 0 <= shared <= by_phase[phase]["conversation"]


def test_ratio_and_targets(results: dict[str, Any]) -> None:
    for sc in tiers.SCENARIOS:
        s, lru = results[sc]["semantic"], results[sc]["lru"]
        ratio = results[sc]["ratio"]["promotions_active"]
        if lru["promotions_active"]:
            assert ratio == pytest.approx(s["promotions_active"] / lru["promotions_active"], 1e-2)
        else:
            assert ratio is None
    targets = results["targets"]
    assert [t["key"] for t in targets] == [t.key for t in tiers.TARGETS]
    for t in targets:
        assert isinstance(t["met"], bool)
        if "over_budget" in t["key"]:
            assert t["met"]


def test_series_covers_the_span(results: dict[str, Any]) -> None:
    for r in _replays(results):
        times = [s["t_s"] for s in r["series"]]
        assert times[0] == 0.0
        assert times[-1] >= SPAN_S - tiers.SAMPLE_EVERY_S
        assert all(
            b - a == pytest.approx(tiers.SAMPLE_EVERY_S) for a, b in itertools.pairwise(times)
        )


def test_trace_is_deterministic_and_well_formed() -> None:
    trace = tiers.build_trace(AGENTS, SPAN_S, seed=3)
    assert trace == tiers.build_trace(AGENTS, SPAN_S, seed=3)
    assert trace != tiers.build_trace(AGENTS, SPAN_S, seed=4)
    assert trace == sorted(trace)
    assert all(0 <= e.t < SPAN_S for e in trace)
    # Per agent: a session starts, then replies; only the last one idles the agent.
    for agent in range(AGENTS):
        kinds = [e.kind for e in trace if e.agent == agent]
        active = False
        for k in kinds:
            assert (k is tiers.Kind.START) is not active
            active = k is not tiers.Kind.LAST
    counts = Counter(e.kind for e in trace)
    assert counts[tiers.Kind.START] >= counts[tiers.Kind.LAST]


def test_an_agent_does_not_depend_on_how_many_there_are() -> None:
    few = [e for e in tiers.build_trace(3, SPAN_S) if e.agent == 1]
    many = [e for e in tiers.build_trace(30, SPAN_S) if e.agent == 1]
    assert few == many


def test_working_set_holds_each_product_prompt_once(results: dict[str, Any]) -> None:
    meta = results["meta"]
    assert len(meta["prompt_bytes"]) == len(meta["tool_bytes"]) == tiers.PRODUCTS
    shared = sum(meta["prompt_bytes"]) + sum(meta["tool_bytes"])
    assert shared < meta["working_set_bytes"] < shared + 8 * meta["trace"]["appends"] * 4096
