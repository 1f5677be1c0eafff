"""Greedy non-overlapping selection of basic units (MxDNA's "NMS" step).

MxDNA's learnt tokenizer scores every (position, expert) pair.  Expert ``j``
has kernel size ``k = kernel_sizes[j]``; the pair ``(p, j)`` proposes the unit
spanning the positions ``[p - k // 2, p - k // 2 + k)`` (for even ``k`` the
centre ``p`` is the right one of the two middle positions).  A pair is a
*candidate* iff its whole span lies inside ``[0, L)`` and every position of
it is a nucleotide (``nucleotide_mask`` True).

The selection rule (specified by :func:`select_units_reference`): sort all
candidate pairs of a sample by score, highest first, ties broken by lower
position ``p`` and then lower expert ``j``; walk them in that order and accept
a pair iff none of its span positions is already covered by an accepted
pair, then mark its span covered.

:func:`select_units` computes exactly the same result with tensor operations
on the inputs' device: the greedy result is the lexicographically-first
maximal independent set of the conflict graph, which is found in rounds by
accepting every undecided pair whose priority beats all undecided pairs it
overlaps.

The result is ``center_expert`` (B, L) int64: the expert id at each accepted
pair's centre, -1 elsewhere.  :func:`member_expert` and :func:`unit_spans`
turn it into per-position membership and an explicit list of units.

Scores must not contain NaN (a ``ValueError`` is raised); ``-0.0`` and
``0.0`` count as equal.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "select_units_reference",
    "select_units",
    "member_expert",
    "unit_spans",
]

_NONE = -1  # "no priority / no expert" marker in int64 tensors


# ----------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------


def _check_kernel_sizes(kernel_sizes: Sequence[int], n: int | None = None) -> list[int]:
    """Return ``kernel_sizes`` as a list of positive ints (length ``n`` if given)."""
    ks = [int(k) for k in kernel_sizes]
    if not ks:
        raise ValueError("kernel_sizes must not be empty")
    if any(k < 1 for k in ks):
        raise ValueError(f"kernel sizes must be positive, got {ks}")
    if n is not None and len(ks) != n:
        raise ValueError(f"scores have {n} experts but {len(ks)} kernel sizes were given")
    return ks


def _check_inputs(
    scores: Tensor, nucleotide_mask: Tensor, kernel_sizes: Sequence[int]
) -> list[int]:
    """Validate shapes/dtypes of the selection inputs; return the kernel sizes."""
    if scores.dim() != 3:
        raise ValueError(f"scores must be (B, L, n), got shape {tuple(scores.shape)}")
    if not scores.is_floating_point():
        raise ValueError(f"scores must be a float tensor, got {scores.dtype}")
    if nucleotide_mask.dtype != torch.bool:
        raise ValueError(f"nucleotide_mask must be bool, got {nucleotide_mask.dtype}")
    if tuple(nucleotide_mask.shape) != tuple(scores.shape[:2]):
        raise ValueError(
            f"nucleotide_mask shape {tuple(nucleotide_mask.shape)} does not match "
            f"scores (B, L) = {tuple(scores.shape[:2])}"
        )
    if nucleotide_mask.device != scores.device:
        raise ValueError("scores and nucleotide_mask must be on the same device")
    return _check_kernel_sizes(kernel_sizes, scores.shape[2])


# ----------------------------------------------------------------------------
# reference (specification)
# ----------------------------------------------------------------------------


def select_units_reference(
    scores: Tensor, nucleotide_mask: Tensor, kernel_sizes: Sequence[int]
) -> Tensor:
    """Greedy non-overlapping unit selection, one sample at a time (the spec).

    Args:
        scores: (B, L, n) float scores of every (position, expert) pair.
        nucleotide_mask: (B, L) bool, True at nucleotide positions.
        kernel_sizes: n unit lengths, ``kernel_sizes[j]`` for expert ``j``.

    Returns:
        (B, L) int64 on ``scores.device``: the expert id at the centre of each
        accepted unit, -1 elsewhere.
    """
    ks = _check_inputs(scores, nucleotide_mask, kernel_sizes)
    B, L, n = scores.shape
    # float64 holds every float16/bfloat16/float32/float64 value exactly
    s_all = scores.detach().to("cpu", torch.float64).numpy()
    if np.isnan(s_all).any():
        raise ValueError("scores contain NaN")
    m_all = nucleotide_mask.detach().to("cpu").numpy()
    out = np.full((B, L), _NONE, dtype=np.int64)

    for b in range(B):
        s, mask = s_all[b], m_all[b]
        candidates = []
        for p in range(L):
            for j, k in enumerate(ks):
                start = p - k // 2
                end = start + k
                if start < 0 or end > L or not mask[start:end].all():
                    continue
                # sort key: score descending, then position, then expert
                candidates.append((-float(s[p, j]), p, j))
        candidates.sort()

        covered = np.zeros(L, dtype=bool)
        for _, p, j in candidates:
            start = p - ks[j] // 2
            end = start + ks[j]
            if covered[start:end].any():
                continue
            covered[start:end] = True
            out[b, p] = j

    return torch.from_numpy(out).to(scores.device)


# ----------------------------------------------------------------------------
# vectorised building blocks
# ----------------------------------------------------------------------------


class _Geometry:
    """Index tensors describing the expert spans for a given (L, kernel_sizes, device).

    Pairs are stored centre-indexed as (B, L, n) tensors.  Two operators move
    int64 values between pairs and positions:

    * :meth:`spread`: for each position q, the max value over pairs whose span
      covers q (``-1`` if none);
    * :meth:`span_max`: for each pair, the max of a per-position value over
      its span.
    """

    def __init__(self, L: int, ks: list[int], device: torch.device):
        self.L = L
        self.n = len(ks)
        self.K = max(ks)
        k = torch.tensor(ks, dtype=torch.long, device=device)
        left = k // 2
        self.max_left = int(max(kk // 2 for kk in ks))
        pos = torch.arange(L, device=device)

        # centre -> start: S[:, j, s] = V[:, s + left_j, j]
        self.start_to_centre = (pos[None, :] + left[:, None])  # (n, L), < L + max_left

        # experts ordered by kernel size descending; for offset d the experts with
        # k > d are a prefix of that order, of length count_gt[d] >= 1
        self.order_desc = torch.argsort(-k, stable=True)
        count_gt = torch.tensor(
            [sum(1 for kk in ks if kk > d) for d in range(self.K)], dtype=torch.long, device=device
        )
        self.prefix_idx = count_gt - 1  # (K,)

        # M[q] = max_d G_d[q - d]; index into G padded by K-1 on the left
        d = torch.arange(self.K, device=device)
        self.shift_idx = pos[None, :] - d[:, None] + (self.K - 1)  # (K, L)

        # span max of a position value for pair (p, j): W[start, k_j - 1] with
        # start = p - left_j (clamped; pairs with start < 0 are never candidates)
        start = (pos[:, None] - left[None, :]).clamp(min=0)  # (L, n)
        self.span_flat_idx = (start * self.K + (k[None, :] - 1)).reshape(-1)  # (L*n,)

        # candidate test: span inside [0, L)
        self.start = pos[:, None] - left[None, :]  # (L, n), may be negative
        self.end = self.start + k[None, :]  # exclusive

    def spread(self, V: Tensor) -> Tensor:
        """(B, L, n) int64 pair values -> (B, L) max over pairs covering each position."""
        B = V.shape[0]
        K = self.K
        Vt = V.transpose(1, 2)  # (B, n, L) centre-indexed
        Vt = torch.nn.functional.pad(Vt, (0, self.max_left), value=_NONE)
        S = Vt.gather(2, self.start_to_centre.expand(B, -1, -1))  # (B, n, L) start-indexed
        C = S.index_select(1, self.order_desc).cummax(dim=1).values  # prefix max over big k first
        G = C.index_select(1, self.prefix_idx)  # (B, K, L): G[d][s] = max over k > d
        G = torch.nn.functional.pad(G, (K - 1, 0), value=_NONE)
        shifted = G.gather(2, self.shift_idx.expand(B, -1, -1))  # (B, K, L): G[d][q - d]
        return shifted.amax(dim=1)

    def span_max(self, X: Tensor) -> Tensor:
        """(B, L) int64 position values -> (B, L, n) max over each pair's span."""
        B = X.shape[0]
        L, K = self.L, self.K
        Xp = torch.nn.functional.pad(X, (0, K - 1), value=_NONE)  # (B, L + K - 1)
        W = Xp.unfold(1, K, 1).cummax(dim=2).values  # (B, L, K): W[s, k-1] = max X[s:s+k]
        out = W.reshape(B, L * K).gather(1, self.span_flat_idx.expand(B, -1))
        return out.reshape(B, L, self.n)

    def candidates(self, nucleotide_mask: Tensor) -> Tensor:
        """(B, L) bool mask -> (B, L, n) bool: span inside [0, L) and all nucleotides."""
        B = nucleotide_mask.shape[0]
        L = self.L
        # bad[b, t] = number of non-nucleotide positions among the first t
        bad = torch.zeros(B, L + 1, dtype=torch.long, device=nucleotide_mask.device)
        bad[:, 1:] = (~nucleotide_mask).long().cumsum(dim=1)
        inside = (self.start >= 0) & (self.end <= L)  # (L, n)
        s = self.start.clamp(0, L).reshape(-1)
        e = self.end.clamp(0, L).reshape(-1)
        n_bad = bad.index_select(1, e) - bad.index_select(1, s)  # (B, L*n)
        return (n_bad.reshape(B, L, self.n) == 0) & inside


def _priorities(scores: Tensor) -> Tensor:
    """Unique int64 priorities (B, L, n), larger = earlier in the greedy order.

    Equal scores are ordered by lower position, then lower expert, via a
    stable sort of the p-major flattened pairs.
    """
    B, L, n = scores.shape
    N = L * n
    x = scores.detach()
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()  # exact for float16 / bfloat16
    # ascending stable sort of -x == descending order, equal values keep (p, j)
    # order; "+ 0.0" maps -0.0 to +0.0 so bit-based (radix) sorts see them equal
    key = (-x.reshape(B, N)) + 0.0
    order = torch.sort(key, dim=1, stable=True).indices
    prio = torch.empty(B, N, dtype=torch.long, device=scores.device)
    ranks = torch.arange(N, 0, -1, dtype=torch.long, device=scores.device).expand(B, -1)
    prio.scatter_(1, order, ranks)  # in 1..N
    return prio.reshape(B, L, n)


# ----------------------------------------------------------------------------
# fast exact selection
# ----------------------------------------------------------------------------


def select_units(
    scores: Tensor,
    nucleotide_mask: Tensor,
    kernel_sizes: Sequence[int],
    *,
    return_rounds: bool = False,
):
    """Vectorised exact equivalent of :func:`select_units_reference`.

    Runs on the tensors' device with no per-sample loop.  Each round accepts
    every undecided candidate pair whose priority is the highest among all
    undecided pairs overlapping it (such pairs are pairwise disjoint and are
    accepted by the sequential greedy too), then discards every undecided pair
    touching a newly covered position.  Rounds repeat until no pair is
    undecided (one host sync per round); at most L rounds are needed, since
    each round accepts at least one unit in every unfinished sample.

    Args:
        scores: (B, L, n) float scores (any float dtype, no NaN).
        nucleotide_mask: (B, L) bool, True at nucleotide positions.
        kernel_sizes: n unit lengths, ``kernel_sizes[j]`` for expert ``j``.
        return_rounds: also return the number of rounds used.

    Returns:
        (B, L) int64 ``center_expert`` (expert id at accepted centres, -1
        elsewhere), or ``(center_expert, rounds)`` if ``return_rounds``.
    """
    ks = _check_inputs(scores, nucleotide_mask, kernel_sizes)
    B, L, n = scores.shape
    device = scores.device
    center = torch.full((B, L), _NONE, dtype=torch.long, device=device)
    rounds = 0
    if B == 0 or L == 0:
        return (center, rounds) if return_rounds else center
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN")

    geo = _Geometry(L, ks, device)
    prio = _priorities(scores)
    expert_ids = torch.arange(n, dtype=torch.long, device=device).expand(B, L, n)
    undecided = geo.candidates(nucleotide_mask)

    while bool(undecided.any()):
        rounds += 1
        if rounds > L:
            # each round accepts the best undecided pair of every unfinished
            # sample, so L rounds always suffice; more means a bug, not data
            raise RuntimeError(f"select_units did not converge in {L} rounds")
        U = torch.where(undecided, prio, _NONE)
        best_cover = geo.spread(U)  # (B, L) best undecided priority covering q
        best_conflict = geo.span_max(best_cover)  # (B, L, n), >= own priority
        dominant = undecided & (U == best_conflict)
        # record accepted centres (at most one dominant expert per centre)
        acc_expert = torch.where(dominant, expert_ids, _NONE).amax(dim=2)
        center = torch.maximum(center, acc_expert)
        # newly covered positions, then drop every undecided pair touching them
        covered = geo.spread(torch.where(dominant, 1, _NONE).to(torch.long)) > 0
        touched = geo.span_max(torch.where(covered, 1, _NONE).to(torch.long)) > 0
        undecided = undecided & ~touched

    return (center, rounds) if return_rounds else center


# ----------------------------------------------------------------------------
# post-processing
# ----------------------------------------------------------------------------


def member_expert(center_expert: Tensor, kernel_sizes: Sequence[int]) -> Tensor:
    """Expert id of the unit covering each position.

    Args:
        center_expert: (B, L) int64 from :func:`select_units` (units must lie
            inside [0, L)).
        kernel_sizes: the kernel sizes used for the selection.

    Returns:
        (B, L) int64: the expert id of the unit each position belongs to, -1
        where no unit covers it.
    """
    if center_expert.dim() != 2:
        raise ValueError(f"center_expert must be (B, L), got shape {tuple(center_expert.shape)}")
    ks = _check_kernel_sizes(kernel_sizes)
    B, L = center_expert.shape
    if B == 0 or L == 0:
        return torch.full((B, L), _NONE, dtype=torch.long, device=center_expert.device)
    ce = center_expert.long()
    n = len(ks)
    ids = torch.arange(n, dtype=torch.long, device=ce.device)
    V = torch.where(ce[:, :, None] == ids, ids, _NONE)  # (B, L, n)
    return _Geometry(L, ks, ce.device).spread(V)


def unit_spans(
    center_expert: Tensor, kernel_sizes: Sequence[int]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """List every unit of ``center_expert``.

    Args:
        center_expert: (B, L) int64 from :func:`select_units`.
        kernel_sizes: the kernel sizes used for the selection.

    Returns:
        ``(batch_idx, start, length, expert)``: 1-D int64 tensors, one entry
        per unit, ordered by (batch, start); ``start`` is the tensor index of
        the unit's first position.
    """
    if center_expert.dim() != 2:
        raise ValueError(f"center_expert must be (B, L), got shape {tuple(center_expert.shape)}")
    ks = _check_kernel_sizes(kernel_sizes)
    ce = center_expert.long()
    k = torch.tensor(ks, dtype=torch.long, device=ce.device)
    batch_idx, centre = (ce >= 0).nonzero(as_tuple=True)  # row-major: (batch, centre)
    expert = ce[batch_idx, centre]
    length = k[expert]
    start = centre - length // 2
    # non-overlapping units: centre order == start order within a sample
    return batch_idx, start, length, expert
