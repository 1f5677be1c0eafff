"""Regenerate the small I/O test fixtures in tests/data/ from the real data in /work/shared/data.

The tests read only the files this script writes, so they pass on machines without the shared
data; this script is how those files were made. Run: python tests/data/make_fixtures.py [DATA_DIR]

Fixtures (all cut from real sequence or annotation):
- mini.fa: three records of 3,000 bp.
  CHROMOSOME_I: C. elegans, the first 3,000 bp of io_samples/htslib/ce.fa (upper case).
  NC_004353.4: D. melanogaster chr4 (pretrain/drosophila) at 1,198,662-1,201,662 (0-based),
  soft-masked repeats (lower case) then the first 1,000 bp of an N run.
  22:20608432-20611431: human chr22 (pretrain/human/hisat2_chr22_20-21Mb.fa.gz) named the way
  `samtools faidx` names a region, a contig name containing ':'; 1,000 N then 2,000 bases.
- mini.fa.fai: its faidx index.  mini.fa.gz (+ .fai, .gzi): the same, bgzip-compressed, one
  BGZF block per record.
- mini.plain.fa.gz: the same, plain gzip (streamable, not indexable).
- regions.bed: BED6 on the mini.fa contigs with comment, browser and track lines.
- aluY.head.bed.gz: the first 20 lines of io_samples/bedtools/aluY.chr1.bed.gz (gzip BED6).
"""

import gzip
import os
import sys
from pathlib import Path

import pysam
from pysam.libcbgzf import BGZFile

HERE = Path(__file__).resolve().parent
LINE_WIDTH = 60  # FASTA line width; faidx needs one width per record, any value works

# (record name in the fixture, source file relative to the data dir, source record, start, end)
CUTS = [
    ("CHROMOSOME_I", "io_samples/htslib/ce.fa", "CHROMOSOME_I", 0, 3000),
    (
        "NC_004353.4",
        "pretrain/drosophila/DmelanDM6_4_GCF_000001215.4_Release_6_plus_ISO1_MT_genomic.fna.gz",
        "NC_004353.4",
        1198662,
        1201662,
    ),
    (
        "22:20608432-20611431",
        "pretrain/human/hisat2_chr22_20-21Mb.fa.gz",
        "22:20000001-21000000",
        608431,
        611431,
    ),
]

# BED6 lines on the fixture contigs: a mix of strands, a '.' strand and a '.' name.
BED_BODY = [
    "CHROMOSOME_I\t0\t100\tce_first100\t0\t+",
    "CHROMOSOME_I\t2900\t3000\tce_last100\t0\t-",
    "NC_004353.4\t1000\t2100\tdm_softmask_to_N\t500\t.",
    "22:20608432-20611431\t990\t1010\t.\t0\t+",
]


def _read_record(path: Path, name: str) -> str:
    """Stream `path` and return the sequence of record `name` (the sources are gzip FASTA)."""
    with pysam.FastxFile(str(path)) as fx:
        for rec in fx:
            if rec.name == name:
                return rec.sequence
    raise SystemExit(f"{path}: record {name} not found")


def _fasta_text(records: list[tuple[str, str]]) -> str:
    lines = []
    for name, seq in records:
        lines.append(f">{name}")
        lines.extend(seq[i : i + LINE_WIDTH] for i in range(0, len(seq), LINE_WIDTH))
    return "\n".join(lines) + "\n"


def _write_gzip(path: Path, data: bytes) -> None:
    # mtime=0 so that regenerating gives byte-identical files
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(data)


def _write_bgzip_per_record(path: Path, records: list[tuple[str, str]]) -> None:
    # One BGZF block per record (flush ends a block), so the .gzi has real entries and the tests
    # exercise random access across blocks; one 9 kB file would otherwise fit a single block.
    with BGZFile(str(path), "wb") as bgz:
        for record in records:
            bgz.write(_fasta_text([record]).encode())
            bgz.flush()


def main(data_dir: Path) -> None:
    records = []
    for name, rel, source_name, start, end in CUTS:
        seq = _read_record(data_dir / rel, source_name)[start:end]
        assert len(seq) == end - start, (name, len(seq))
        records.append((name, seq))
    text = _fasta_text(records)

    fasta = HERE / "mini.fa"
    fasta.write_text(text)
    for stale in ("mini.fa.fai", "mini.fa.gz", "mini.fa.gz.fai", "mini.fa.gz.gzi"):
        (HERE / stale).unlink(missing_ok=True)
    pysam.faidx(str(fasta))
    _write_bgzip_per_record(HERE / "mini.fa.gz", records)
    pysam.faidx(str(HERE / "mini.fa.gz"))  # writes mini.fa.gz.fai and mini.fa.gz.gzi
    _write_gzip(HERE / "mini.plain.fa.gz", text.encode())

    bed_header = [
        "# regions on the mini.fa contigs (0-based half-open)",
        "browser position CHROMOSOME_I:1-3000",
        'track name=mini description="fixture regions"',
    ]
    (HERE / "regions.bed").write_text("\n".join(bed_header + BED_BODY) + "\n")

    with gzip.open(data_dir / "io_samples/bedtools/aluY.chr1.bed.gz", "rt") as fh:
        head = [next(fh) for _ in range(20)]
    _write_gzip(HERE / "aluY.head.bed.gz", "".join(head).encode())

    outputs = [
        "mini.fa", "mini.fa.fai", "mini.fa.gz", "mini.fa.gz.fai", "mini.fa.gz.gzi",
        "mini.plain.fa.gz", "regions.bed", "aluY.head.bed.gz",
    ]
    total = sum(os.path.getsize(HERE / name) for name in outputs)
    print(f"{len(outputs)} fixtures written to {HERE} ({total} bytes in all)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/work/shared/data"))
