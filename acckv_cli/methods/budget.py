"""KV budgets: a ratio of the prompt (`0.2`) or an absolute number of cache entries per layer (`160`).

Text, system, question and delimiter tokens are always kept and count against the budget (the paper's
`budget_scope = total`), so every method is compared at the same number of cache entries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class BudgetError(ValueError):
    """A budget that cannot be met (malformed, or smaller than the protected text)."""


@dataclass(frozen=True)
class Budget:
    """`value` ≤ 1 is a ratio of the prompt length; `value` > 1 is a token count per layer."""

    value: float

    def __post_init__(self):
        if not math.isfinite(self.value) or self.value <= 0:
            raise BudgetError(f"budget must be a positive ratio (e.g. 0.2) or token count (e.g. 160), got {self.value}")
        if self.value > 1 and self.value != int(self.value):
            raise BudgetError(f"a budget above 1 is a token count and must be a whole number, got {self.value}")

    @classmethod
    def parse(cls, text: str | float) -> "Budget":
        """Parse `0.2`, `20%` or `160`."""
        raw = str(text).strip()
        try:
            value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
        except ValueError:
            raise BudgetError(f"budget must be a ratio like 0.2, a percentage like 20%, or a token count like 160; got {raw!r}") from None
        return cls(value)

    @property
    def is_ratio(self) -> bool:
        return self.value <= 1

    def tokens(self, length: int) -> int:
        """Cache entries allowed for a layer whose prompt has `length` tokens."""
        if self.is_ratio:
            return min(length, int(round(self.value * length)))
        return min(length, int(self.value))

    def __str__(self) -> str:
        return f"{self.value:g}" if self.is_ratio else f"{int(self.value)} tokens"


def media_slots(total: int, protected: int, length: int) -> int:
    """Slots left for audio/video once the protected tokens are kept; an error if they do not fit."""
    if total < protected:
        raise BudgetError(
            f"budget of {total} cache entries is smaller than the {protected} text tokens that are always "
            f"kept (prompt of {length} tokens); raise --budget")
    return total - protected
