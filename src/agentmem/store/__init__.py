"""The store: content-addressed chunks in tiers, SMUs, conversations, refs and statistics.

The only module tree that touches mmap (``segments``); a library first, served by the daemon.
"""

from __future__ import annotations

from agentmem.stats import AgentStats, StoreStats, TierStats, TypeStats
from agentmem.store.check import CheckReport
from agentmem.store.records import Agent
from agentmem.store.store import Store

__all__ = ["Agent", "AgentStats", "CheckReport", "Store", "StoreStats", "TierStats", "TypeStats"]
