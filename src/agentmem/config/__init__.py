"""Configuration: the one place that reads the environment.

Library code takes a :class:`Config`; only :meth:`Config.from_env` (called by the CLI and the
daemon) and the path functions here look at ``AGENTMEM_*`` and ``XDG_*`` variables.

``Config`` lives in ``settings`` and is imported on first use: the client needs only the socket
path, and importing ``dataclasses`` (with ``inspect``) costs ~2.7 MiB of PSS per agent process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

TYPE_CHECKING = False  # not typing's: the client must not import typing (see ids.py)

if TYPE_CHECKING:
    from agentmem.config.settings import Config

__all__ = [
    "Config",
    "default_socket_path",
    "profile_allocs",
    "config_file",
    "runtime_dir",
    "state_dir",
]


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


def config_file(environ: Mapping[str, str] | None = None) -> str | None:
    """The daemon's config file if one exists: ``AGENTMEM_CONFIG``, else
    ``$XDG_CONFIG_HOME/agentmem/config.toml`` (``~/.config/agentmem/config.toml``)."""
    env = os.environ if environ is None else environ
    explicit = env.get("AGENTMEM_CONFIG")
    if explicit:
        return explicit
    base = env.get("XDG_CONFIG_HOME") or os.path.join(
        env.get("HOME") or os.path.expanduser("~"), ".config"
    )
    path = os.path.join(base, "agentmem", "config.toml")
    return path if os.path.isfile(path) else None


def state_dir(environ: Mapping[str, str] | None = None) -> str:
    """Where the daemon keeps its journal and cold-tier packs: ``AGENTMEM_STATE_DIR``, else
    ``$XDG_STATE_HOME/agentmem``, else ``~/.local/state/agentmem``. Created (0700) on use."""
    env = os.environ if environ is None else environ
    override = env.get("AGENTMEM_STATE_DIR")
    if override:
        return override
    xdg = env.get("XDG_STATE_HOME")
    if xdg:
        return os.path.join(xdg, "agentmem")
    home = env.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".local", "state", "agentmem")


def default_socket_path(environ: Mapping[str, str] | None = None) -> str:
    """Where the daemon listens unless told otherwise (``AGENTMEM_SOCKET`` overrides)."""
    env = os.environ if environ is None else environ
    return env.get("AGENTMEM_SOCKET") or os.path.join(runtime_dir(env), "agentmem.sock")


def trim_on_idle(environ: Mapping[str, str] | None = None) -> bool:
    """``AGENTMEM_TRIM_ON_IDLE``: whether a client gives its process's free heap back to the
    system when its agent reports itself idle or paused (default on; ``0``/``false``/``no``/
    ``off`` turn it off). ``ValueError`` for anything else."""
    env = os.environ if environ is None else environ
    raw = env.get("AGENTMEM_TRIM_ON_IDLE", "").strip().lower()
    if raw in ("", "1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"AGENTMEM_TRIM_ON_IDLE={raw!r} is not one of on, off, 1, 0")


def profile_allocs(environ: Mapping[str, str] | None = None) -> int:
    """``AGENTMEM_PROFILE_ALLOCS``: sample the Python stack of one ``alloc_smu`` in N (0: off).

    ``1`` (or ``true``/``yes``/``on``) samples every allocation; unset, empty, ``0`` or
    ``false``/``no``/``off`` turn it off. ``ValueError`` for anything else.
    """
    env = os.environ if environ is None else environ
    raw = env.get("AGENTMEM_PROFILE_ALLOCS", "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return 0
    if raw in ("true", "yes", "on"):
        return 1
    try:
        n = int(raw)
    except ValueError:
        n = -1
    if n < 0:
        raise ValueError(f"AGENTMEM_PROFILE_ALLOCS={raw!r}: give N >= 0 (sample 1 in N)")
    return n
