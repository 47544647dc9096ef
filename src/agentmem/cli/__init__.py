"""The ``agentmem`` command line: one module per command."""
