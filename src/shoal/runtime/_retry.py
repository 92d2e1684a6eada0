"""Retry policy: capped exponential backoff with full jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how soon a failed task runs again.

    ``attempts`` counts the first run too, so ``attempts=3`` means two retries. The
    delay before retry *n* (1-based) is drawn uniformly from
    ``[0, min(cap, base * multiplier ** (n - 1))]`` ("full jitter"): spreading retries out
    keeps many failing tasks from hammering a recovering server in lock step.
    A delay the handler asked for (``RetryLater(after=...)``) wins over the policy,
    still capped by ``cap``.
    """

    attempts: int = 3
    base: float = 0.1
    multiplier: float = 2.0
    cap: float = 30.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be >= 1")
        if self.base < 0 or self.cap < 0 or self.multiplier < 1:
            raise ValueError("base and cap must be >= 0 and multiplier >= 1")

    def delay(self, retry: int, requested: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        if requested is not None:
            return max(0.0, min(self.cap, requested))
        ceiling = min(self.cap, self.base * self.multiplier ** (retry - 1))
        return random.uniform(0.0, ceiling) if self.jitter else ceiling


NO_RETRY = RetryPolicy(attempts=1)
