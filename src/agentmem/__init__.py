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

from agentmem.config import Config
from agentmem.errors import (
    AgentExists,
    AgentmemError,
    CorruptFrame,
    DaemonUnavailable,
    InvalidArgument,
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
from agentmem.store import Agent, AgentStats, CheckReport, Store, StoreStats, TierStats, TypeStats

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentExists",
    "AgentState",
    "AgentStats",
    "AgentmemError",
    "CheckReport",
    "ChunkId",
    "Config",
    "CorruptFrame",
    "DaemonUnavailable",
    "Handle",
    "InvalidArgument",
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
]
