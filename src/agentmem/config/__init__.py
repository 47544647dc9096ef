"""Configuration: the one place that reads the environment.

Library code takes a :class:`Config`; only :meth:`Config.from_env` (called by the CLI and the
daemon) and the path functions here look at ``AGENTMEM_*`` and ``XDG_*`` variables.

``Config`` lives in ``settings`` and is imported on first use: the client needs only the socket
path, and importing ``dataclasses`` (with ``inspect``) costs ~2.7 MiB of PSS per agent process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentmem.config.settings import Config

__all__ = ["Config", "default_socket_path", "runtime_dir"]


def __getattr__(name: str) -> object:
    if name == "Config":
        from agentmem.config.settings import Config

        return Config
    raise AttributeError(f"module 'agentmem.config' has no attribute {name!r}")


def runtime_dir(environ: Mapping[str, str] | None = None) -> str:
    """The daemon's runtime directory: ``$XDG_RUNTIME_DIR/agentmem`` or ``/tmp/agentmem-$UID``.

    Only computed here; created (mode 0700, checked to be ours) by the daemon.
    """
    env = os.environ if environ is None else environ
    override = env.get("AGENTMEM_RUNTIME_DIR")
    if override:
        return override
    xdg = env.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return os.path.join(xdg, "agentmem")
    return f"/tmp/agentmem-{os.getuid()}"


def default_socket_path(environ: Mapping[str, str] | None = None) -> str:
    """Where the daemon listens unless told otherwise (``AGENTMEM_SOCKET`` overrides)."""
    env = os.environ if environ is None else environ
    return env.get("AGENTMEM_SOCKET") or os.path.join(runtime_dir(env), "agentmem.sock")
