"""A running top-k over a corpus scored one block at a time, ordered exactly as
sentence-transformers' `InformationRetrievalEvaluator` orders its hits."""

from __future__ import annotations

import torch


class RunningTopK:
    """The best `k` corpus rows per query under the order (score descending, key ascending),
    updated one chunk of scores at a time.

    `keys` are the rows' positions in the ascending order of their corpus ids, so ties break
    exactly as the evaluator breaks them; they must be unique and below `key_space`. Each update
    keeps the best `k` *set* (cheap: one `topk` over the chunk, one over 2k candidates); the
    order is settled once, by `ranked`.
    """

    def __init__(self, queries: int, k: int, key_space: int, device: torch.device) -> None:
        self.k = k
        self.key_space = key_space
        self.scores = torch.empty((queries, 0), device=device)
        self.keys = torch.empty((queries, 0), dtype=torch.long, device=device)

    def add(self, scores: torch.Tensor, keys: torch.Tensor) -> None:
        """Merge a (queries x rows) block of scores; `keys` holds the rows' keys."""
        values, chosen = self._best(scores, keys)
        merged_scores = torch.cat([self.scores, values], dim=1)
        merged_keys = torch.cat([self.keys, chosen], dim=1)
        self.scores, self.keys = self._best(merged_scores, merged_keys)

    def ranked(self) -> torch.Tensor:
        """Each query's keys, best first: by score, then by key."""
        by_key = self.keys.argsort(dim=1)
        scores, keys = self.scores.gather(1, by_key), self.keys.gather(1, by_key)
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices
        return keys.gather(1, order)

    def _best(
        self, scores: torch.Tensor, keys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The best-k set of each row under (-score, key); `keys` per column (1-D) or per cell."""
        per_cell = keys.dim() == 2
        k = self.k
        if scores.shape[1] <= k:
            return scores, keys if per_cell else keys.expand(scores.shape[0], -1)
        # One more than k, sorted: equal k-th and (k+1)-th scores mean a tie at the cut, which
        # topk resolves arbitrarily; those rows are reselected by key (the evaluator's trick:
        # everything above the cut first, then the tied rows with the lowest keys).
        values, index = torch.topk(scores, k + 1, dim=1, largest=True, sorted=True)
        tied_rows = (values[:, k - 1] == values[:, k]).nonzero().squeeze(1)
        values, index = values[:, :k], index[:, :k]
        chosen = keys.gather(1, index) if per_cell else keys[index]
        if tied_rows.numel():
            tied, cut = scores[tied_rows], values[tied_rows, k - 1 :]
            row_keys = keys[tied_rows] if per_cell else keys.expand_as(tied)
            order_keys = torch.where(tied > cut, row_keys, 2 * self.key_space)
            order_keys = torch.where(tied == cut, row_keys + self.key_space, order_keys)
            picked = order_keys.topk(k, dim=1, largest=False).indices
            values[tied_rows] = tied.gather(1, picked)
            chosen[tied_rows] = row_keys.gather(1, picked)
        return values, chosen
