"""Allocation profiling end to end: a profiling client, the daemon's aggregate, the files."""

from __future__ import annotations

import asyncio
import os
import pathlib
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from agentmem import config
from agentmem.cli.flamegraph import collapsed_text, render_svg
from agentmem.cli.main import main
from agentmem.client import Client, aio, connect
from agentmem.client.aio import AsyncClient
from agentmem.client.profile import MAX_DEPTH, MAX_STACK_BYTES, Sampler, collapsed_stack
from agentmem.daemon import profile
from agentmem.errors import InvalidArgument
from agentmem.testing import DaemonProcess
from tests.daemon.conftest import RawPeer

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def daemon() -> Iterator[DaemonProcess]:
    with DaemonProcess() as d:
        yield d


def load_prompts(client: Client) -> None:
    for i in range(3):
        client.alloc_smu("system_prompt", f"prompt {i} ".encode().ljust(1000, b"."))


def fetch_results(client: Client) -> None:
    client.alloc_smu("tool_result", os.urandom(5000))
    client.alloc_smu("conversation", [b"a" * 700, "b" * 300])


def test_two_call_sites_two_stacks_with_their_bytes(
    daemon: DaemonProcess, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with connect(daemon.socket, name="profiled", profile_allocs=True) as agent:
        load_prompts(agent)
        fetch_results(agent)
        fetch_results(agent)
    with connect(daemon.socket, name="quiet", profile_allocs=False) as other:
        other.alloc_smu("blob", b"not sampled")
    svg, txt = tmp_path / "alloc.svg", tmp_path / "alloc.txt"
    code = main(["flamegraph", "--socket", daemon.socket, "-o", str(svg), "--collapsed", str(txt)])
    assert code == 0
    totals: dict[str, int] = {}
    for line in txt.read_text().splitlines():
        stack, _, nbytes = line.rpartition(" ")
        leaf = stack.rsplit(";", 1)[-1]
        totals[leaf] = totals.get(leaf, 0) + int(nbytes)
        assert stack.count(";") < MAX_DEPTH
    assert totals == {
        "test_flamegraph.py:load_prompts": 3 * 1000,
        "test_flamegraph.py:fetch_results": 2 * (5000 + 1000),
    }
    root = ET.parse(svg).getroot()
    assert root.tag == f"{SVG}svg"
    titles = [t.text or "" for t in root.iter(f"{SVG}title")]
    assert any(t.startswith("test_flamegraph.py:load_prompts (") for t in titles)
    assert any("test_flamegraph.py:fetch_results" in t and "12000 bytes" in t for t in titles)
    assert any(t.startswith("all (") and "15000 bytes" in t for t in titles)
    assert "wrote" in capsys.readouterr().err


def test_an_unwritable_output_fails_before_the_profile_is_fetched_or_reset(
    daemon: DaemonProcess, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with connect(daemon.socket, name="profiled", profile_allocs=True) as agent:
        load_prompts(agent)
    svg = tmp_path / "alloc.svg"
    for bad in (
        ["-o", str(tmp_path / "missing" / "alloc.svg")],
        ["-o", str(svg), "--collapsed", str(tmp_path)],
    ):
        assert main(["flamegraph", "--socket", daemon.socket, "--reset", *bad]) == 1
        err = capsys.readouterr().err
        assert err.startswith("agentmem flamegraph: cannot write ") and err.count("\n") == 1
        assert not svg.exists()  # nothing left behind
    assert main(["flamegraph", "--socket", daemon.socket, "-o", str(svg)]) == 0
    assert "3000 bytes" in svg.read_text()  # the profile was not reset


def test_sampling_weight_bounds_and_reset(daemon: DaemonProcess) -> None:
    with RawPeer(daemon.socket) as peer:
        peer.hello("raw-profiler")
        # A client that samples one in 4 sends weight 4: each sample stands for 4 allocations.
        peer.call("alloc_smu", type="blob", data=b"x" * 10, stack="a;b", sample=4)
        for bad in ({"stack": "s" * 2000}, {"stack": "a", "sample": 0}, {"stack": 7}):
            with pytest.raises(InvalidArgument):
                peer.call("alloc_smu", type="blob", data=b"y", **bad)
        assert len(peer.call("handles")) == 1  # refused requests allocated nothing
        got = peer.call("alloc_profile", reset=True)
        assert got == {"stacks": [["a;b", 40]], "samples": 1, "bytes": 40}
        assert peer.call("alloc_profile")["stacks"] == []


def test_the_daemon_keeps_at_most_max_stacks() -> None:
    p = profile.AllocProfile()
    for i in range(profile.MAX_STACKS + 5):
        p.add(f"s{i}", 10)
    wire = p.to_wire()
    assert len(wire["stacks"]) == profile.MAX_STACKS + 1  # type: ignore[arg-type]
    assert dict(wire["stacks"])[profile.OTHER] == 50  # type: ignore[arg-type]
    p.add("s0", 1)  # a known stack still counts under its own name
    assert p.bytes_by_stack["s0"] == 11


def deep(n: int) -> str:
    return deep(n - 1) if n else collapsed_stack(sys._getframe())


def test_collapsed_stacks_are_bounded_and_root_first() -> None:
    stack = deep(50)
    frames = stack.split(";")
    assert len(frames) == MAX_DEPTH
    assert frames[-1] == "test_flamegraph.py:deep" and len(stack.encode()) <= MAX_STACK_BYTES
    here = collapsed_stack(sys._getframe())
    assert here.endswith(";test_flamegraph.py:test_collapsed_stacks_are_bounded_and_root_first")
    assert Sampler(1).stack(depth=1) is not None  # every call when N=1
    misses = sum(Sampler(1_000_000).stack() is None for _ in range(20))
    assert misses >= 19  # one in a million


def test_the_environment_switch() -> None:
    assert config.profile_allocs({}) == 0
    assert config.profile_allocs({"AGENTMEM_PROFILE_ALLOCS": "1"}) == 1
    assert config.profile_allocs({"AGENTMEM_PROFILE_ALLOCS": "100"}) == 100
    assert config.profile_allocs({"AGENTMEM_PROFILE_ALLOCS": "off"}) == 0
    with pytest.raises(ValueError, match="sample 1 in N"):
        config.profile_allocs({"AGENTMEM_PROFILE_ALLOCS": "often"})


def test_the_svg_renderer_alone() -> None:
    stacks = [("main;load;read", 300), ("main;load", 100), ("main;save", 600), ("odd<&>", 0)]
    assert collapsed_text(stacks) == "main;load 100\nmain;load;read 300\nmain;save 600\n"
    root = ET.fromstring(render_svg(stacks, title="t & t"))
    rects = {
        (t.text or "").split(" (")[0]: float(g.find(f"{SVG}rect").get("width"))  # type: ignore[union-attr, arg-type]
        for g in root.iter(f"{SVG}g")
        for t in g.iter(f"{SVG}title")
    }
    assert rects["main"] == rects["all"]
    assert rects["save"] == pytest.approx(rects["all"] * 0.6)
    assert rects["load"] == pytest.approx(rects["all"] * 0.4)
    assert rects["read"] == pytest.approx(rects["all"] * 0.3)
    empty = ET.fromstring(render_svg([]))
    assert "no sampled allocations" in "".join(empty.itertext())


async def async_worker(client: AsyncClient) -> None:
    await client.alloc_smu("tool_result", b"r" * 700)


def test_the_asyncio_client_profiles_too(daemon: DaemonProcess) -> None:
    async def main_task() -> None:
        client = await aio.connect(daemon.socket, name="async-profiled", profile_allocs=1)
        async with client:
            await async_worker(client)

    asyncio.run(main_task())
    with connect(daemon.socket, name="reader", observer=True) as observer:
        ((stack, nbytes),) = observer.alloc_profile()["stacks"]
    assert stack.endswith("<locals>.main_task;test_flamegraph.py:async_worker")
    assert nbytes == 700
