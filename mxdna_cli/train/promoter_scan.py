"""Scoring a genome-wide promoter track against annotated TSSs (the `--track` evaluation).

A track is, per strand, the classifier's probability for windows laid every `step` bases (the value
of a window belongs to its central bases, as `mxdna predict promoter --track` writes it). A locus
(position, strand) is scored by the best window centred within `tolerance` bases of where a
promoter window of that locus would be centred: a classifier trained on -upstream..+downstream
windows around TSSs sees a '+' TSS best in the window centred `(upstream - downstream) / 2` bases
upstream of it, on the forward track (a '-' TSS: downstream of it, on the reverse track).

Annotated TSSs are the positives; background loci are random positions at least `min_distance`
from every annotated 5' end, on either strand, scored by the same rule. The share of TSSs whose
score reaches the background's (1 - FPR) quantile is the share of TSSs found within the peaks
called at that false-positive rate (the share of background loci called). AUROC compares the two
score sets over all thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mxdna_cli.train.metrics import roc_auc

DEFAULT_FPRS = (0.01, 0.05, 0.10)


@dataclass
class StrandTrack:
    """Window centres (forward coordinates, sorted) and their values for one strand."""

    centres: np.ndarray
    values: np.ndarray

    def best_near(self, positions: np.ndarray, tolerance: int) -> np.ndarray:
        """Maximum value of the windows centred within `tolerance` of each position (NaN where none)."""
        lo = np.searchsorted(self.centres, positions - tolerance, side="left")
        hi = np.searchsorted(self.centres, positions + tolerance, side="right")
        out = np.full(len(positions), np.nan)
        for i, (a, b) in enumerate(zip(lo, hi)):
            if b > a:
                out[i] = self.values[a:b].max()
        return out


def expected_centre(positions: np.ndarray, strands: np.ndarray, upstream: int, downstream: int) -> np.ndarray:
    """Where a TSS's own promoter window (-upstream..+downstream on its strand) is centred."""
    shift = (upstream - downstream) / 2
    return np.where(strands == "+", positions - shift, positions + shift)


def score_loci(tracks: dict[str, StrandTrack], positions: np.ndarray, strands: np.ndarray, *,
               upstream: int, downstream: int, tolerance: int) -> np.ndarray:
    centres = expected_centre(np.asarray(positions, dtype=np.float64), np.asarray(strands), upstream, downstream)
    scores = np.full(len(positions), np.nan)
    for strand, track in tracks.items():
        chosen = np.asarray(strands) == strand
        scores[chosen] = track.best_near(centres[chosen], tolerance)
    return scores


def background_loci(start: int, end: int, annotated: np.ndarray, count: int, min_distance: int, margin: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`count` random (position, strand) pairs in [start + margin, end - margin), >= min_distance from
    every annotated 5' end; raises when the region has no such positions."""
    annotated = np.sort(np.asarray(annotated, dtype=np.int64))
    candidates = np.arange(start + margin, end - margin, dtype=np.int64)
    if len(annotated):
        nearest = np.searchsorted(annotated, candidates)
        left = np.abs(candidates - annotated[np.clip(nearest - 1, 0, len(annotated) - 1)])
        right = np.abs(annotated[np.clip(nearest, 0, len(annotated) - 1)] - candidates)
        candidates = candidates[np.minimum(left, right) >= min_distance]
    if len(candidates) == 0:
        raise ValueError("no background positions: the region is too small or every base is near a TSS")
    positions = rng.choice(candidates, size=count, replace=len(candidates) < count)
    strands = np.where(rng.random(count) < 0.5, "+", "-")
    return np.sort(positions), strands


def recall_at_fpr(tss_scores: np.ndarray, background_scores: np.ndarray, fprs=DEFAULT_FPRS) -> list[dict]:
    """Per FPR: the threshold (background (1 - FPR) quantile), the background share called, the TSS share found."""
    rows = []
    background = np.sort(background_scores)
    for fpr in fprs:
        threshold = float(np.quantile(background, 1 - fpr, method="higher"))
        rows.append({
            "fpr": fpr,
            "threshold": threshold,
            "observed_fpr": float(np.mean(background_scores > threshold)),
            "recall": float(np.mean(tss_scores > threshold)),
        })
    return rows


def evaluate_track(tracks: dict[str, StrandTrack], tss_positions, tss_strands, background_positions,
                   background_strands, *, upstream: int, downstream: int, tolerance: int, fprs=DEFAULT_FPRS) -> dict:
    """AUROC and TSS recall at each FPR; loci the track does not cover are left out (and counted)."""
    kwargs = dict(upstream=upstream, downstream=downstream, tolerance=tolerance)
    tss = score_loci(tracks, np.asarray(tss_positions), np.asarray(tss_strands), **kwargs)
    background = score_loci(tracks, np.asarray(background_positions), np.asarray(background_strands), **kwargs)
    tss_kept, background_kept = tss[~np.isnan(tss)], background[~np.isnan(background)]
    y = np.concatenate([np.ones(len(tss_kept)), np.zeros(len(background_kept))])
    return {
        "n_tss": len(tss_kept), "n_background": len(background_kept),
        "uncovered": int(np.isnan(tss).sum() + np.isnan(background).sum()),
        "auroc": roc_auc(y, np.concatenate([tss_kept, background_kept])),
        "at_fpr": recall_at_fpr(tss_kept, background_kept, fprs),
    }
