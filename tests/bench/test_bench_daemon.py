"""``agentmem bench daemon`` at quick sizes: every section and key is present and sane.

No timing assertions (speeds belong to the machine and its load); the checks are on shape, on
the counts each section promises, on errors (none), and on what sharing must do to memory on
any machine: one mapped copy costs less PSS than a private copy per process.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agentmem.bench import daemon as bench_daemon
from agentmem.bench import echo, fleet, pss, spawn
from agentmem.bench import report as rp
from agentmem.cli.main import build_parser

pytestmark = pytest.mark.slow

SIZES = bench_daemon.QUICK


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    returned = bench_daemon.run(
        json_path=out / "daemon.json", md_path=out / "daemon.md", repeats=2, quick=True
    )
    return {
        "returned": returned,
        "json": json.loads((out / "daemon.json").read_text()),
        "md": (out / "daemon.md").read_text(),
    }


@pytest.fixture(scope="module")
def results(run: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = run["json"]
    return data


def test_json_file_is_what_run_returns(run: dict[str, Any]) -> None:
    assert run["json"] == json.loads(json.dumps(run["returned"]))


def test_meta_records_the_sizes(results: dict[str, Any]) -> None:
    meta = results["meta"]
    assert meta["quick"] is True
    assert meta["repeats"] == 2
    assert meta["sizes"]["spawns"] == SIZES.spawns
    assert meta["prompt_source"]


@pytest.mark.parametrize("section", bench_daemon.SECTIONS)
def test_every_section_has_notes_and_time(results: dict[str, Any], section: str) -> None:
    assert results[section]["notes"]
    assert results[section]["elapsed_s"] >= 0


def test_placements_are_recorded(results: dict[str, Any]) -> None:
    places = results["meta"]["placements"]
    assert places == {k: list(v) for k, v in fleet.placements().items()}
    assert list(results["ops"]["placements"]) == list(places)
    client, server = places["same_cpu"]
    assert client == server
    if "cross_cpu" in places:
        client, server = places["cross_cpu"]
        assert client != server


@pytest.mark.parametrize("kind", echo.KINDS)
def test_echo_kinds_are_measured(results: dict[str, Any], kind: str) -> None:
    e = results["echo"][kind]
    if e is None:  # uvloop is optional
        assert kind == "uvloop_protocol"
        return
    assert set(e) == set(results["meta"]["placements"])
    for fig in e.values():
        assert 0 < fig["p50_us"] <= fig["p99_us"]
        assert fig["calls"] == 2 * SIZES.echo_calls
        assert len(fig["runs_p50_us"]) == 2
        assert fig["server_cpu_us"] >= 0
        assert fig["client_cpu_us"] >= 0


@pytest.mark.parametrize("op", bench_daemon.OPS)
def test_ops_are_measured_against_the_echo(results: dict[str, Any], op: str) -> None:
    ops = results["ops"]
    for place in ops["placements"]:
        at = ops[place]
        f = at[op]
        assert 0 < f["p50_us"] <= f["p99_us"]
        assert f["calls"] == 2 * bench_daemon._op_counts(op, SIZES)[0]
        ratios = sorted(
            p / e for p, e in zip(f["runs_p50_us"], at["echo_runs_p50_us"], strict=True)
        )
        assert f["ratio_to_echo"] == pytest.approx((ratios[0] + ratios[1]) / 2, abs=0.01)
        assert f["ratio_to_framing_echo"] > 0
        assert f["daemon_cpu_us"] >= 0
        assert f["client_cpu_us"] >= 0
        assert at["echo_p50_us"] > 0
        assert at["framing_echo_p50_us"] > 0
    assert ops["inprocess_p50_us"][op] > 0
    worst = max(ops[place][op]["ratio_to_echo"] for place in ops["placements"])
    assert ops["worst_ratio_to_echo"][op] == worst


def test_the_walk_is_measured_beside_another_client(results: dict[str, Any]) -> None:
    w = results["walk"]
    assert w["notes"] and w["elapsed_s"] >= 0
    # the agents' conversations, the other client's one message
    assert w["messages"] == SIZES.walk_agents * SIZES.walk_messages + 1
    assert len(w["runs_walk_ms"]) == 2 and w["walk_ms"] > 0 and w["walk_daemon_cpu_ms"] >= 0
    if w["during_calls"]:  # the other client's round trips while the walk went on
        assert 0 < w["during_p50_us"] <= w["during_max_us"]
    assert 0 < w["baseline_p50_us"] <= w["baseline_max_us"]
    assert "fresh whole-domain get_stats" in bench_daemon.render_markdown(results)


def test_the_demotion_is_measured_beside_another_client(results: dict[str, Any]) -> None:
    dm = results["demote"]
    assert dm["notes"] and dm["agents"] == SIZES.demote_agents
    assert len(dm["runs_demote_ms"]) == 2 and dm["demote_ms"] > 0
    assert 0 < dm["during_p50_us"] <= dm["during_max_us"]  # the client was answered meanwhile
    assert 0 < dm["baseline_p50_us"] <= dm["baseline_max_us"]
    assert dm["read_back_ms"] > 0 and dm["read_back_p50_us"] <= dm["read_back_max_us"]
    assert "idle histories" in bench_daemon.render_markdown(results)


def test_hot_read_is_zero_copy(results: dict[str, Any]) -> None:
    assert results["ops"]["read_1mib_zero_copy"] is True


def test_throughput_levels(results: dict[str, Any]) -> None:
    t = results["throughput"]
    assert [lv["clients"] for lv in t["levels"]] == list(SIZES.throughput_clients)
    assert t["errors"] == 0
    for lv in t["levels"]:
        assert lv["errors"] == 0
        assert lv["ops"] > 0
        assert lv["ops_s"] > 0
        assert lv["daemon_cpu_s"] >= 0
        assert len(lv["runs_ops_s"]) == min(2, SIZES.throughput_runs)
    assert t["inprocess_ops_s"] > 0
    assert t["echo_bound_ops_s"] > 0


def test_connections_all_served_without_error(results: dict[str, Any]) -> None:
    c = results["connections"]
    n = SIZES.connection_procs * SIZES.connections_per_proc
    assert c["connections"] == c["connected"] == c["served"] == n
    assert c["errors"] == 0, c["first_errors"]
    assert c["agents_registered"] == n + 1  # and the observer
    assert c["daemon_fds_held"] >= c["daemon_fds_idle"] + n
    assert c["agents_after_close"] == 0
    assert c["daemon_fds_after_close"] < c["daemon_fds_held"]
    assert c["daemon_pss_held_bytes"] > 0
    assert c["clients_pss_bytes"] > 0


def test_spawn_phases_and_baselines(results: dict[str, Any]) -> None:
    s = results["spawn"]
    assert s["spawns"] == SIZES.spawns
    assert s["zero_copy"] is True
    assert s["prompt_bytes"] == SIZES.spawn_prompt_bytes
    for key in spawn.SPAWN_PHASES + spawn.SPAWN_BASELINES:
        assert 0 < s[key]["p50_us"] <= s[key]["p99_us"], key
    assert s["total"]["p50_us"] >= s["hello"]["p50_us"]
    assert s["import_ms"] > 0
    assert s["startup_ms"] > 0


def test_shared_prompt_costs_less_than_private_copies(results: dict[str, Any]) -> None:
    p = results["pss"]
    shared, private = p["agentmem"], p["private"]
    assert p["prompt_bytes"] == SIZES.pss_prompt_bytes
    for case in (shared, private):
        assert case["processes"] == SIZES.pss_procs
        assert case["loaded_bytes_each"] == p["prompt_bytes"]
        assert case["raw_total_pss_after_bytes"] > case["raw_total_pss_before_bytes"]
    assert shared["zero_copy"] is True
    assert private["zero_copy"] is False
    assert shared["total_pss_bytes"] < private["total_pss_bytes"]
    assert p["agentmem_vs_private"] < 1
    # every private copy was touched, so they cost at least most of a copy each
    assert private["vs_one_copy"] > 0.8 * SIZES.pss_procs
    # the shared pages are in some process's PSS (the daemon's or the readers')
    assert shared["pss_shmem_delta_bytes"] >= 0.9 * p["prompt_bytes"]
    assert private["daemon_pss_delta_bytes"] == 0


def test_targets_are_evaluated(results: dict[str, Any]) -> None:
    keys = {t["key"] for t in results["targets"]}
    assert keys == {t.key for t in bench_daemon.targets(SIZES)}
    for t in results["targets"]:
        assert isinstance(t["met"], bool)
        assert t["value"] is not None, t["key"]
    met = {t["key"]: t["met"] for t in results["targets"]}
    assert met["connections.errors"] and met["connections.connected"]


def test_markdown_has_every_section(run: dict[str, Any]) -> None:
    md = run["md"]
    assert md.startswith("# agentmem bench daemon")
    assert "| measure | agentmem | baseline (same run) | target | met |" in md
    for section in bench_daemon.SECTIONS:
        assert f"## {section}" in md


def test_cli_parses_the_daemon_benchmark(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["bench", "daemon", "--quick", "--repeats", "3", "--json", str(tmp_path / "d.json")]
    )
    assert args.quick is True
    assert args.repeats == 3
    assert args.json == tmp_path / "d.json"
    assert args.func.__name__ == "_bench_daemon"


def test_run_refuses_zero_repeats() -> None:
    with pytest.raises(ValueError, match="repeats"):
        bench_daemon.run(repeats=0, quick=True)


# --- helpers --------------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert rp.percentile(values, 0.5) == 50
    assert rp.percentile(values, 0.99) == 99
    assert rp.percentile(values, 1.0) == 100
    assert rp.percentile([7], 0.99) == 7
    with pytest.raises(ValueError, match="no values"):
        rp.percentile([], 0.5)


def test_targets_compare_in_the_stated_direction() -> None:
    results = {"a": {"x": 2.0}, "b": 5}
    targets = [
        rp.Target("a.x", "<=", 2.0, "at most"),
        rp.Target("b", ">=", 6, "at least"),
        rp.Target("c.missing", "<=", 1, "absent"),
    ]
    assert [t["met"] for t in rp.evaluate(results, targets)] == [True, False, False]


def test_proc_readers_on_this_process() -> None:
    me = os.getpid()
    r = pss.rollup(me)
    assert 0 < r["Pss"] <= r["Rss"]
    assert pss.pss_bytes(me) > 0
    assert pss.fd_count(me) >= 3
    assert pss.cpu_seconds(me) > 0
    assert pss.shmem_bytes() >= 0


def test_the_precise_cpu_reader_counts_every_live_thread_to_well_under_a_tick() -> None:
    me = os.getpid()
    spun, done = threading.Event(), threading.Event()

    def spin() -> None:
        t0 = time.thread_time()
        while time.thread_time() - t0 < 0.05:
            pass
        spun.set()
        done.wait()  # alive until read: a thread that has exited is not counted

    before = pss.cpu_seconds_ns(me)
    worker = threading.Thread(target=spin)
    worker.start()
    try:
        assert spun.wait(timeout=30)
        spent = pss.cpu_seconds_ns(me) - before
    finally:
        done.set()
        worker.join()
    # The worker's 50 ms at least, to the nanosecond rather than in 10 ms ticks.
    assert spent >= 0.05
    assert spent * 1000 % 10 != 0


def test_pinned_restores_affinity() -> None:
    before = os.sched_getaffinity(0)
    cpu = min(before)
    with fleet.pinned(cpu, cpu, []):
        assert os.sched_getaffinity(0) == {cpu}
    assert os.sched_getaffinity(0) == before


def test_wait_bytes_reports_children_that_stopped() -> None:
    r, w = os.pipe()
    os.write(w, b"x")
    os.close(w)
    try:
        with pytest.raises(RuntimeError, match="1 of 2"):
            fleet.wait_bytes(r, 2, "test")
    finally:
        os.close(r)
