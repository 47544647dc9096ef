"""Benchmarks: scenarios run by ``agentmem bench``, each figure beside its baseline."""
