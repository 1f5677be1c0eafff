#!/usr/bin/env python
"""Pool the five promoter datasets' train and valid splits into one dataset, `eukaryote_all`.

    python scripts/combine_promoter_datasets.py [--data data/promoter] [--name eukaryote_all]
        [--scan-genome ../shared/data/pretrain/arabidopsis/AthaTAIR10_chr1_*.fna.gz]
        [--repeat DATASET=K ...]     # e.g. --name eukaryote_synth3 --repeat human_tata_synthetic=3

Reads `data/promoter/<dataset>/{train,valid,test}.tsv` (built by build_promoter_datasets.py) and
writes `data/promoter/eukaryote_all/{train,valid}.tsv` (columns `sequence`, `label`, `dataset`;
the readers ignore the extra column) and `manifest.json`. There is deliberately no test.tsv:
every dataset keeps its own test split, and a pooled model is tested on each of them.

Pooling breaks guarantees that each dataset held on its own, so a training sequence is dropped when
* it shares a 50-mer, on either strand, with any valid or test sequence of ANY dataset (the
  datasets overlap: the two human sets share their positives, CNNProm's Arabidopsis promoters
  include chr1 promoters that are also TAIR10 TSS windows; reverse complements count because
  training may use --rc-augment);
* it shares a 50-mer, on either strand, with TAIR10 chr1:20,000,001-21,000,000 (+-2 kb), the
  megabase held out for the genome-scan evaluation (CNNProm's promoters come from all of chr1);
* it duplicates (exactly, or as reverse complement) a sequence kept before it: one copy stays,
  named by the first dataset in DATASETS order (the human positives appear in both human sets);
* the same sequence (or its reverse complement) carries both labels somewhere in the pool.
Valid sequences are pooled with the last two rules only. Counts of every removal are in the manifest.

`--repeat DATASET=K` writes the kept training rows of DATASET K times (oversampling: that dataset
weighs K times as much in training); the validation split is never repeated.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_promoter_datasets import (  # the datasets' own constants
    DATASETS,
    GROUP_KMER,
    NEGATIVE,
    POSITIVE,
    TAIR_SCAN_REGION,
    TAIR_TSS_DISTANCE,
)

from mxdna_cli.io.fasta import iter_fasta_records
from mxdna_cli.io.labeled import read_table
from mxdna_cli.sequence import reverse_complement
from mxdna_cli.weights import sha256_of

NAME = "eukaryote_all"
DEFAULT_SCAN_GENOME = "../shared/data/pretrain/arabidopsis/AthaTAIR10_chr1_*.fna.gz"


def kmer_hashes(sequence: str, k: int = GROUP_KMER) -> np.ndarray:
    """Hashes of every k-mer of the sequence and of its reverse complement (int64)."""
    values = []
    for strand in (sequence, reverse_complement(sequence)):
        values += [hash(strand[i : i + k]) for i in range(len(strand) - k + 1)]
    return np.array(values, dtype=np.int64)


def kmer_index(sequences) -> np.ndarray:
    """Sorted unique hashes of all k-mers of the sequences, both strands."""
    parts = [kmer_hashes(s) for s in sequences]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


def shares_kmer(sequence: str, index: np.ndarray) -> bool:
    hashes = kmer_hashes(sequence)
    where = np.searchsorted(index, hashes).clip(max=len(index) - 1)
    return bool(len(index)) and bool(np.any(index[where] == hashes))


def canonical(sequence: str) -> str:
    return min(sequence, reverse_complement(sequence))


def pool(rows: list[tuple[str, str, str]], removed: dict) -> list[tuple[str, str, str]]:
    """(sequence, label, dataset) rows: one copy per sequence up to strand, none with two labels."""
    labels_of: dict[str, set] = {}
    for sequence, label, _ in rows:
        labels_of.setdefault(canonical(sequence), set()).add(label)
    kept, seen = [], set()
    for sequence, label, dataset in rows:
        key = canonical(sequence)
        if len(labels_of[key]) > 1:
            removed[dataset]["in_both_classes"] += 1
        elif key in seen:
            removed[dataset]["duplicate_of_a_kept_sequence"] += 1
        else:
            seen.add(key)
            kept.append((sequence, label, dataset))
    return kept


def scan_region_sequence(pattern: str, contig: str) -> tuple[str, str]:
    """The held-out scan megabase of TAIR10 chr1 with its margins, and the genome file read."""
    found = sorted(glob.glob(pattern))
    if not found:
        raise SystemExit(f"combine_promoter_datasets: --scan-genome {pattern}: no such file "
                         "(give the TAIR10 chr1 FASTA, or --no-scan-guard)")
    record = next((r for r in iter_fasta_records(found[0]) if r.name == contig), None)
    if record is None:
        raise SystemExit(f"combine_promoter_datasets: {found[0]}: no record {contig!r} (the scan region's contig)")
    start, end = TAIR_SCAN_REGION[0] - TAIR_TSS_DISTANCE, TAIR_SCAN_REGION[1] + TAIR_TSS_DISTANCE
    return record.sequence[start:end].upper(), found[0]


def parse_repeats(specs: list[str], parser: argparse.ArgumentParser) -> dict[str, int]:
    """{dataset: times} from DATASET=K arguments (a usage error names the bad one)."""
    repeats = {}
    for spec in specs:
        dataset, _, times = spec.partition("=")
        if dataset not in DATASETS or not times.isdigit() or int(times) < 1:
            parser.error(f"--repeat {spec!r}: expected DATASET=K with DATASET one of {', '.join(DATASETS)} and K >= 1")
        repeats[dataset] = int(times)
    return repeats


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/promoter", help="folder of the built datasets (git-ignored)")
    parser.add_argument("--name", default=NAME, help="name of the pooled dataset's folder")
    parser.add_argument("--scan-genome", default=DEFAULT_SCAN_GENOME, help="TAIR10 chr1 FASTA (glob allowed)")
    parser.add_argument("--no-scan-guard", action="store_true", help="keep training sequences from the scan region")
    parser.add_argument("--repeat", action="append", default=[], metavar="DATASET=K",
                        help="write DATASET's training rows K times (oversampling); repeatable")
    args = parser.parse_args(argv)
    repeats = parse_repeats(args.repeat, parser)
    data = Path(args.data)
    splits: dict[str, dict[str, list]] = {}
    sources = {}
    for dataset in DATASETS:
        splits[dataset] = {}
        sources[dataset] = {}
        for split in ("train", "valid", "test"):
            path = data / dataset / f"{split}.tsv"
            if not path.is_file():
                raise SystemExit(f"combine_promoter_datasets: {path}: missing; run scripts/build_promoter_datasets.py")
            examples = read_table(str(path))
            splits[dataset][split] = list(zip(examples.sequences, examples.labels))
            sources[dataset][split] = {"file": str(path), "sha256": sha256_of(path), "rows": len(examples)}

    held_out = kmer_index(s for d in DATASETS for split in ("valid", "test") for s, _ in splits[d][split])
    scan_index, scan_source = np.zeros(0, dtype=np.int64), None
    if not args.no_scan_guard:
        tair = json.loads((data / "arabidopsis_tair10_chr1" / "manifest.json").read_text())
        contig = tair["held_out_scan_region"]["contig"]
        region, scan_source = scan_region_sequence(args.scan_genome, contig)
        scan_index = kmer_index([region])

    reasons = ("shares_a_50mer_with_a_valid_or_test_sequence", "shares_a_50mer_with_the_scan_region",
               "duplicate_of_a_kept_sequence", "in_both_classes")
    removed = {split: {d: dict.fromkeys(reasons, 0) for d in DATASETS} for split in ("train", "valid")}
    train_rows = []
    for dataset in DATASETS:
        for sequence, label in splits[dataset]["train"]:
            if shares_kmer(sequence, held_out):
                removed["train"][dataset][reasons[0]] += 1
            elif len(scan_index) and shares_kmer(sequence, scan_index):
                removed["train"][dataset][reasons[1]] += 1
            else:
                train_rows.append((sequence, label, dataset))
    pooled = {"train": pool(train_rows, removed["train"]),
              "valid": pool([(s, label, d) for d in DATASETS for s, label in splits[d]["valid"]], removed["valid"])}
    pooled["train"] = [row for row in pooled["train"] for _ in range(repeats.get(row[2], 1))]

    out = data / args.name
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, rows in pooled.items():
        (out / f"{split}.tsv").write_text("sequence\tlabel\tdataset\n" + "".join(f"{s}\t{lab}\t{d}\n" for s, lab, d in rows))
        counts[split] = {d: {label: sum(1 for _, lab, dd in rows if dd == d and lab == label) for label in (NEGATIVE, POSITIVE)}
                         for d in DATASETS}
        counts[split]["all"] = {label: sum(1 for _, lab, _ in rows if lab == label) for label in (NEGATIVE, POSITIVE)}
    lengths = sorted({len(s) for rows in pooled.values() for s, _, _ in rows})
    manifest = {
        "name": args.name,
        "datasets": list(DATASETS),
        "sources": sources,
        "labels": [NEGATIVE, POSITIVE],
        "lengths": lengths,
        "columns": ["sequence", "label", "dataset"],
        "splits": "the union of the datasets' train (resp. valid) splits; no test split (each dataset keeps its own)",
        "rules": {
            "kmer": GROUP_KMER,
            "train": "dropped if it shares a k-mer (either strand) with any dataset's valid or test sequence, or with "
                     "the scan region; then one copy per sequence up to reverse complement, none with two labels",
            "valid": "one copy per sequence up to reverse complement, none with two labels",
            "scan_region": None if scan_source is None else {
                "genome": scan_source, "contig": contig, "start": TAIR_SCAN_REGION[0] - TAIR_TSS_DISTANCE,
                "end": TAIR_SCAN_REGION[1] + TAIR_TSS_DISTANCE, "coordinates": "0-based, half-open"},
        },
        "repeats": repeats,
        "removed": removed,
        "counts": counts,
        "files": {split: f"{split}.tsv" for split in pooled},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"{'dataset':26s} {'split':6s} {'promoter':>9s} {'nonpromoter':>12s} {'removed':>8s}")
    for split in pooled:
        for d in (*DATASETS, "all"):
            gone = sum(removed[split][d].values()) if d != "all" else sum(sum(r.values()) for r in removed[split].values())
            print(f"{d:26s} {split:6s} {counts[split][d][POSITIVE]:9d} {counts[split][d][NEGATIVE]:12d} {gone:8d}")
    print(f"-> {out}/{{train,valid}}.tsv, manifest.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
