"""The README's "Use it from an agent" examples run, so they cannot rot.

Each python block runs as written, its model calls being the stubs it defines, with
``agentmem.connect`` routed to this test's transport (in-process, or a real daemon): the
examples' own in-process store and autostarted daemon are what that routing replaces. The
arguments are checked against the real ``connect``'s signature.
"""

from __future__ import annotations

import inspect
import os
import pathlib
import re

import pytest

import agentmem
from agentmem.client import Client
from tests.client.conftest import ClientFactory

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Use it from an agent"


def section_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    body = text[start : end if end >= 0 else len(text)]
    return re.findall(r"```python\n(.*?)```", body, re.DOTALL)


def test_quick_start_stays_first() -> None:
    headings = re.findall(r"^## .*$", README.read_text(encoding="utf-8"), re.MULTILINE)
    assert headings[0].startswith("## Quick start")
    assert SECTION in headings


def test_the_examples_run(
    connect_agent: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocks = section_blocks()
    assert any("agentmem.connect()" in b for b in blocks)
    assert any("agentmem.connect(inprocess=True" in b for b in blocks)
    assert all("def call_llm(" in b for b in blocks)  # the model call is a labelled stub
    signature = inspect.signature(agentmem.connect)
    calls: list[dict[str, object]] = []

    def connect(*args: object, **kwargs: object) -> Client:
        bound = signature.bind(*args, **kwargs).arguments
        calls.append(bound)
        # Without a name, the real default is one name per process; keep that, so an
        # example that needs names but omits them fails here too.
        name = bound.get("name") or f"readme-{os.getpid()}"
        return connect_agent(name=name)

    monkeypatch.setattr(agentmem, "connect", connect)
    for block in blocks:
        exec(compile(block, f"{README.name}:{SECTION}", "exec"), {"__name__": "__readme__"})
    assert any(c.get("inprocess") for c in calls) and any(not c for c in calls)
    out = capsys.readouterr().out
    assert "7 (a reply to 5 messages)" in out  # the daemon example's conversation
    assert str([3] * 20) in out  # twenty in-process agents, three messages each
