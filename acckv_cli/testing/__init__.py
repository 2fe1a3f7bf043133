"""Tiny Qwen2.5-Omni (`tiny`) and Qwen3-Omni (`qwen3`) thinkers built offline, for tests and benchmarks."""
