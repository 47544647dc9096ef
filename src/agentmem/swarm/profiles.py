"""The swarm's two profiles, written out as the files its agents and mock LLM read.

``corpus``: what a coding agent holds today. The system prompt is the corpus's largest Claude
Code prompt (``workloads.claude_code_prompt``: 311,682 B) and the tool catalogue Claude Code's
(``tool_defs/x1xhlol/Anthropic__Claude-Code__Tools.json``, 43,215 B as compact JSON); without a
corpus, generated markdown of 130,000 B (the size of the corpus's Claude Code per-model
prompts, 132.7-277.2 KB) and generated tool definitions of 43,215 B. Each agent resumes a
recorded trajectory at a random turn (uniform, leaving ``--turns`` turns to play), so
conversations hold between a few and a few hundred KB, as the corpus's do (mini-swe-agent:
median 74 messages, ~200 KB per trajectory).

``seed``: the original design's figures per agent (VISION.md) times ``scale`` (default 1/10):
system prompt 50 MB, tool catalogue 100 MB, conversation 300 MB, of real text: the corpus's
prompts (``workloads.prompt_text``: asgeirtj prompts with no chunk repeated) and tool
definitions (every definition found under ``tool_defs/``, repeated as needed with renamed
tools), else generated English-like text (``workloads.TextMaker``); the conversation is drawn
from the message pool (see :mod:`agentmem.swarm.trajectories`).

Both: agents of one product share the prompt and the catalogue except for their environment
block (``workloads.env_block``: working directory, date, OS, model, git status; ~300 B), which
every agent sends as a second system block and, in ``agentmem`` mode, keeps in an SMU of its
own (the base prompt is then one SMU that every agent of the product maps).

Files, all in one run directory (the orchestrator writes them; nothing here is imported by an
agent): ``prompt.txt``; ``tools.json`` (compact JSON array); ``history.jsonl`` (messages, one
per line); ``agents.jsonl`` (per agent: its environment block and which lines of the history
are its own); ``turns.jsonl`` (per agent: the mock LLM's replies, in order).
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentmem.swarm.trajectories import Trajectory, load

MB = 1_000_000
#: Per-agent sizes of the original design (VISION.md, "100 instances"), before ``scale``.
SEED_PROMPT_BYTES = 50 * MB
SEED_TOOLS_BYTES = 100 * MB
SEED_CONVERSATION_BYTES = 300 * MB
#: Sizes used when the corpus is absent (see the module docstring for where they come from).
GENERATED_PROMPT_BYTES = 130_000
CLAUDE_CODE_TOOLS_BYTES = 43_215
CLAUDE_CODE_TOOLS = "tool_defs/x1xhlol/Anthropic__Claude-Code__Tools.json"
PROFILES = ("corpus", "seed")


@dataclasses.dataclass(frozen=True, slots=True)
class Inputs:
    """A profile written to ``dir``, with the figures the report quotes."""

    dir: Path
    profile: str
    agents: int
    turns: int
    scale: float
    source: str
    prompt_bytes: int
    tools_bytes: int
    tools_count: int
    env_bytes_mean: float
    history_bytes_mean: float
    history_messages_mean: float
    replies: int
    notes: tuple[str, ...]

    def summary(self) -> dict[str, Any]:
        """The figures as a JSON-able dict (``dir`` left out)."""
        out = dataclasses.asdict(self)
        out.pop("dir")
        out["notes"] = list(self.notes)
        return out


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --- prompts and tools -------------------------------------------------------------------------


def _tool_defs(value: Any) -> Iterator[dict[str, Any]]:
    """Tool definitions found anywhere in a parsed tool_defs file."""
    if isinstance(value, dict):
        if isinstance(value.get("name"), str) and any(
            k in value for k in ("description", "parameters", "input_schema", "inputSchema")
        ):
            yield value
            return
        for v in value.values():
            yield from _tool_defs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _tool_defs(v)


def corpus_tools(corpus: Path) -> list[dict[str, Any]]:
    """Every tool definition under ``corpus/tool_defs`` (JSON and JSON-lines files; files that
    do not parse are skipped), in path order, first of each name kept."""
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for path in sorted((corpus / "tool_defs").rglob("*")):
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        try:
            docs: list[Any] = [json.loads(text)]
        except ValueError:
            docs = []
            for line in text.splitlines():
                try:
                    docs.append(json.loads(line))
                except ValueError:
                    continue
        for tool in _tool_defs(docs):
            if tool["name"] not in seen:
                seen.add(tool["name"])
                out.append(tool)
    return out


def generated_tools(nbytes: int, seed: int = 21) -> list[dict[str, Any]]:
    """Tool definitions in Claude Code's shape (name, prose description, JSON-schema input)
    of generated text, until their compact JSON reaches ``nbytes``."""
    from agentmem.bench.workloads import TextMaker

    t = TextMaker(seed)
    rng = t.rng
    out: list[dict[str, Any]] = []
    size = 2
    while size < nbytes:
        params = {
            rng.choice(t.idents): {
                "type": rng.choice(("string", "string", "integer", "boolean", "array")),
                "description": t.sentence(),
            }
            for _ in range(rng.randint(1, 6))
        }
        tool = {
            "name": "".join(w.title() for w in rng.choice(t.idents).split("_")) + str(len(out)),
            "description": t.prose(rng.randint(200, 2500)),
            "input_schema": {
                "type": "object",
                "properties": params,
                "required": sorted(params)[: rng.randint(0, len(params))],
                "additionalProperties": False,
            },
        }
        out.append(tool)
        size += len(_compact(tool)) + 1
    return out


def sized_tools(tools: list[dict[str, Any]], nbytes: int) -> list[dict[str, Any]]:
    """``tools`` repeated, the repeats renamed (``name__2``...), until ``nbytes`` of JSON."""
    out: list[dict[str, Any]] = []
    size = 2
    rounds = 0
    while size < nbytes:
        rounds += 1
        for tool in tools:
            t = tool if rounds == 1 else {**tool, "name": f"{tool['name']}__{rounds}"}
            out.append(t)
            size += len(_compact(t)) + 1
            if size >= nbytes:
                break
    return out


def _prompt_and_tools(
    profile: str, corpus: Path | None, scale: float
) -> tuple[str, list[dict[str, Any]], list[str]]:
    from agentmem.bench import workloads

    notes: list[str] = []
    if profile == "seed":
        prompt = workloads.prompt_text(corpus, int(SEED_PROMPT_BYTES * scale)).decode(
            errors="ignore"
        )
        base = corpus_tools(corpus) if corpus is not None else []
        if not base:
            base = generated_tools(int(SEED_TOOLS_BYTES * scale))
        target = int(SEED_TOOLS_BYTES * scale)
        tools = sized_tools(base, target)
        if len(tools) > len(base):
            notes.append(
                f"tool catalogue: {len(base)} distinct definitions repeated (renamed) to "
                f"{target:,} B; agentmem's chunking stores the repeats once"
            )
        return prompt, tools, notes
    if corpus is not None:
        path = workloads.claude_code_prompt(corpus)
        tools_path = corpus / CLAUDE_CODE_TOOLS
        if path is not None and tools_path.is_file():
            doc = json.loads(tools_path.read_text())
            return path.read_text(), list(doc["tools"]), [f"prompt: {path.name}"]
        notes.append("corpus lacks a Claude Code prompt or tool catalogue: generated instead")
    prompt = workloads.generated_markdown(3, GENERATED_PROMPT_BYTES)
    return prompt, generated_tools(CLAUDE_CODE_TOOLS_BYTES), notes


# --- writing a run directory -------------------------------------------------------------------


def _write_history(path: Path, trajectories: list[Trajectory]) -> tuple[list[int], int, int]:
    """Every trajectory's messages, one per line; returns each trajectory's first byte offset,
    and the file's lines and bytes."""
    offsets: list[int] = []
    lines = 0
    with path.open("wb") as f:
        for traj in trajectories:
            offsets.append(f.tell())
            for raw in traj.messages():
                f.write(raw.replace(b"\n", b" ") + b"\n")  # compact JSON holds no raw newline
                lines += 1
        size = f.tell()
    return offsets, lines, size


def _reply(turn: Any) -> dict[str, Any]:
    return {"message": json.loads(turn.message), "results": [json.loads(r) for r in turn.results]}


def write(
    run_dir: Path,
    profile: str,
    agents: int,
    *,
    corpus: Path | None = None,
    scale: float = 0.1,
    turns: int = 5,
    seed: int = 5,
) -> Inputs:
    """Write ``profile``'s inputs for ``agents`` agents into ``run_dir``; return their figures."""
    from agentmem.bench import workloads

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (expected one of {PROFILES})")
    run_dir.mkdir(parents=True, exist_ok=True)
    prompt, tools, notes = _prompt_and_tools(profile, corpus, scale)
    (run_dir / "prompt.txt").write_text(prompt)
    tools_json = _compact(tools)
    (run_dir / "tools.json").write_text(tools_json)
    conversation_bytes = int(SEED_CONVERSATION_BYTES * scale)
    if profile == "seed":  # a pool longer than one agent's conversation
        pool_bytes = max(8 << 20, int(conversation_bytes * 1.25))
    else:  # about one generated trajectory (~120 KB) per agent, up to 64 MiB
        pool_bytes = min(64 << 20, max(8 << 20, agents * 120_000))
    found = load(corpus, min_turns=2, generated_bytes=pool_bytes)
    # Prefer trajectories with all the turns the swarm plays.
    trajectories = [t for t in found if len(t.turns) >= turns] or found
    if not trajectories:
        raise ValueError("no trajectory with two turns or more found")
    rng = random.Random(seed)
    order = list(range(len(trajectories)))
    rng.shuffle(order)
    offsets, pool_lines, pool_size = _write_history(run_dir / "history.jsonl", trajectories)
    env_sizes: list[int] = []
    hist_bytes: list[int] = []
    hist_msgs: list[int] = []
    replies = 0
    with (run_dir / "agents.jsonl").open("w") as fa, (run_dir / "turns.jsonl").open("w") as ft:
        for i in range(agents):
            env = workloads.env_block(workloads.agent_env(i))
            env_sizes.append(len(env.encode()))
            k = order[i % len(order)]
            traj = trajectories[k]
            if profile == "seed":
                # A pool slice from this agent's own starting message, wrapping around.
                start = (i * 7919) % max(1, len(trajectories))
                history = {
                    "offset": offsets[start],
                    "lines": None,
                    "bytes": conversation_bytes,
                    "permute": i + 1,
                }
                live = traj.turns[:turns]
                hist_bytes.append(conversation_bytes)
                hist_msgs.append(-1)
            else:
                cut = random.Random(seed * 100_003 + i).randint(0, max(0, len(traj.turns) - turns))
                kept = list(traj.messages(cut))
                history = {"offset": offsets[k], "lines": len(kept), "bytes": None, "permute": None}
                live = traj.turns[cut : cut + turns]
                hist_bytes.append(sum(len(m) for m in kept))
                hist_msgs.append(len(kept))
            replies += len(live)
            fa.write(_compact({"agent": i, "env": env, "history": history}) + "\n")
            ft.write(_compact({"agent": i, "replies": [_reply(t) for t in live]}) + "\n")
    if profile == "seed":
        notes.append(
            f"history pool: {pool_lines:,} messages, {pool_size:,} B from {len(trajectories)} "
            f"trajectories; each agent's {conversation_bytes:,} B slice starts at its own "
            "trajectory and wraps; prose letters permuted per agent"
        )
    known = [n for n in hist_msgs if n >= 0]
    return Inputs(
        dir=run_dir,
        profile=profile,
        agents=agents,
        turns=turns,
        scale=scale if profile == "seed" else 1.0,
        source=f"corpus: {corpus}" if corpus is not None else "generated",
        prompt_bytes=len(prompt.encode()),
        tools_bytes=len(tools_json.encode()),
        tools_count=len(tools),
        env_bytes_mean=round(sum(env_sizes) / agents, 1),
        history_bytes_mean=round(sum(hist_bytes) / agents, 1),
        history_messages_mean=round(sum(known) / len(known), 1) if known else -1.0,
        replies=replies,
        notes=tuple(notes),
    )
