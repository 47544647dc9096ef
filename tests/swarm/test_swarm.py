"""A quick swarm of 4 agents in every mode: it completes, and its results hold together.

No timing assertions: only shape, counts, errors, and what sharing must do to memory on any
machine (the seed profile's agents hold megabytes that agentmem keeps once or compressed).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentmem.cli.main import build_parser
from agentmem.swarm import measure, report
from agentmem.swarm.run import Options, ensure_bytecode, run, run_round

pytestmark = pytest.mark.slow
AGENTS, TURNS = 4, 2


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    return run(Options(agents=AGENTS, profile="seed", scale=1 / 20, turns=TURNS, think=0.05))


def test_every_mode_reports_every_key(results: dict[str, Any]) -> None:
    modes = results["modes"]
    assert list(modes) == ["plain", "ksm", "agentmem"]
    measured = {m: r for m, r in modes.items() if "skipped" not in r}
    assert {"plain", "agentmem"} <= set(measured)
    for mode, r in measured.items():
        assert "failed" not in r, (mode, r)
        for key in report.KEYS:
            assert isinstance(r[key], int | float), (mode, key)
        assert r["error_count"] == 0 and r["turns_played"] == AGENTS * TURNS
        assert r["peak_pss_bytes"] >= r["total_pss_bytes"] > r["agent_data_bytes"] > 0
        assert r["idle_interpreters_pss_bytes"] > 0 and r["processes"] == AGENTS
        assert r["body_bytes_p50"] > 7_500_000  # prompt + tools + history at 1/20
    assert measured["plain"]["cpu_overhead_pct"] == 0
    assert measured["agentmem"]["daemon_pss_bytes"] > 0
    json.dumps(results)  # JSON-able


def test_agentmem_costs_less_than_plain(results: dict[str, Any]) -> None:
    plain, mem = results["modes"]["plain"], results["modes"]["agentmem"]
    assert mem["total_pss_bytes"] < plain["total_pss_bytes"]
    assert mem["agent_data_bytes"] < plain["agent_data_bytes"]
    assert results["vs_plain"]["agentmem"]["total_vs_plain"] < 1
    assert mem["store"]["warm_raw_bytes"] > 0  # idle conversations were demoted
    cpu = mem["daemon_cpu"]  # the daemon's own counts: compressing was part of its work
    assert 0 < cpu["compress_s"] <= cpu["total_s"] and cpu["journal_sync_s"] >= 0
    assert 0 < cpu["gc_s"] <= cpu["total_s"]  # a real daemon process: its collections counted
    assert cpu["maintenance_s"] + cpu["statistics_s"] + cpu["requests_s"] == pytest.approx(
        cpu["total_s"], abs=0.02
    )
    assert 0 <= cpu["overhead_without_codec_pct"] < mem["cpu_overhead_pct"]


def test_table_and_plot(results: dict[str, Any], tmp_path: Path) -> None:
    md = report.render_markdown(results)
    assert "| total PSS, steady" in md and "## Targets" in md
    assert "where the daemon's CPU went" in md
    report.plot(results, tmp_path / "swarm.png")
    assert (tmp_path / "swarm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ksm_is_skipped_when_it_cannot_be_switched_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(measure, "KSM_DIR", tmp_path / "absent")
    out = run_round("ksm", 2, Options(agents=2), tmp_path)
    assert out == {"skipped": f"{tmp_path / 'absent'} not found: this kernel has no KSM"}
    ksm = tmp_path / "ksm"
    ksm.mkdir()
    (ksm / "run").write_text("0\n")
    (ksm / "pages_to_scan").mkdir()  # not writable, even for root
    monkeypatch.setattr(measure, "KSM_DIR", ksm)
    assert "is not writable" in run_round("ksm", 2, Options(agents=2), tmp_path)["skipped"]
    assert (ksm / "run").read_text() == "0\n"  # left as it was


def test_command_line() -> None:
    args = build_parser().parse_args(
        ["swarm", "--agents", "8", "--mode", "agentmem,plain", "--scale", "1/100"]
    )
    assert args.mode == ("plain", "agentmem") and args.scale == 0.01 and args.agents == 8
    with pytest.raises(SystemExit):
        build_parser().parse_args(["swarm", "--mode", "shm"])
    args = build_parser().parse_args(["swarm", "--warm-budget", "64"])
    assert args.warm_budget == 64 << 20
    for bad in ("0", "-3", "lots"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["swarm", "--warm-budget", bad])


def test_a_warm_budget_sends_idle_conversations_to_disk() -> None:
    budget = 1 << 20
    res = run(
        Options(
            agents=2,
            modes=("agentmem",),
            profile="seed",
            scale=1 / 50,
            turns=1,
            think=0.05,
            warm_budget=budget,
        )
    )
    out = res["modes"]["agentmem"]
    assert out["error_count"] == 0
    store = out["store"]
    assert store["cold_raw_bytes"] > 4 * budget  # most of the two 6 MB histories went down
    assert store["warm_stored_bytes"] <= budget


def test_agents_sharing_a_process_play_as_tasks() -> None:
    res = run(
        Options(
            agents=4,
            processes=2,
            modes=("plain", "agentmem"),
            profile="seed",
            scale=1 / 50,
            turns=2,
            think=0.05,
        )
    )
    for mode in ("plain", "agentmem"):
        out = res["modes"][mode]
        assert out["tasks"] and out["processes"] == 2, mode
        assert out["error_count"] == 0 and out["turns_played"] == 8, (mode, out["errors"])


def test_agents_import_compiled_bytecode(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    for name in ("__init__.py", "mod.py", "sub/__init__.py", "sub/deep.py"):
        (package / name).write_text(f"NAME = {name!r}\n")
    assert ensure_bytecode(package) == 4
    assert len(list(package.rglob("__pycache__/*.pyc"))) == 4
    assert ensure_bytecode(package) == 0  # up to date: nothing new


def _idle_pss_kib(script: str, tmp_path: Path) -> int:
    """PSS of an idle agent process started through ``script`` (smaller of two)."""
    values = []
    for _ in range(2):
        cmd = [sys.executable, script, "--mode", "plain", "--run-dir", str(tmp_path), "--idle"]
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert p.stdout is not None and p.stdin is not None
        assert json.loads(p.stdout.readline())["event"] == "ready"
        with open(f"/proc/{p.pid}/smaps_rollup") as f:
            values.append(next(int(x.split()[1]) for x in f if x.startswith("Pss:")))
        p.stdin.write(b"{}\n")
        p.stdin.close()
        assert p.wait(timeout=30) == 0
        p.stdout.close()
    return min(values)


def test_agent_processes_load_the_agent_from_bytecode(tmp_path: Path) -> None:
    from agentmem.swarm import agent, launch

    ensure_bytecode()
    as_script = _idle_pss_kib(agent.__file__, tmp_path)  # compiled from source at start
    launched = _idle_pss_kib(launch.__file__, tmp_path)
    assert as_script - launched > 1024, (as_script, launched)  # the compiler's scratch


def test_a_killed_swarm_puts_ksm_settings_back(tmp_path: Path) -> None:
    """SIGTERM in the middle of a KSM session: the settings found are written back."""
    ksm = tmp_path / "ksm"
    ksm.mkdir()
    before = {"run": "0", "pages_to_scan": "100", "sleep_millisecs": "20"}
    for name in measure.KSM_SAVED:
        (ksm / name).write_text(before.get(name, "0") + "\n")
    code = (
        "import sys, pathlib\n"
        "from agentmem.swarm import measure\n"
        "measure.unwind_on_signals()\n"
        "with measure.ksm_session(pathlib.Path(sys.argv[1])):\n"
        "    print('on', flush=True)\n"
        "    sys.stdin.read()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code, str(ksm)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as p:
        assert p.stdout is not None and p.stdout.readline() == b"on\n"
        assert (ksm / "run").read_text().strip() == "1"  # switched on and tuned
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 128 + signal.SIGTERM
    for name, value in before.items():
        assert (ksm / name).read_text().strip() == value
