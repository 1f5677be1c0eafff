import numpy as np
import pytest

from mxdna_cli.train.promoter_scan import (StrandTrack, background_loci, evaluate_track, expected_centre,
                                           recall_at_fpr, score_loci)

UP, DOWN = 200, 50  # a promoter window -200..+50 is centred 75 bp upstream of its TSS


def test_best_near_takes_the_maximum_within_tolerance_and_nan_outside():
    track = StrandTrack(np.array([100.0, 150.0, 200.0, 400.0]), np.array([0.1, 0.7, 0.3, 0.9]))
    got = track.best_near(np.array([160.0, 300.0, 420.0]), tolerance=50)
    assert got[0] == pytest.approx(0.7)  # 150 and 200 are within 50 of 160; 0.7 is the larger
    assert np.isnan(got[1])
    assert got[2] == pytest.approx(0.9)


def test_expected_centre_lies_upstream_on_the_genes_strand():
    centres = expected_centre(np.array([1000, 1000]), np.array(["+", "-"]), UP, DOWN)
    assert centres.tolist() == [925.0, 1075.0]


def _flat_tracks(length=20000, step=50, value=0.1):
    centres = np.arange(0, length, step, dtype=np.float64) + 25
    return {s: StrandTrack(centres, np.full(len(centres), value)) for s in "+-"}


def test_peaks_at_the_expected_centres_find_every_tss_and_the_wrong_strand_finds_none():
    tracks = _flat_tracks()
    tss = np.array([3000, 6000, 9000, 12000])
    strands = np.array(["+", "-", "+", "-"])
    for position, strand in zip(tss, strands):
        centre = expected_centre(np.array([position]), np.array([strand]), UP, DOWN)[0]
        t = tracks[strand]
        t.values[np.argmin(np.abs(t.centres - centre))] = 0.95
    background = np.array([15000, 16000, 17000, 18000]), np.array(["+", "-", "+", "-"])
    result = evaluate_track(tracks, tss, strands, *background, upstream=UP, downstream=DOWN, tolerance=100)
    assert result["auroc"] == 1.0
    assert all(r["recall"] == 1.0 for r in result["at_fpr"])
    flipped = np.where(strands == "+", "-", "+")
    scores = score_loci(tracks, tss, flipped, upstream=UP, downstream=DOWN, tolerance=100)
    assert np.allclose(scores, 0.1)


def test_recall_at_fpr_thresholds_at_the_background_quantile():
    background = np.arange(100) / 100.0  # 0.00 .. 0.99
    tss = np.array([0.995, 0.97, 0.5, 0.1])
    rows = recall_at_fpr(tss, background, fprs=(0.01, 0.05))
    assert rows[0]["threshold"] == pytest.approx(0.99) and rows[0]["recall"] == 0.25
    assert rows[1]["threshold"] == pytest.approx(0.95) and rows[1]["recall"] == 0.5
    assert rows[1]["observed_fpr"] == pytest.approx(0.04)


def test_background_loci_keep_their_distance_from_annotated_ends():
    annotated = np.array([5000, 9000])
    positions, strands = background_loci(0, 20000, annotated, 500, 2000, 300, np.random.default_rng(0))
    distance = np.min(np.abs(positions[:, None] - annotated[None, :]), axis=1)
    assert distance.min() >= 2000
    assert positions.min() >= 300 and positions.max() < 19700
    assert set(strands) == {"+", "-"}
    with pytest.raises(ValueError):
        background_loci(0, 3000, np.array([1500]), 10, 2000, 0, np.random.default_rng(0))
