"""KV budgets: how many **media** cache entries each layer keeps.

A ratio (`0.2`, `20%`) is a share of the prompt's media (audio + video) tokens; a whole number above 1
(`160`) is a count of media tokens. Text, system prompt, question and delimiter entries are always kept
*on top of* the budget, so a budget can never be too small for an input, and every method is compared at
the same number of media entries per layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from acckv_cli.errors import BudgetError


@dataclass(frozen=True)
class Budget:
    """`value` ≤ 1 is a ratio of the media tokens; `value` > 1 is a number of media tokens per layer."""

    value: float

    def __post_init__(self):
        if not math.isfinite(self.value) or self.value <= 0:
            raise BudgetError(f"budget must be a positive ratio (e.g. 0.2) or media-token count (e.g. 160), "
                              f"got {self.value}")
        if self.value > 1 and self.value != int(self.value):
            raise BudgetError(f"a budget above 1 is a media-token count and must be a whole number, got {self.value:g} "
                              f"(a ratio is at most 1: 0.2 or 20%)")

    @classmethod
    def parse(cls, text: str | float) -> "Budget":
        """Parse `0.2`, `20%` or `160`."""
        raw = str(text).strip()
        try:
            value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
        except ValueError:
            raise BudgetError(f"budget must be a ratio like 0.2, a percentage like 20%, or a media-token count "
                              f"like 160; got {raw!r}") from None
        if raw.endswith("%") and not 0 < value <= 1:  # not "a count must be whole": no count was written
            raise BudgetError(f"a percentage budget must lie in (0%, 100%], got {raw!r}")
        return cls(value)

    @property
    def number(self) -> float | int:
        """The budget as JSON and CSV give it: a ratio (0.2) or a whole media-token count (160)."""
        return self.value if self.is_ratio else int(self.value)

    def describe(self) -> str:
        """The budget for people: `20 %` of the media, or `160 media tokens`."""
        return f"{100 * self.value:g} %" if self.is_ratio else f"{int(self.value)} media tokens"

    @property
    def is_ratio(self) -> bool:
        return self.value <= 1

    def media_tokens(self, n_media: int) -> int:
        """Media entries a layer keeps when the prompt has `n_media` audio + video tokens."""
        if self.is_ratio:
            return min(n_media, int(round(self.value * n_media)))
        return min(n_media, int(self.value))

    def __str__(self) -> str:
        return f"{self.value:g}" if self.is_ratio else f"{int(self.value)} tokens"
