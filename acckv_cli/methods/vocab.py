"""The allowed values of the attention-scoring knobs, apart from `attention.py` (which imports transformers).

Method dataclasses list them in `choices` when they are declared, so they must import without torch: a bad
`-o head_reduction=...` is then a usage error before torch loads (`acckv_cli.lazy`).
"""

# How per-query-head scores [H, L] become the granularity of selection (`attention.reduce_heads`).
HEAD_REDUCTIONS = ("mean", "max", "kv_mean", "kv_max")
# Per-row weights of an attention accumulation (`attention.row_weights`).
WEIGHTINGS = ("none", "position")
