#!/usr/bin/env python
"""Evaluate genome-scan promoter tracks against the TAIR10 GFF's TSSs in the held-out megabase.

    R=NC_003070.9:20,000,001-21,000,000
    for S in forward reverse; do
      mxdna predict promoter data/genomes/tair10_chr1.fa.gz --region $R --strand $S \\
          --model weights/promoter-arabidopsis --track runs/scan/mxdna.$S.bw --threads 1
    done
    python scripts/promoter_scan.py --track MxDNA=runs/scan/mxdna.forward.bw,runs/scan/mxdna.reverse.bw \\
        --baselines data/promoter/arabidopsis_tair10_chr1 --genome data/genomes/tair10_chr1.fa.gz \\
        --out docs/promoter_scan.tsv --png docs/promoter_scan.png

The region is held out of `arabidopsis_tair10_chr1` (scripts/build_promoter_datasets.py). Positives:
the distinct mRNA 5' ends in the region; background: random loci >= 2 kb from every annotated 5' end.
`--baselines` trains the 6-mer logistic regression and the CNN on that dataset's train/valid
splits and scans the same windows (same width, step and strands) as the MxDNA track. Prints the
AUROC and the share of TSSs found at 1%, 5% and 10% false-positive rate per model
(mxdna_cli/train/promoter_scan.py says how loci are scored), writes them as a TSV and draws the
tracks around a few genes.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_promoter_datasets import (TAIR_DOWNSTREAM, TAIR_SCAN_REGION, TAIR_TSS_DISTANCE,  # noqa: E402
                                     TAIR_UPSTREAM, parse_gff_tss)

from mxdna_cli.sequence import reverse_complement  # noqa: E402
from mxdna_cli.train.promoter_scan import DEFAULT_FPRS, StrandTrack, background_loci, evaluate_track  # noqa: E402

GFF = "../shared/data/pretrain/arabidopsis/AthaTAIR10_chr1.gff.gz"


def read_bigwig(path: str, chrom: str, start: int, end: int) -> StrandTrack:
    import pyBigWig

    with pyBigWig.open(path) as bw:
        intervals = bw.intervals(chrom, start, end) or []
    centres = np.array([(s + e) / 2 for s, e, _ in intervals])
    return StrandTrack(centres, np.array([v for _, _, v in intervals]))


def track_geometry(path: str) -> tuple[int, int]:
    """(window, step) from the track's JSON sidecar."""
    meta = json.loads(Path(path + ".json").read_text())
    return int(meta["window"]), int(meta["step"])


def scan_windows(genome: str, chrom: str, start: int, end: int, window: int, step: int):
    """Window starts, centres and the forward / reverse-strand sequences, laid as `predict --track` lays them."""
    import pysam

    with pysam.FastaFile(genome) as fasta:
        text = fasta.fetch(chrom, start, end).upper()
    starts = np.arange(0, len(text) - window + 1, step)
    forward = [text[s : s + window] for s in starts]
    return start + starts + window / 2, forward, [reverse_complement(s) for s in forward]


def baseline_tracks(dataset: str, genome: str, chrom: str, start: int, end: int, window: int, step: int,
                    seed: int, models: list[str]) -> dict[str, dict[str, StrandTrack]]:
    from mxdna_cli.train.baselines_promoter import (CNNSettings, KmerLogisticRegression, cnn_probabilities,
                                                    load_split_tables, train_cnn)

    data = load_split_tables(dataset)
    positive = data.labels.index("promoter")
    centres, forward, reverse = scan_windows(genome, chrom, start, end, window, step)
    tracks = {}
    if "kmer_lr" in models:
        lr = KmerLogisticRegression(seed=seed).fit(data.sequences["train"], data.y["train"],
                                                   data.sequences["valid"], data.y["valid"])
        tracks["6-mer LR"] = {s: StrandTrack(centres, lr.predict_proba(seqs)[:, positive])
                              for s, seqs in (("+", forward), ("-", reverse))}
    if "cnn" in models:
        cnn, _ = train_cnn(data.sequences["train"], data.y["train"], data.sequences["valid"], data.y["valid"],
                           num_labels=len(data.labels), settings=CNNSettings(seed=seed))
        tracks["CNN"] = {s: StrandTrack(centres, cnn_probabilities(cnn, seqs)[:, positive])
                         for s, seqs in (("+", forward), ("-", reverse))}
    return tracks


def save_tracks(path: Path, tracks: dict[str, dict[str, StrandTrack]], window: int, step: int) -> None:
    arrays = {"geometry": np.array([window, step])}
    for name, strands in tracks.items():
        for strand, t in strands.items():
            arrays[f"{name}|{strand}|centres"], arrays[f"{name}|{strand}|values"] = t.centres, t.values
    np.savez(path, **arrays)


def load_tracks(path: Path, window: int, step: int) -> dict[str, dict[str, StrandTrack]]:
    data = np.load(path)
    if tuple(data["geometry"]) != (window, step):
        raise SystemExit(f"{path}: baseline tracks of window/step {tuple(data['geometry'])}, not {(window, step)}")
    tracks: dict[str, dict[str, StrandTrack]] = {}
    for key in data.files:
        if key.endswith("|centres"):
            name, strand, _ = key.split("|")
            tracks.setdefault(name, {})[strand] = StrandTrack(data[key], data[f"{name}|{strand}|values"])
    return tracks


def gene_models(gff: str, chrom: str, start: int, end: int) -> list[tuple[int, int, str, str]]:
    """(start, end, strand, name) of the GFF's genes overlapping [start, end)."""
    genes = []
    with gzip.open(gff, "rt") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 9 or fields[0] != chrom or fields[2] != "gene":
                continue
            s, e = int(fields[3]) - 1, int(fields[4])
            if e > start and s < end:
                attributes = dict(kv.split("=", 1) for kv in fields[8].split(";") if "=" in kv)
                genes.append((s, e, fields[6], attributes.get("Name", attributes.get("ID", "?"))))
    return genes


def draw(png: str, models: dict[str, dict[str, StrandTrack]], tss, genes, views: list[tuple[int, int]], chrom: str,
         thresholds: dict[str, float], step: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = dict(zip(models, ["tab:red", "tab:blue", "tab:green", "tab:purple"]))
    fig, axes = plt.subplots(len(views), 1, figsize=(11, 2.9 * len(views)), squeeze=False)
    for ax, (lo, hi) in zip(axes[:, 0], views):
        for name, tracks in models.items():
            for strand, sign in (("+", 1), ("-", -1)):
                t = tracks[strand]
                keep = (t.centres >= lo) & (t.centres <= hi)
                ax.plot(t.centres[keep] / 1e3, sign * t.values[keep], color=colours[name], lw=1,
                        label=name if strand == "+" else None)
            if name in thresholds:
                for sign in (1, -1):
                    ax.axhline(sign * thresholds[name], color=colours[name], ls=":", lw=0.8)
        for s, e, strand, name in genes:
            if e < lo or s > hi:
                continue
            s, e, y = max(s, lo), min(e, hi), 0.0  # clipped to the view
            ax.annotate("", xy=((e if strand == "+" else s) / 1e3, y), xytext=((s if strand == "+" else e) / 1e3, y),
                        arrowprops=dict(arrowstyle="-|>", color="black", lw=2.5))
            ax.text((max(s, lo) + min(e, hi)) / 2e3, 0.06 if strand == "+" else -0.12, name, ha="center", fontsize=7)
        for position, strand in tss:
            if lo <= position <= hi:
                ax.axvline(position / 1e3, color="grey", lw=0.6, alpha=0.7)
        ax.set_xlim(lo / 1e3, hi / 1e3)
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel("P(promoter)\n+ strand up, - down", fontsize=8)
        ax.set_xlabel(f"{chrom} position (kb)", fontsize=8)
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[0, 0].set_title(f"Promoter tracks (251 nt windows every {step} nt) with annotated TSSs (grey) and genes; "
                         "dotted: 5% FPR threshold", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--track", action="append", default=[], metavar="NAME=FORWARD.bw,REVERSE.bw",
                        help="a model's forward- and reverse-strand tracks (repeatable)")
    parser.add_argument("--gff", default=GFF)
    parser.add_argument("--genome", help="indexed FASTA of chr1 (needed by --baselines)")
    parser.add_argument("--baselines", metavar="DATASET", help="train and scan the baselines on this dataset folder")
    parser.add_argument("--baseline-models", nargs="*", default=["kmer_lr", "cnn"], choices=["kmer_lr", "cnn"])
    parser.add_argument("--step", type=int, default=50, help="baseline window step when no --track gives it")
    parser.add_argument("--baseline-cache", help="an .npz of the baseline tracks: read if it exists, else written")
    parser.add_argument("--tolerance", type=int, default=250, help="bp around the expected window centre")
    parser.add_argument("--background", type=int, default=20000, help="background loci")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--views", nargs="*", default=["20100000-20112000", "20480000-20492000", "20800000-20812000"])
    parser.add_argument("--out", default="docs/promoter_scan.tsv")
    parser.add_argument("--png")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    chrom, tss_list, all_tss = parse_gff_tss(Path(args.gff))
    start, end = TAIR_SCAN_REGION
    models: dict[str, dict[str, StrandTrack]] = {}
    window = step = None
    for spec in args.track:
        name, paths = spec.split("=", 1)
        forward, reverse = paths.split(",")
        window, step = track_geometry(forward)
        models[name] = {"+": read_bigwig(forward, chrom, start, end), "-": read_bigwig(reverse, chrom, start, end)}
    if args.baselines:
        if window is None:
            window, step = TAIR_UPSTREAM + TAIR_DOWNSTREAM + 1, args.step
        cache = Path(args.baseline_cache) if args.baseline_cache else None
        if cache is not None and cache.is_file():
            models.update(load_tracks(cache, window, step))
        else:
            baselines = baseline_tracks(args.baselines, args.genome, chrom, start, end, window, step, args.seed,
                                        args.baseline_models)
            if cache is not None:
                save_tracks(cache, baselines, window, step)
            models.update(baselines)
    if not models:
        parser.error("give --track and/or --baselines")

    # loci whose window and tolerance fit inside the scanned region
    margin = window + args.tolerance
    tss = [(p, s) for s, p in tss_list if start + margin <= p < end - margin]
    tss_positions = np.array([p for p, _ in tss])
    tss_strands = np.array([s for _, s in tss])
    bg_positions, bg_strands = background_loci(start, end, np.array(all_tss), args.background, TAIR_TSS_DISTANCE,
                                               margin, np.random.default_rng(args.seed))
    rows, thresholds = [], {}
    print(f"{chrom}:{start + 1:,}-{end:,}: {len(tss)} distinct mRNA TSSs, {len(bg_positions)} background loci "
          f"(>= {TAIR_TSS_DISTANCE} bp from any 5' end), tolerance ±{args.tolerance} bp")
    print(f"{'model':10s} {'AUROC':>7s} " + " ".join(f"{'TSS@' + format(f, '.0%') + ' FPR':>13s}" for f in DEFAULT_FPRS))
    for name, tracks in models.items():
        result = evaluate_track(tracks, tss_positions, tss_strands, bg_positions, bg_strands, upstream=TAIR_UPSTREAM,
                                downstream=TAIR_DOWNSTREAM, tolerance=args.tolerance)
        thresholds[name] = next(r["threshold"] for r in result["at_fpr"] if r["fpr"] == 0.05)
        print(f"{name:10s} {result['auroc']:7.4f} " + " ".join(f"{r['recall']:13.3f}" for r in result["at_fpr"]))
        for r in result["at_fpr"]:
            rows.append([name, result["n_tss"], result["n_background"], f"{result['auroc']:.4f}", f"{r['fpr']:.2f}",
                         f"{r['observed_fpr']:.4f}", f"{r['threshold']:.4f}", f"{r['recall']:.4f}"])
    header = ["model", "n_tss", "n_background", "auroc", "fpr", "observed_fpr", "threshold", "tss_recall"]
    Path(args.out).write_text("\t".join(header) + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    if args.png:
        views = [tuple(int(x) for x in v.split("-")) for v in args.views]
        draw(args.png, models, tss, gene_models(args.gff, chrom, start, end), views, chrom, thresholds, step)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
