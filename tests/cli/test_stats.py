"""``agentmem stats`` against a real daemon: the summary, the table, JSON, one agent, sorting."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator

import pytest

from agentmem.cli.main import main
from agentmem.client import Client, connect
from agentmem.testing import DaemonProcess
from tests.daemon.conftest import wait_until


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with DaemonProcess() as d:
        yield d


@pytest.fixture(scope="module")
def agents(daemon: DaemonProcess) -> Iterator[dict[str, Client]]:
    prompt = b"A system prompt that every agent of the product shares. " * 400  # 22.4 KB
    clients = {
        "alpha": connect(daemon.socket, name="alpha", importance=3),
        "beta": connect(daemon.socket, name="beta", state="paused"),
        "gamma": connect(daemon.socket, name="gamma", state="idle"),
    }
    for c in clients.values():
        c.alloc_smu("system_prompt", prompt)
    # Logical bytes: gamma 94.6 KB (four handles on the prompt), beta 72.4 KB, alpha 42.4 KB.
    # Unique bytes: beta 50 KB, alpha 20 KB, gamma 5 KB.
    clients["alpha"].alloc_smu("conversation", [os.urandom(20_000)])
    clients["beta"].alloc_smu("tool_result", os.urandom(50_000))
    for _ in range(3):
        clients["gamma"].alloc_smu("system_prompt", prompt)
    clients["gamma"].alloc_smu("blob", os.urandom(5_000))
    yield clients
    for c in clients.values():
        c.close()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["stats", *args])
    out, err = capsys.readouterr()
    return code, out, err


def table_names(out: str) -> list[str]:
    lines = out.split("\n\n", 1)[1].splitlines()
    assert lines[0].startswith("NAME")
    return [line.split()[0] for line in lines[1:]]


def test_summary_and_table(
    daemon: DaemonProcess, agents: dict[str, Client], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "--socket", daemon.socket)
    assert code == 0
    fields = dict(re.findall(r"^(\w+):\s+(\S+)", out, flags=re.MULTILINE))
    assert fields["Agents"] == "3"
    assert (fields["AgentsActive"], fields["AgentsPaused"], fields["AgentsIdle"]) == ("1", "1", "1")
    assert fields["DaemonPid"] == str(daemon.pid)
    assert fields["Observers"] == "1"  # this very command, which is not an agent
    for key in ("Logical", "Unique", "Physical", "DedupRatio", "CompressionRatio", "HotLogical"):
        assert key in fields
    assert "DaemonPSS" in fields and "Chunks" in fields and "Segments" in fields
    assert table_names(out) == ["gamma", "beta", "alpha"]  # by logical bytes, largest first
    beta = next(line for line in out.splitlines() if line.startswith("beta "))
    assert "paused" in beta and "48.8 KiB" in beta  # its tool result, in RESULT and UNIQUE


def test_sort_keys(
    daemon: DaemonProcess, agents: dict[str, Client], capsys: pytest.CaptureFixture[str]
) -> None:
    assert table_names(run(capsys, "--socket", daemon.socket, "--sort", "name")[1]) == [
        "alpha",
        "beta",
        "gamma",
    ]
    by_unique = table_names(run(capsys, "--socket", daemon.socket, "--sort", "unique")[1])
    assert by_unique == ["beta", "alpha", "gamma"]


def test_json_is_the_statistics_reply(
    daemon: DaemonProcess, agents: dict[str, Client], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "--socket", daemon.socket, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["agents"] == 3
    assert data["daemon"]["agents_by_state"] == {"active": 1, "paused": 1, "idle": 1}
    beta = next(a for a in data["per_agent"] if a["name"] == "beta")
    assert beta["unique_bytes"] == 50_000 and beta["by_type"]["tool_result"] == 50_000
    assert beta["shared_bytes"] == 22_400


def test_recent_prints_the_daemons_last_snapshot(
    daemon: DaemonProcess, agents: dict[str, Client], capsys: pytest.CaptureFixture[str]
) -> None:
    def snapshot() -> dict[str, object]:
        code, out, _ = run(capsys, "--socket", daemon.socket, "--recent", "--json")
        assert code == 0
        data: dict[str, object] = json.loads(out)
        return data

    # A tick (about once a second) after the module's agents connected publishes them.
    wait_until(lambda: snapshot()["agents"] == 3, "a tick published the three agents")
    data = snapshot()
    per_agent = data["per_agent"]
    assert isinstance(per_agent, list)
    assert sorted(a["name"] for a in per_agent) == ["alpha", "beta", "gamma"]
    beta = next(a for a in per_agent if a["name"] == "beta")
    assert beta["by_type"]["tool_result"] == 50_000


def test_one_agent(
    daemon: DaemonProcess, agents: dict[str, Client], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "--socket", daemon.socket, "--agent", "alpha")
    assert code == 0
    assert "Importance:" in out and "Shared:" in out and "Type system_prompt:" in out
    assert table_names(out) == ["alpha"]
    code, out, _ = run(capsys, "--socket", daemon.socket, "--agent", "alpha", "--json")
    assert json.loads(out)["importance"] == 3
    code, _, err = run(capsys, "--socket", daemon.socket, "--agent", "nobody-here")
    assert code == 1 and "nobody-here" in err


def test_no_daemon(tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--socket", os.path.join(tmp_path, "none.sock"))
    assert code == 1 and "no daemon" in err
