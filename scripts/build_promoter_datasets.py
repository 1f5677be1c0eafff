#!/usr/bin/env python
"""Build the promoter classification datasets from ../shared/data into data/promoter/ (git-ignored).

    python scripts/build_promoter_datasets.py [--data ../shared/data] [--out data/promoter] [--seed 0]

Every dataset is a folder with `train.tsv`, `valid.tsv`, `test.tsv` (columns `sequence`, `label`;
labels `promoter` and `nonpromoter`; upper-case DNA) and `manifest.json` (sources, construction,
seed, counts per class and split, what was removed and why). The same seed gives byte-identical
files. Datasets:

human_tata_synthetic   EPDnew human TATA promoters (DNABERT/GUE prom_300_tata positives, 300 bp,
                       -249..+50) vs the GUE/DeePromoter negatives: each positive cut into 20 parts
                       of 15 bp, 8 random parts kept in place, the other 12 replaced by random bases.
human_tata_genomic     the same positives, in the same splits, vs real human DNA: 300 bp windows of
                       pretrain/human (the chr22:20-21 Mb piece and the 15 unplaced scaffolds; the
                       mitochondrial genome is left out: it is not nuclear DNA and its promoters are
                       not Pol II promoters), no N, non-overlapping, random strand, away from the
                       positives (see `human_exclusions`).
arabidopsis_tata       CNNProm Arabidopsis TATA promoters vs CNNProm Arabidopsis non-promoters
                       (251 bp), the pairing of Umarov & Solovyev 2017.
arabidopsis_nontata    CNNProm Arabidopsis non-TATA promoters vs the large CNNProm non-promoter set.
arabidopsis_tair10_chr1  windows -200..+50 (251 bp) around every distinct mRNA TSS of TAIR10 chr1
                       (GFF; '-' strand genes reverse-complemented) vs the same number of random 251 bp
                       chr1 windows, random strand, no N, non-overlapping, at least 2 kb from every
                       annotated TSS (5' end of any gene, pseudogene or transcript feature). Nothing
                       within 2 kb of chr1:20,000,001-21,000,000 is used: that megabase is held out
                       for the genome-scan evaluation (scripts/promoter_scan.py).

Splits are 80/10/10, seeded and stratified by class, and grouped: sequences that share a 50-mer
(exact duplicates, overlapping windows of nearby TSSs, near-identical copies) are kept in the same
split, and a GUE negative goes to the split of the positive it was made from. Exact duplicates
are removed within a class; a sequence found in both classes is removed from both; non-promoter
sequences containing N are removed (N occurs only among CNNProm's non-promoters, where it would be a
label give-away).

The human chr22 piece and hg38: `promoters_coord.bed.gz` (EPDnew TSSs) is hg38; the chr22 piece
(`22:20000001-21000000`) is taken to be GRCh37 (its 100,000 bp N run at 20,509,432-20,609,431 is a
GRCh37-style clone gap, and the one EPDnew TATA promoter found in it by exact match has its TSS at
22:20,424,535 (-), where the hg38 EPDnew file has no TSS). Without a liftover chain in
../shared/data the hg38 TSS coordinates are therefore NOT applied to it (nor to the scaffolds,
which have no coordinates). Instead, negatives are kept away from promoters by sequence: every
exact occurrence (either strand) of any 60 bp piece of any positive is located, and 2 kb on each
side of it are excluded. Other (non-TATA) promoters in these 2 Mb cannot be excluded this way:
with ~30 EPDnew TSSs per Mb on chr22 and a 300 bp window, roughly 2-3% of the chr22 negatives may
overlap some promoter's -249..+50 region (label noise, stated in the manifest).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np

from mxdna_cli.io.fasta import iter_fasta_records
from mxdna_cli.sequence import reverse_complement
from mxdna_cli.weights import sha256_of

POSITIVE, NEGATIVE = "promoter", "nonpromoter"
SPLIT_NAMES = ("train", "valid", "test")
FRACTIONS = (0.8, 0.1, 0.1)
GROUP_KMER = 50
SEED_PIECE = 60  # exact-match seeds for locating positives in the human negatives' source DNA
HUMAN_EXCLUDE_BP = 2000
TAIR_TSS_DISTANCE = 2000
TAIR_UPSTREAM, TAIR_DOWNSTREAM = 200, 50
# The genome-scan evaluation region of TAIR10 chr1 (0-based, half-open). No training, validation or test
# window of arabidopsis_tair10_chr1 comes within TAIR_TSS_DISTANCE of it, so the scan is held out.
TAIR_SCAN_REGION = (20_000_000, 21_000_000)
GUE_PARTS, GUE_KEEP = 20, 8
ACGT = np.frombuffer(b"ACGT", dtype=np.uint8)
TSS_FEATURES = {
    "gene", "pseudogene", "mRNA", "lnc_RNA", "transcript", "tRNA", "miRNA", "primary_transcript",
    "ncRNA", "snoRNA", "snRNA", "antisense_RNA", "rRNA",
}
DATASETS = ("human_tata_synthetic", "human_tata_genomic", "arabidopsis_tata", "arabidopsis_nontata",
            "arabidopsis_tair10_chr1")


# ---------------------------------------------------------------------------------------------
# helpers


def read_fasta(path: Path) -> list[tuple[str, str]]:
    """(header line, sequence) of each record of a plain or gzip FASTA file.

    A parser of its own: the CNNProm files repeat record names (their headers are gene
    descriptions), which the package's genome reader rightly refuses.
    """
    records, header, chunks = [], None, []
    with gzip.open(path, "rt") if str(path).endswith(".gz") else open(path) as handle:
        for line in handle:
            if line.startswith(">"):
                if header is not None:
                    records.append((header, "".join(chunks)))
                header, chunks = line[1:].strip(), []
            elif line.strip():
                chunks.append(line.strip())
    if header is not None:
        records.append((header, "".join(chunks)))
    return records


def is_acgt(sequence: str) -> bool:
    return not sequence.strip("ACGT")


def shared_kmer_groups(sequences: list[str], k: int = GROUP_KMER) -> np.ndarray:
    """Group id per sequence: sequences sharing any exact k-mer (same strand) are in one group."""
    parent = list(range(len(sequences)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    first_seen: dict[int, int] = {}
    for index, sequence in enumerate(sequences):
        for start in range(len(sequence) - k + 1):
            key = hash(sequence[start : start + k])
            other = first_seen.setdefault(key, index)
            if other != index:
                a, b = find(index), find(other)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return np.array([find(i) for i in range(len(sequences))])


def grouped_split(labels: list[str], groups: np.ndarray, rng: np.random.Generator, fractions=FRACTIONS) -> np.ndarray:
    """Split name per example: groups in a random order fill test, then valid, then train, per class.

    A group belongs to the class of its first member; each class gets round(n_c * fraction)
    examples (up to one group's size more) in test and in valid.
    """
    labels = np.asarray(labels)
    members: dict = {}
    for index, group in enumerate(groups.tolist()):
        members.setdefault(group, []).append(index)
    unique = list(members)  # groups in order of first appearance: independent of the ids' values
    members = {g: np.array(m) for g, m in members.items()}
    primary = {g: labels[m[0]] for g, m in members.items()}
    totals: dict[str, int] = {}
    for g in unique:
        totals[primary[g]] = totals.get(primary[g], 0) + len(members[g])
    targets = {c: {"test": int(n * fractions[2] + 0.5), "valid": int(n * fractions[1] + 0.5)} for c, n in totals.items()}
    filled = {c: {"test": 0, "valid": 0} for c in totals}
    assignment = np.empty(len(labels), dtype=object)
    for position in rng.permutation(len(unique)):
        g = unique[position]
        c = primary[g]
        split = "train"
        for candidate in ("test", "valid"):
            if filled[c][candidate] < targets[c][candidate]:
                split = candidate
                break
        if split != "train":
            filled[c][split] += len(members[g])
        assignment[members[g]] = split
    return assignment


def dedupe(sequences: list[str], labels: list[str]) -> tuple[list[str], list[str], dict]:
    """Drop exact duplicates within a class and sequences found in both classes."""
    classes_of: dict[str, set] = {}
    for sequence, label in zip(sequences, labels):
        classes_of.setdefault(sequence, set()).add(label)
    kept_s, kept_l, seen = [], [], set()
    removed = {"duplicate_within_class": 0, "in_both_classes": 0}
    for sequence, label in zip(sequences, labels):
        if len(classes_of[sequence]) > 1:
            removed["in_both_classes"] += 1
            continue
        if sequence in seen:
            removed["duplicate_within_class"] += 1
            continue
        seen.add(sequence)
        kept_s.append(sequence)
        kept_l.append(label)
    return kept_s, kept_l, removed


def write_dataset(out: Path, name: str, sequences, labels, splits, rng, manifest: dict) -> dict:
    """Write train/valid/test TSVs (rows shuffled within a split) and manifest.json; return counts."""
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    sequences, labels, splits = np.asarray(sequences, dtype=object), np.asarray(labels), np.asarray(splits)
    counts = {}
    lengths = sorted({len(s) for s in sequences})
    for split in SPLIT_NAMES:
        chosen = np.flatnonzero(splits == split)
        chosen = chosen[rng.permutation(len(chosen))]
        rows = "".join(f"{sequences[i]}\t{labels[i]}\n" for i in chosen)
        (folder / f"{split}.tsv").write_text("sequence\tlabel\n" + rows)
        counts[split] = {label: int(np.sum(labels[chosen] == label)) for label in (NEGATIVE, POSITIVE)}
    manifest = {
        "name": name,
        **manifest,
        "labels": [NEGATIVE, POSITIVE],
        "length": lengths[0] if len(lengths) == 1 else lengths,
        "fractions": list(FRACTIONS),
        "split": f"seeded, stratified by class, grouped by shared {GROUP_KMER}-mers",
        "counts": counts,
        "files": {split: f"{split}.tsv" for split in SPLIT_NAMES},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return counts


# ---------------------------------------------------------------------------------------------
# human


def gue_negative(sequence: str, rng: np.random.Generator, parts: int = GUE_PARTS, keep: int = GUE_KEEP) -> str:
    """GUE/DeePromoter negative: `keep` of `parts` equal parts kept in place, the rest random bases."""
    if len(sequence) % parts:
        raise ValueError(f"length {len(sequence)} is not a multiple of {parts}")
    size = len(sequence) // parts
    kept = set(rng.choice(parts, size=keep, replace=False).tolist())
    raw = np.frombuffer(sequence.encode(), dtype=np.uint8).copy()
    for part in range(parts):
        if part not in kept:
            raw[part * size : (part + 1) * size] = ACGT[rng.integers(0, 4, size)]
    return raw.tobytes().decode()


def locate_seeds(positives: list[str], contigs: dict[str, str]) -> dict[str, list[int]]:
    """Positions in each contig where any SEED_PIECE-bp piece of a positive (either strand) occurs."""
    seeds = set()
    for sequence in positives:
        for strand_sequence in (sequence, reverse_complement(sequence)):
            for start in range(0, len(strand_sequence) - SEED_PIECE + 1, SEED_PIECE):
                seeds.add(strand_sequence[start : start + SEED_PIECE])
    hits: dict[str, list[int]] = {}
    for name, contig in contigs.items():
        found = []
        for start in range(len(contig) - SEED_PIECE + 1):
            if contig[start : start + SEED_PIECE] in seeds:
                found.append(start)
        hits[name] = found
    return hits


def random_windows(contigs: dict[str, str], allowed: dict[str, np.ndarray], count: int, width: int,
                   rng: np.random.Generator, max_tries: int = 200) -> list[tuple[str, int]]:
    """`count` non-overlapping windows placed uniformly at random over the allowed positions.

    `allowed[name]` is a bool array (True where a base may be used). A candidate start is drawn
    uniformly over all contig positions (weighted by contig length) and accepted when all `width`
    bases are allowed and unused; raises if `count` cannot be reached.
    """
    names = sorted(contigs)
    lengths = np.array([len(contigs[n]) - width + 1 for n in names], dtype=np.int64)
    lengths = np.maximum(lengths, 0)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    free = {n: allowed[n].copy() for n in names}
    picked: list[tuple[str, int]] = []
    tries = 0
    while len(picked) < count:
        tries += 1
        if tries > max_tries * count:
            raise RuntimeError(f"only {len(picked)} of {count} windows could be placed")
        draw = int(rng.integers(0, offsets[-1]))
        contig_index = int(np.searchsorted(offsets, draw, side="right") - 1)
        name, start = names[contig_index], draw - int(offsets[contig_index])
        if free[name][start : start + width].all():
            free[name][start : start + width] = False
            picked.append((name, start))
    return picked


def human_exclusions(contigs: dict[str, str], positives: list[str]) -> tuple[dict[str, np.ndarray], dict]:
    allowed, report = {}, {}
    hits = locate_seeds(positives, contigs)
    for name, contig in contigs.items():
        raw = np.frombuffer(contig.encode(), dtype=np.uint8)
        ok = np.isin(raw, ACGT)
        for position in hits[name]:
            ok[max(0, position - HUMAN_EXCLUDE_BP) : position + SEED_PIECE + HUMAN_EXCLUDE_BP] = False
        allowed[name] = ok
        if hits[name]:
            report[name] = sorted(set(hits[name]))
    return allowed, report


def build_human(data: Path, out: Path, seed: int) -> dict:
    source = data / "labeled/dnabert_prom300_tata_human/TATAprom_pos.txt.gz"
    with gzip.open(source, "rt") as handle:
        raw_positives = [line.strip().upper() for line in handle if line.strip()]
    positives, _, removed = dedupe(raw_positives, [POSITIVE] * len(raw_positives))
    bad = [s for s in positives if not is_acgt(s) or len(s) != 300]
    if bad:
        raise SystemExit(f"{source}: {len(bad)} positives are not 300 bp of ACGT")
    rng_split = np.random.default_rng([seed, 1])
    positive_splits = grouped_split([POSITIVE] * len(positives), shared_kmer_groups(positives), rng_split)
    results = {}

    # (a) synthetic GUE negatives, each in its positive's split
    rng = np.random.default_rng([seed, 2])
    negatives = [gue_negative(s, rng) for s in positives]
    sequences = positives + negatives
    labels = [POSITIVE] * len(positives) + [NEGATIVE] * len(negatives)
    splits = np.concatenate([positive_splits, positive_splits])
    common = {
        "positives": {"source": str(source), "sha256": sha256_of(source),
                      "description": "EPDnew human TATA promoters, 300 bp (-249..+50 around the TSS), DNABERT/GUE prom_300_tata positives",
                      "read": len(raw_positives), "removed": removed},
        "seed": seed,
    }
    results["human_tata_synthetic"] = write_dataset(out, "human_tata_synthetic", sequences, labels, splits,
        np.random.default_rng([seed, 3]), {
            **common,
            "negatives": {"description": "GUE/DeePromoter recipe: each positive cut into 20 parts of 15 bp, 8 random "
                                         "parts kept in place, the other 12 replaced by uniform random bases; a negative "
                                         "is in the split of the positive it was made from",
                          "count": len(negatives)},
            "caveat": "synthetic negatives share 40% of their bases with a positive and are easy to tell from real DNA "
                      "by composition; a genome scan needs real non-promoter DNA as negatives (human_tata_genomic).",
        })

    # (b) real human DNA
    human = data / "pretrain/human"
    contigs, contig_files = {}, []
    for path in sorted(human.glob("*.fa.gz")):
        if "MT" in path.name:
            continue
        contig_files.append({"file": str(path), "sha256": sha256_of(path)})
        for record in iter_fasta_records(str(path)):
            contigs[record.name] = record.sequence.upper()
    allowed, hits = human_exclusions(contigs, positives)
    rng = np.random.default_rng([seed, 4])
    windows = random_windows(contigs, allowed, len(positives), 300, rng)
    negatives = []
    for name, start in sorted(windows):
        window = contigs[name][start : start + 300]
        negatives.append(reverse_complement(window) if rng.random() < 0.5 else window)
    negative_splits = grouped_split([NEGATIVE] * len(negatives), shared_kmer_groups(negatives),
                                    np.random.default_rng([seed, 5]))
    from_chr22 = sum(1 for name, _ in windows if name.startswith("22:"))
    sequences = positives + negatives
    labels = [POSITIVE] * len(positives) + [NEGATIVE] * len(negatives)
    splits = np.concatenate([positive_splits, negative_splits])
    results["human_tata_genomic"] = write_dataset(out, "human_tata_genomic", sequences, labels, splits,
        np.random.default_rng([seed, 6]), {
            **common,
            "negatives": {
                "description": "300 bp windows of real human DNA: the chr22:20-21 Mb piece (probably GRCh37) and 15 "
                               "unplaced WGS scaffolds; no N, non-overlapping, uniformly placed, random strand; 2 kb on "
                               "each side of every exact occurrence of a 60 bp piece of any positive excluded",
                "sources": contig_files, "count": len(negatives), "from_chr22": from_chr22,
                "from_scaffolds": len(negatives) - from_chr22,
                "positive_seed_hits_excluded_1based_in_record": {k: [p + 1 for p in v] for k, v in hits.items()},
                "mitochondrial_genome": "not used (not nuclear DNA; its promoters are not Pol II promoters)",
            },
            "tss_annotation": "promoters_coord.bed.gz is hg38 and the chr22 piece is taken to be GRCh37 (a 100 kb "
                              "GRCh37-style N gap at 20,509,432-20,609,431; the EPDnew TATA promoter found in it sits "
                              "at 22:20,424,535 (-), where hg38 EPDnew has no TSS); without a liftover chain the hg38 "
                              "TSSs are not applied. Non-TATA promoters in the piece are not excluded: about 2-3% of "
                              "the chr22 negatives may overlap a promoter (label noise).",
            "caveat": "only ~1.9 Mb of human DNA is available, so the negatives sample about half of it: they are "
                      "real, but from few loci.",
        })
    return results


# ---------------------------------------------------------------------------------------------
# Arabidopsis


def build_cnnprom(data: Path, out: Path, seed: int, name: str, positive_file: str, negative_file: str, index: int) -> dict:
    folder = data / "labeled/cnnprom_umarov2017"
    positives = [(h, s.upper()) for h, s in read_fasta(folder / positive_file)]
    negatives = [(h, s.upper()) for h, s in read_fasta(folder / negative_file)]
    with_n = sum(1 for _, s in negatives if not is_acgt(s))
    negatives = [(h, s) for h, s in negatives if is_acgt(s)]
    bad = [h for h, s in positives if not is_acgt(s)]
    if bad:
        raise SystemExit(f"{positive_file}: {len(bad)} promoters are not pure ACGT")
    sequences = [s for _, s in positives] + [s for _, s in negatives]
    labels = [POSITIVE] * len(positives) + [NEGATIVE] * len(negatives)
    sequences, labels, removed = dedupe(sequences, labels)
    groups = shared_kmer_groups(sequences)
    splits = grouped_split(labels, groups, np.random.default_rng([seed, index, 1]))
    return write_dataset(out, name, sequences, labels, splits, np.random.default_rng([seed, index, 2]), {
        "positives": {"source": str(folder / positive_file), "sha256": sha256_of(folder / positive_file),
                      "read": len(positives),
                      "description": "CNNProm (Umarov & Solovyev 2017) Arabidopsis promoters from EPDnew, 251 bp (-200..+50)"},
        "negatives": {"source": str(folder / negative_file), "sha256": sha256_of(folder / negative_file),
                      "read": len(negatives) + with_n, "removed_with_N": with_n,
                      "description": "CNNProm Arabidopsis non-promoters: random 251 bp fragments of genes after the first exon"},
        "removed": removed,
        "seed": seed,
        "caveat": "no official split exists; this one is seeded. Promoters on chr1 also appear in arabidopsis_tair10_chr1.",
    })


def parse_gff_tss(path: Path) -> tuple[str, list[tuple[str, int]], list[int]]:
    """(contig, distinct mRNA TSSs as (strand, 0-based position), sorted 0-based TSSs of all features)."""
    mrna, every, contig = set(), set(), None
    with gzip.open(path, "rt") as handle:
        for line in handle:
            if line.startswith("#"):
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 9 or fields[2] not in TSS_FEATURES:
                continue
            contig = fields[0]
            start, end, strand = int(fields[3]) - 1, int(fields[4]) - 1, fields[6]  # 0-based inclusive
            tss = start if strand == "+" else end
            every.add(tss)
            if fields[2] == "mRNA":
                mrna.add((strand, tss))
    return contig, sorted(mrna, key=lambda item: (item[1], item[0])), sorted(every)


def tss_window(chrom: str, strand: str, tss: int, upstream: int = TAIR_UPSTREAM, downstream: int = TAIR_DOWNSTREAM):
    """-upstream..+downstream around a 0-based TSS, read on the gene's strand (TSS at index `upstream`).

    None when the window does not fit on the chromosome.
    """
    start = tss - upstream if strand == "+" else tss - downstream
    end = start + upstream + downstream + 1
    if start < 0 or end > len(chrom):
        return None
    window = chrom[start:end]
    return reverse_complement(window) if strand == "-" else window


def build_tair(data: Path, out: Path, seed: int, index: int = 5) -> dict:
    folder = data / "pretrain/arabidopsis"
    genome_file = next(folder.glob("AthaTAIR10_chr1_*.fna.gz"))
    gff_file = folder / "AthaTAIR10_chr1.gff.gz"
    contig, tss_list, all_tss = parse_gff_tss(gff_file)
    records = {r.name: r.sequence.upper() for r in iter_fasta_records(str(genome_file))}
    chrom = records[contig]
    width = TAIR_UPSTREAM + TAIR_DOWNSTREAM + 1
    positives, skipped = [], {"off_chromosome": 0, "with_N": 0, "near_scan_region": 0}
    scan_lo, scan_hi = TAIR_SCAN_REGION[0] - TAIR_TSS_DISTANCE, TAIR_SCAN_REGION[1] + TAIR_TSS_DISTANCE
    for strand, tss in tss_list:
        window = tss_window(chrom, strand, tss)
        if window is None:
            skipped["off_chromosome"] += 1
            continue
        if scan_lo - width < tss < scan_hi + width:
            skipped["near_scan_region"] += 1
            continue
        if not is_acgt(window):
            skipped["with_N"] += 1
            continue
        positives.append(window)
    # negatives: >= TAIR_TSS_DISTANCE from every TSS, no N
    raw = np.frombuffer(chrom.encode(), dtype=np.uint8)
    allowed = np.isin(raw, ACGT)
    for tss in all_tss:
        allowed[max(0, tss - TAIR_TSS_DISTANCE) : tss + TAIR_TSS_DISTANCE + 1] = False
    allowed[scan_lo:scan_hi] = False  # a window needs every base allowed, so none reaches the held-out region
    rng = np.random.default_rng([seed, index, 3])
    windows = random_windows({contig: chrom}, {contig: allowed}, len(positives), width, rng)
    negatives = []
    for _, start in sorted(windows):
        window = chrom[start : start + width]
        negatives.append(reverse_complement(window) if rng.random() < 0.5 else window)
    sequences = positives + negatives
    labels = [POSITIVE] * len(positives) + [NEGATIVE] * len(negatives)
    sequences, labels, removed = dedupe(sequences, labels)
    splits = grouped_split(labels, shared_kmer_groups(sequences), np.random.default_rng([seed, index, 1]))
    return write_dataset(out, "arabidopsis_tair10_chr1", sequences, labels, splits,
        np.random.default_rng([seed, index, 2]), {
            "positives": {"source": str(genome_file), "sha256": sha256_of(genome_file), "annotation": str(gff_file),
                          "annotation_sha256": sha256_of(gff_file),
                          "description": f"-{TAIR_UPSTREAM}..+{TAIR_DOWNSTREAM} around each distinct mRNA TSS "
                                         "(5' end on its strand), reverse-complemented on '-'",
                          "distinct_mrna_tss": len(tss_list), "skipped": skipped},
            "negatives": {"description": f"random {width} bp windows of chr1, no N, non-overlapping, random strand, at "
                                         f"least {TAIR_TSS_DISTANCE} bp from the 5' end of every gene, pseudogene and "
                                         "transcript feature of the GFF", "annotated_tss": len(all_tss)},
            "removed": removed,
            "held_out_scan_region": {"contig": contig, "start": TAIR_SCAN_REGION[0], "end": TAIR_SCAN_REGION[1],
                                     "margin": TAIR_TSS_DISTANCE, "coordinates": "0-based, half-open"},
            "seed": seed,
            "caveat": "TSSs are the annotation's transcript 5' ends (TAIR10/Araport), not experimentally mapped TSSs; "
                      "promoters of alternative TSSs of one gene overlap and are kept in one split.",
        })


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data", help="the shared data folder")
    parser.add_argument("--out", default="data/promoter", help="output folder (git-ignored)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", choices=["human", "arabidopsis_tata", "arabidopsis_nontata", "tair10"])
    args = parser.parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = set(args.only or ["human", "arabidopsis_tata", "arabidopsis_nontata", "tair10"])
    results, timings = {}, {}
    steps = [
        ("human", lambda: build_human(data, out, args.seed)),
        ("arabidopsis_tata", lambda: {"arabidopsis_tata": build_cnnprom(
            data, out, args.seed, "arabidopsis_tata", "Arabidopsis_tata.fa.gz", "Arabidopsis_non_prom.fa.gz", 3)}),
        ("arabidopsis_nontata", lambda: {"arabidopsis_nontata": build_cnnprom(
            data, out, args.seed, "arabidopsis_nontata", "Arabidopsis_non_tata.fa.gz", "Arabidopsis_non_prom_big.fa.gz", 4)}),
        ("tair10", lambda: {"arabidopsis_tair10_chr1": build_tair(data, out, args.seed)}),
    ]
    for key, build in steps:
        if key in wanted:
            started = time.monotonic()
            built = build()
            results.update(built)
            for name in built:
                timings[name] = time.monotonic() - started
            print(f"built {', '.join(built)} in {time.monotonic() - started:.1f} s", file=sys.stderr)
    print(f"{'dataset':26s} {'split':6s} {'promoter':>9s} {'nonpromoter':>12s}")
    for name, counts in results.items():
        for split in SPLIT_NAMES:
            print(f"{name:26s} {split:6s} {counts[split][POSITIVE]:9d} {counts[split][NEGATIVE]:12d}")
    index = {name: {"folder": name, "counts": counts} for name, counts in results.items()}
    index_path = out / "datasets.json"
    if index_path.is_file():
        index = {**json.loads(index_path.read_text()), **index}
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
