from __future__ import annotations

import subprocess
import sys
import types

import agentmem
from agentmem import errors
from agentmem.hashing import chunk_id, message_id


def test_all_is_exactly_the_public_api() -> None:
    public = {
        n
        for n, v in vars(agentmem).items()
        # submodules become attributes once imported anywhere; the __future__ import too
        if not n.startswith("_")
        and not isinstance(v, types.ModuleType)
        and n not in ("annotations", "TYPE_CHECKING")
    } | set(agentmem._LAZY)
    assert public | {"__version__"} == set(agentmem.__all__)
    for name in agentmem.__all__:
        assert getattr(agentmem, name) is not None


def test_every_error_is_exported_with_a_unique_code() -> None:
    codes = [cls.code for cls in errors.ERRORS_BY_CODE.values()]
    assert len(codes) == len(set(codes))
    for cls in errors.ERRORS_BY_CODE.values():
        assert issubclass(cls, agentmem.AgentmemError)
        assert getattr(agentmem, cls.__name__) is cls


def test_ids_are_blake3_and_stable() -> None:
    # Pinned: a change here re-identifies every stored chunk (a format change).
    assert chunk_id(b"").hex() == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    assert chunk_id(b"agentmem").hex() == chunk_id(memoryview(b"agentmem")).hex()
    first = message_id(None, chunk_id(b"hello"))
    second = message_id(first, chunk_id(b"world"))
    assert second != message_id(None, chunk_id(b"world"))  # the id depends on the history
    assert second == message_id(message_id(None, chunk_id(b"hello")), chunk_id(b"world"))


def test_readme_example_runs() -> None:
    store = agentmem.Store()
    me = store.register_agent("planner")
    prompt = store.alloc_smu("system_prompt", "You are a helpful agent.", me)
    assert bytes(store.read(prompt)) == b"You are a helpful agent."
    chat = store.alloc_smu("conversation", [], me)
    store.append(chat, b'{"role":"user","content":"hi"}')
    assert store.length(chat) == 1
    store.close()


def test_the_asyncio_client_is_reached_from_the_package_and_only_then_imports_asyncio() -> None:
    script = (
        "import sys, agentmem\n"
        "assert 'asyncio' not in sys.modules\n"
        "assert agentmem.aio.connect is sys.modules['agentmem.aio'].connect\n"
        "assert 'asyncio' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
