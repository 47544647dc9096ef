"""``python -m agentmem``: the command line."""

import sys

from agentmem.cli.main import main

sys.exit(main())
