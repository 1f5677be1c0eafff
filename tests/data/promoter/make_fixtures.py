"""Cut the promoter test fixtures from ../shared/data (run from the repository root).

* `tata_small.tsv`: the first 16 CNNProm Arabidopsis TATA promoters and the first 16 CNNProm
  Arabidopsis non-promoters (251 bp, labels `promoter` / `nonpromoter`).
* `human_small.tsv`: the first 16 promoters and the first 16 non-promoters (real human DNA) of the
  *test* split of `data/promoter/human_tata_genomic` (300 bp; made by scripts/build_promoter_datasets.py
  first), held out from every shipped classifier's training.
* `genome.fa`: TAIR10 chr1 bases 1..4,000 (record `chr1_4k`), which hold the 5' end of AT1G01010.
* `regions.bed`: six labelled 120 bp regions of it (column 4 = label, column 6 = strand, two on '-').
  The same sequences, cut here by plain slicing and a reverse complement of its own, are written as
  `regions.csv` (GUE `sequence,label`) and as one FASTA per class, `promoter.fa` and `nonpromoter.fa`:
  the tests check that the three readers return the same examples.
"""

import gzip
from pathlib import Path

from mxdna_cli.io.labeled import read_table

DATA = Path("../shared/data")
HERE = Path(__file__).resolve().parent
PER_CLASS = 16
GENOME_LENGTH = 4000
# (start, end, label, strand), 0-based half-open
REGIONS = [
    (3431, 3551, "promoter", "+"),  # around the AT1G01010 TSS (3631, 1-based)
    (3511, 3631, "promoter", "+"),
    (200, 320, "promoter", "-"),
    (1500, 1620, "nonpromoter", "+"),
    (2600, 2720, "nonpromoter", "-"),
    (3800, 3920, "nonpromoter", "+"),
]
COMPLEMENT = {"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}


def fasta(path):
    name, chunks = None, []
    with gzip.open(path, "rt") as handle:
        for line in handle:
            if line.startswith(">"):
                if name is not None:
                    yield name, "".join(chunks)
                name, chunks = line[1:].split()[0], []
            else:
                chunks.append(line.strip())
    if name is not None:
        yield name, "".join(chunks)


def first(path, n):
    out = []
    for _, sequence in fasta(path):
        out.append(sequence.upper())
        if len(out) == n:
            return out
    return out


def main():
    cnnprom = DATA / "labeled/cnnprom_umarov2017"
    rows = [(s, "promoter") for s in first(cnnprom / "Arabidopsis_tata.fa.gz", PER_CLASS)]
    rows += [(s, "nonpromoter") for s in first(cnnprom / "Arabidopsis_non_prom.fa.gz", PER_CLASS)]
    (HERE / "tata_small.tsv").write_text("sequence\tlabel\n" + "".join(f"{s}\t{label}\n" for s, label in rows))

    human = read_table("data/promoter/human_tata_genomic/test.tsv")
    pairs = list(zip(human.sequences, human.labels))
    rows = [r for r in pairs if r[1] == "promoter"][:PER_CLASS] + [r for r in pairs if r[1] != "promoter"][:PER_CLASS]
    (HERE / "human_small.tsv").write_text("sequence\tlabel\n" + "".join(f"{s}\t{label}\n" for s, label in rows))

    genome_file = next((DATA / "pretrain/arabidopsis").glob("AthaTAIR10_chr1_*.fna.gz"))
    _, chrom = next(fasta(genome_file))
    piece = chrom[:GENOME_LENGTH]
    lines = [piece[i : i + 60] for i in range(0, len(piece), 60)]
    (HERE / "genome.fa").write_text(">chr1_4k TAIR10.1 NC_003070.9:1-4000\n" + "\n".join(lines) + "\n")

    bed, csv_rows, per_class = [], [], {"promoter": [], "nonpromoter": []}
    for number, (start, end, label, strand) in enumerate(REGIONS, start=1):
        bed.append(f"chr1_4k\t{start}\t{end}\t{label}\t0\t{strand}\n")
        sequence = piece[start:end]
        if strand == "-":
            sequence = "".join(COMPLEMENT[b] for b in reversed(sequence.upper()))
        csv_rows.append(f"{sequence},{label}\n")
        per_class[label].append(f">r{number}\n{sequence}\n")
    (HERE / "regions.bed").write_text("# six labelled regions of genome.fa\n" + "".join(bed))
    (HERE / "regions.csv").write_text("sequence,label\n" + "".join(csv_rows))
    for label, records in per_class.items():
        (HERE / f"{label}.fa").write_text("".join(records))


if __name__ == "__main__":
    main()
