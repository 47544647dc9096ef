"""agentmem: an agent-aware memory manager.

Content-addressed, shared zero-copy, compressed and tiered by meaning. The in-process API::

    import agentmem

    store = agentmem.Store()
    me = store.register_agent("planner")
    prompt = store.alloc_smu("system_prompt", text, me)   # stored once per domain
    view = store.read(prompt)                              # zero-copy memoryview
    chat = store.alloc_smu("conversation", [], me)
    store.append(chat, b'{"role":"user","content":"hi"}')

See docs/design.md for the architecture and docs/formats.md for what is on disk and the wire.
"""

from __future__ import annotations

from agentmem.client import Client
from agentmem.client import connect as _connect
from agentmem.errors import (
    AgentExists,
    AgentmemError,
    CorruptFrame,
    DaemonRunning,
    DaemonUnavailable,
    DiskFull,
    InvalidArgument,
    PackUnreadable,
    PermissionDenied,
    ProtocolError,
    QuotaExceeded,
    StoreClosed,
    TooLarge,
    UnknownAgent,
    UnknownDictionary,
    UnknownHandle,
    WrongType,
)
from agentmem.ids import ChunkId, Handle, MessageId
from agentmem.states import AgentState, SMUType, Tier

TYPE_CHECKING = False  # not typing's: the client must not import typing (see ids.py)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from agentmem.client.conversation import Conversation
    from agentmem.config import Config
    from agentmem.stats import AgentStats, DaemonStats, StoreStats, TierStats, TypeStats
    from agentmem.store import Agent, CheckReport, Store

# The store (zstandard, blake3, the chunker) is imported on first use of these names only:
# an agent process that just connects to the daemon must not pay ~8 MiB of PSS for it.
_LAZY = {
    "Agent": "agentmem.store",
    "CheckReport": "agentmem.store",
    "Store": "agentmem.store",
    "Config": "agentmem.config.settings",
    "AgentStats": "agentmem.stats",
    "DaemonStats": "agentmem.stats",
    "StoreStats": "agentmem.stats",
    "TierStats": "agentmem.stats",
    "TypeStats": "agentmem.stats",
    "Conversation": "agentmem.client.conversation",
}


def __getattr__(name: str) -> object:
    import importlib

    if name == "aio":  # ``agentmem.aio.connect()`` after a plain ``import agentmem``
        return importlib.import_module("agentmem.aio")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agentmem' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"


def connect(
    socket_path: str | None = None,
    *,
    inprocess: bool = False,
    name: str | None = None,
    importance: int = 0,
    state: AgentState | str = AgentState.ACTIVE,
    autostart: bool | None = None,
    timeout: float | None = None,
    profile_allocs: bool | int | None = None,
    open: Sequence[str] = (),
    trim_on_idle: bool | None = None,
) -> Client:
    """Connect an agent to agentmem and return its :class:`Client`.

    By default to the daemon on the default socket, starting one on first use; with
    ``socket_path``, to that daemon only; with ``inprocess=True``, to a store in this process
    shared by every in-process client (no daemon, no socket). ``profile_allocs`` samples the
    caller's stack at ``alloc_smu`` for ``agentmem flamegraph`` (True: every call; N: one in
    N; None: as ``AGENTMEM_PROFILE_ALLOCS`` says). ``open`` names published content to open
    in the handshake (``client.opened[name]``). ``trim_on_idle``: give the process's free heap
    back when the agent reports itself idle or paused (None: as ``AGENTMEM_TRIM_ON_IDLE``
    says, on by default). ``timeout``: seconds that bound the connect and every request, past
    which the call raises ``DaemonUnavailable`` (None: wait as long as the daemon takes;
    nothing waits on a socket in-process).
    """
    if inprocess and (socket_path is not None or autostart):
        raise InvalidArgument("inprocess=True uses no daemon: give no socket_path or autostart")
    if inprocess:
        from agentmem.client.client import _profile_every
        from agentmem.config import trim_on_idle as trim_default
        from agentmem.daemon.inprocess import InProcessTransport

        return Client(
            InProcessTransport(),
            name=name,
            importance=importance,
            state=state,
            profile_allocs=_profile_every(profile_allocs),
            open=open,
            trim_on_idle=trim_default() if trim_on_idle is None else trim_on_idle,
        )
    return _connect(
        socket_path,
        name=name,
        importance=importance,
        state=state,
        autostart=autostart,
        timeout=timeout,
        profile_allocs=profile_allocs,
        open=open,
        trim_on_idle=trim_on_idle,
    )


__all__ = [
    "Agent",
    "AgentExists",
    "AgentState",
    "AgentStats",
    "AgentmemError",
    "CheckReport",
    "Client",
    "ChunkId",
    "Config",
    "Conversation",
    "CorruptFrame",
    "DaemonRunning",
    "DaemonStats",
    "DaemonUnavailable",
    "DiskFull",
    "Handle",
    "InvalidArgument",
    "PackUnreadable",
    "MessageId",
    "PermissionDenied",
    "ProtocolError",
    "QuotaExceeded",
    "SMUType",
    "Store",
    "StoreClosed",
    "StoreStats",
    "Tier",
    "TierStats",
    "TooLarge",
    "TypeStats",
    "UnknownAgent",
    "UnknownDictionary",
    "UnknownHandle",
    "WrongType",
    "__version__",
    "connect",
]
