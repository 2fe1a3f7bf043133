"""Stage 2, model: decoded media in, model inputs and a forward pass out.

Model families (Qwen2.5-Omni, Qwen3-Omni) and loading, the chat prompt, the token layout (modality, time and
3-D mRoPE position of every prompt token), the soundtrack's encoder windows, and the one generation routine.
"""
