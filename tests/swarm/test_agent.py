"""An agent loop in each mode, a few turns against the mock LLM, at tiny sizes.

The strongest check is on the bytes: for the same agent, the body ``agentmem`` streams from
shared views and the daemon must be the very body ``plain`` materialises with ``json.dumps``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import agentmem
from agentmem.swarm import agent, llm, profiles
from agentmem.testing import DaemonProcess

pytestmark = pytest.mark.slow
TURNS = 3


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("swarm")
    profiles.write(d, "corpus", 3, turns=TURNS)
    return d


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with DaemonProcess() as d:
        yield d


def _specs(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "agents.jsonl").read_text().splitlines()]


def _publish(boss: agentmem.Client, run_dir: Path) -> None:
    """What the swarm's launcher does: publish the prompt and the tools for agents to open."""
    prompt = agent.compact((run_dir / "prompt.txt").read_text())
    boss.publish(boss.alloc_smu("system_prompt", prompt), agent.PROMPT_NAME)
    tools = (run_dir / "tools.json").read_bytes()
    boss.publish(boss.alloc_smu("tool_def", tools), agent.TOOLS_NAME)


def _play(run_dir: Path, mode: str, index: int, daemon: DaemonProcess) -> list[dict[str, Any]]:
    """Agent ``index`` in ``mode`` plays its turns; returns what the mock LLM received."""
    server = llm.MockLLM(llm.load_replies(run_dir / "turns.jsonl"), check=True)
    with llm.serving(server) as port, agentmem.connect(daemon.socket, name=f"l-{mode}") as boss:
        shared = agent.Shared(run_dir, daemon.socket, port)
        a = agent.AGENTS[mode](shared, _specs(run_dir)[index])
        a.name = f"{a.name}-{mode}"  # one daemon serves every test
        if mode == "agentmem":
            _publish(boss, run_dir)
        a.connect()
        try:
            a.load_prompt()
            a.load()
            a.run(TURNS, 0.0)
        finally:
            a.close()
    assert a.error is None
    assert len(a.turn_s) == TURNS and a.spawn_s > 0
    return server.seen[index]


@pytest.mark.parametrize("mode", agent.MODES)
def test_agent_plays_its_turns(run_dir: Path, daemon: DaemonProcess, mode: str) -> None:
    seen = _play(run_dir, mode, 0, daemon)
    assert len(seen) == TURNS
    grown = [s["messages"] for s in seen]
    assert all(b > a for a, b in itertools.pairwise(grown))  # reply appended each turn
    assert all(s["system"] == 2 and s["tools"] == 24 for s in seen)


def test_agentmem_streams_the_plain_body(
    run_dir: Path, daemon: DaemonProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Few buffers a send, so the body goes out in many scatter/gather sends, partial ones too.
    monkeypatch.setattr(agent, "SEND_BUFFERS", 3)
    monkeypatch.setattr(agent, "SEND_BYTES", 5000)
    plain = _play(run_dir, "plain", 1, daemon)
    streamed = _play(run_dir, "agentmem", 1, daemon)
    assert [s["sha256"] for s in streamed] == [s["sha256"] for s in plain]
    assert [s["bytes"] for s in streamed] == [s["bytes"] for s in plain]


def _play_task(run_dir: Path, mode: str, index: int, daemon: DaemonProcess) -> list[dict[str, Any]]:
    """:func:`_play` with the agent as an asyncio task (``--tasks``)."""
    server = llm.MockLLM(llm.load_replies(run_dir / "turns.jsonl"), check=True)
    with llm.serving(server) as port, agentmem.connect(daemon.socket, name=f"lt-{mode}") as boss:
        shared = agent.Shared(run_dir, daemon.socket, port)
        a = agent.AGENTS[mode](shared, _specs(run_dir)[index])
        a.name = f"{a.name}-task-{mode}"
        if mode == "agentmem":
            _publish(boss, run_dir)

        async def play() -> None:
            await a.aconnect()
            try:
                await a.aload_prompt()
                await a.aload()
                await a.arun(TURNS, 0.0)
            finally:
                await a.aclose()

        asyncio.run(play())
    assert a.error is None
    assert len(a.turn_s) == TURNS and a.spawn_s > 0
    return server.seen[index]


def test_an_agent_as_a_task_sends_the_body_a_thread_sends(
    run_dir: Path, daemon: DaemonProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent, "SEND_BYTES", 5000)  # many drains a body
    plain = _play(run_dir, "plain", 2, daemon)
    for mode in ("plain", "agentmem"):
        as_task = _play_task(run_dir, mode, 2, daemon)
        assert [s["sha256"] for s in as_task] == [s["sha256"] for s in plain], mode


def test_the_async_turn_gate_holds_its_tokens(tmp_path: Path) -> None:
    from agentmem.swarm.run import Gate

    gate = Gate(tmp_path / "gate", 1)

    async def exclusive() -> None:
        first, second = agent.AsyncTurnGate(gate.path), agent.AsyncTurnGate(gate.path)
        await first.__aenter__()
        waiting = asyncio.create_task(second.__aenter__())

        async def parked() -> None:
            # The task takes its process's turn to wait, finds no token and parks on the FIFO
            # in one step (nothing in between awaits): once the turn is taken, it is parked.
            # Yields to the loop until then, no clock involved.
            while not second._waiting.locked():
                await asyncio.sleep(0)

        await asyncio.wait_for(parked(), 10)
        assert not waiting.done()  # the one token is taken
        await first.__aexit__(None, None, None)
        await asyncio.wait_for(waiting, 10)  # the token passes to it
        await second.__aexit__(None, None, None)

    try:
        asyncio.run(exclusive())
    finally:
        gate.close()


def test_seed_history_is_permuted_per_agent(tmp_path: Path) -> None:
    inputs = profiles.write(tmp_path, "seed", 2, scale=1e-4, turns=2)
    specs = _specs(tmp_path)
    first, second = (list(agent.history(tmp_path, s["history"])) for s in specs)
    size = sum(len(agent.compact(m)) for m in first)
    assert size >= inputs.history_bytes_mean == profiles.SEED_CONVERSATION_BYTES * 1e-4
    original = list(agent.history(tmp_path, {**specs[0]["history"], "permute": None}))
    assert [m.get("role") for m in first] == [m.get("role") for m in original]  # roles kept
    assert first != original and len(agent.compact(first)) == len(agent.compact(original))
    texts = {json.dumps(m) for m in first} & {json.dumps(m) for m in second}
    assert len(texts) < len(first) // 10  # no accidental dedup across agents
    assert inputs.prompt_bytes >= 5000 and inputs.tools_bytes >= 10000


def test_think_times_differ_per_agent_and_are_bounded() -> None:
    a, b = agent.think_times(0, 0.5, 20), agent.think_times(1, 0.5, 20)
    assert a != b and len(a) == 20
    assert all(0 <= g <= 4 * 0.5 * 2 for g in a + b)


def test_the_turn_gate_holds_k_tokens(tmp_path: Path) -> None:
    import select

    from agentmem.swarm.run import Gate

    gate = Gate(tmp_path / "gate", 2)
    try:
        a, b = agent.TurnGate(gate.path), agent.TurnGate(gate.path)

        def tokens_left() -> bool:
            return bool(select.select([gate.fd], [], [], 0)[0])

        a.__enter__()
        assert tokens_left()
        b.__enter__()
        assert not tokens_left()  # both taken: a third agent would wait
        a.__exit__(None, None, None)
        assert tokens_left()
        b.__exit__(None, None, None)
    finally:
        gate.close()
    assert not (tmp_path / "gate").exists()
