"""Regenerate tests/data/pretrain_small.fa: ~4 kb cut from each of four real genomes.

The cuts keep the original case (soft-masked lower case) and N; the human piece straddles the
start of the 100 kb N run of the HISAT2 chr22 example, so the fixture has a long N stretch.
Usage: python tests/data/make_pretrain_fixture.py [/path/to/shared/data/pretrain]
"""

import gzip
import sys
from pathlib import Path

ROOT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/work/shared/data/pretrain")
OUT = Path(__file__).with_name("pretrain_small.fa")

# (file under ROOT, 0-based start, length, name written in the fixture)
CUTS = [
    ("yeast/ScerR64_I_GCF_000146045.2_R64_genomic.fna.gz", 100_000, 4000, "scer_chrI_100000_104000"),
    ("drosophila/DsimulPrinDsim_4_GCF_016746395.2_Prin_Dsim_3.1_genomic.fna.gz", 119_940, 4000,
     "dsim_chr4_119940_123940"),
    ("bacteria/Ecoli_MG1655-K12.fasta.gz", 2_000_000, 4000, "ecoli_mg1655_2000000_2004000"),
    ("human/hisat2_chr22_20-21Mb.fa.gz", 507_431, 3000, "hs_chr22_20507431_20510431_Nrun"),
]


def first_record(path: Path) -> str:
    with gzip.open(path, "rt") as fh:
        lines = []
        next(fh)  # header
        for line in fh:
            if line.startswith(">"):
                break
            lines.append(line.strip())
    return "".join(lines)


def main() -> None:
    with open(OUT, "w") as out:
        for rel, start, length, name in CUTS:
            seq = first_record(ROOT / rel)[start : start + length]
            assert len(seq) == length, rel
            out.write(f">{name} cut from {rel}:{start}-{start + length}\n")
            for i in range(0, len(seq), 60):
                out.write(seq[i : i + 60] + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
