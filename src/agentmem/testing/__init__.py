"""Public test helpers: a real daemon in a temporary directory, for tests and benchmarks."""

from __future__ import annotations

from agentmem.testing.daemon import DaemonProcess

__all__ = ["DaemonProcess"]
