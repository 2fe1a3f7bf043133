"""The built-in demo model: a small Qwen2.5-Omni thinker trained offline on SynthAVQA."""
