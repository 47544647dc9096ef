"""Shared fixtures. Tests generate their own data; the corpus is optional (``corpus`` marker)."""

from __future__ import annotations

import atexit
import json
import os
import pathlib
import random
import shutil
import tempfile
from collections.abc import Callable, Generator, Sequence
from typing import Any

import pytest

from agentmem.config import Config
from agentmem.store import Store


def pytest_configure(config: pytest.Config) -> None:
    """Daemons the tests start keep their journals and packs in a directory of this run, never
    in the user's ``~/.local/state`` (each socket gets its own subdirectory there)."""
    if "AGENTMEM_STATE_DIR" not in os.environ:
        state = tempfile.mkdtemp(prefix="agentmem-test-state-")
        os.environ["AGENTMEM_STATE_DIR"] = state
        atexit.register(shutil.rmtree, state, True)


def corpus_dir() -> pathlib.Path | None:
    """The shared corpus, if present (AGENTMEM_CORPUS or ../shared/corpus)."""
    env = os.environ.get("AGENTMEM_CORPUS")
    if env:
        p = pathlib.Path(env)
        return p if p.is_dir() else None
    p = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
    return p if p.is_dir() else None


@pytest.fixture
def corpus() -> pathlib.Path:
    path = corpus_dir()
    if path is None:
        pytest.skip(reason="shared corpus not available (set AGENTMEM_CORPUS)")
    return path


@pytest.fixture
def store() -> Store:
    s = Store(Config(dict_train_bytes=64 << 10, dict_size=16 << 10, segment_bytes=1 << 20))
    yield s  # type: ignore[misc]
    s.close()


def text(seed: int, size: int) -> bytes:
    """Deterministic English-like text of ``size`` bytes (compressible, not repetitive)."""
    rng = random.Random(seed)
    words = [
        "agent",
        "memory",
        "tool",
        "result",
        "prompt",
        "the",
        "a",
        "of",
        "file",
        "read",
        "write",
        "conversation",
        "system",
        "user",
        "assistant",
        "function",
        "call",
        "error",
        "test",
        "repository",
        "branch",
        "commit",
        "python",
        "json",
        "value",
        "return",
    ]
    out: list[str] = []
    n = 0
    while n < size:
        w = rng.choice(words) + rng.choice([" ", " ", " ", ", ", ".\n"])
        out.append(w)
        n += len(w)
    return "".join(out).encode()[:size]


def message(seed: int) -> bytes:
    """A JSON-encoded agent message of roughly 0.3-3 KiB."""
    rng = random.Random(seed)
    role = rng.choice(["user", "assistant", "tool"])
    body = text(seed, rng.randint(300, 3000)).decode()
    return json.dumps({"role": role, "content": body}, separators=(",", ":")).encode()


def step_through(
    steps: Generator[Any, None, Any], changes: Sequence[Callable[[], object]]
) -> tuple[Any, int, list[object]]:
    """Run ``steps`` to their end, making the next of ``changes`` after each step while any
    are left: the steps' result, the steps run before it, what the changes returned."""
    pending = iter(changes)
    made: list[object] = []
    taken = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value, taken, made
        taken += 1
        change = next(pending, None)
        if change is not None:
            made.append(change())
