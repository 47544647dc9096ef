"""The swarm's agent process: loads ``agent.py`` from its bytecode and runs it.

Run as a script (``python launch.py ...``, what :mod:`agentmem.swarm.run` starts). A script is
compiled from source at every start and the compiler's scratch memory stays in the process's
heap: 1.8 MiB of PSS an agent process for ``agent.py`` (measured with ``smaps_rollup``, in
every mode alike). Loaded as a module, ``agent.py`` comes from the bytecode the swarm writes
before it starts (``run.ensure_bytecode``), as agentmem's own modules do. It is loaded by its
path, not imported as ``agentmem.swarm.agent``: the package's ``__init__`` would load the
client into plain agents too.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType


def load_agent() -> ModuleType:
    """``agent.py``, beside this file, as the module ``swarm_agent``."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "agent.py")
    spec = importlib.util.spec_from_file_location("swarm_agent", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    sys.exit(load_agent().main())
