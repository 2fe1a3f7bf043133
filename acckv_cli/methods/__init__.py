"""Compression methods behind one interface, registered by name (the CLI's `--method`).

Each method is a small dataclass in its own module; importing this package registers them all.
"""

from acckv_cli.methods.base import CompressionError, CompressionMethod, LayerContext, LayerResult, ScorerMethod
from acckv_cli.methods.budget import Budget, BudgetError
from acckv_cli.methods.registry import METHODS, get_method, register
from acckv_cli.methods import full, random_eviction, streamingllm, h2o, snapkv, acckv, pyramidkv, lookm, fastv, taskfocus  # noqa: F401,E402  (registration)
from acckv_cli.methods import uniform, divprune, oracle  # noqa: F401,E402  (registration)

__all__ = ["Budget", "BudgetError", "CompressionError", "CompressionMethod", "LayerContext", "LayerResult",
           "METHODS", "ScorerMethod", "get_method", "register"]
