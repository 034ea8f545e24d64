"""A seeded, position-biased click model for simulating users from relevance judgements.

Users examine rank r with probability (1 / r) ** eta (the classic position-based model: top
results get looked at, deep ones rarely), click an examined result with `p_click_relevant` if it
is relevant and `p_click_irrelevant` otherwise (noise), and — having seen nothing relevant —
mark the search irrelevant with `p_mark_irrelevant`. Each session draws from its own RNG seeded
by (seed, session key), so the outcome does not depend on the order sessions are simulated in.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence, Set
from dataclasses import dataclass


@dataclass(frozen=True)
class SimulatedSession:
    clicks: tuple[str, ...]
    irrelevant: bool


@dataclass(frozen=True)
class PositionBiasedClickModel:
    eta: float = 1.0
    p_click_relevant: float = 0.95
    p_click_irrelevant: float = 0.03
    p_mark_irrelevant: float = 0.3
    seed: int = 0

    def examine_probability(self, rank: int) -> float:
        return (1.0 / rank) ** self.eta

    def simulate(self, key: str, shown: Sequence[str], relevant: Set[str]) -> SimulatedSession:
        digest = hashlib.sha256(f"{self.seed}:{key}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        clicks = []
        for rank, object_id in enumerate(shown, start=1):
            examined = rng.random() < self.examine_probability(rank)
            p_click = self.p_click_relevant if object_id in relevant else self.p_click_irrelevant
            if examined and rng.random() < p_click:
                clicks.append(object_id)
        saw_relevant = any(oid in relevant for oid in shown)
        irrelevant = not clicks and not saw_relevant and rng.random() < self.p_mark_irrelevant
        return SimulatedSession(tuple(clicks), irrelevant)
