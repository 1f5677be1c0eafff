"""Turn user regions into `Region`s: samtools-style `chr:from-to` text and BED files.

The two conventions differ and both are converted here, once: `chr:from-to` is 1-based and
inclusive (as in samtools faidx), BED is 0-based half-open. A `Region` is always 0-based
half-open.
"""

from __future__ import annotations

import zlib
from typing import Mapping

from mxdna_cli.errors import DataError, UsageError
from mxdna_cli.io.fasta import STDIN, Region, open_text_input

BED_STRANDS = {"+": "+", "-": "-", ".": "+"}  # '.' (no strand) is read as the forward strand
SKIPPED_FIRST_WORDS = {"track", "browser"}
REGION_EXAMPLE = "chr1:10,001-20,000"


def _parse_position(text: str, region_text: str) -> int:
    cleaned = text.replace(",", "").strip()
    if not cleaned.isdigit():  # rejects signs, blanks and non-numbers alike
        raise UsageError(
            f"region '{region_text}': '{text}' is not a position; use chr:from-to, "
            f"e.g. {REGION_EXAMPLE}"
        )
    return int(cleaned)


def parse_region(text: str, lengths: Mapping[str, int] | None = None) -> Region:
    """Parse a samtools-style region: `chr:from-to` (1-based, inclusive; commas allowed in numbers),
    `chr:from` (to the end of the contig) or `chr` (the whole contig).

    With the FASTA's contig `lengths`, a text that is a contig name is that whole contig (so names
    with ':' such as `HLA-A*01:01` or `22:20608432-20611431` work, as in samtools); otherwise the
    contig is everything before the LAST ':'. Anything else is a UsageError with an example.
    """
    stripped = text.strip()
    if lengths is not None and stripped in lengths:
        return Region(chrom=stripped, start=0, end=lengths[stripped], name=stripped)
    chrom, colon, span = stripped.rpartition(":")
    if not colon or not chrom:
        if lengths is not None and stripped:
            return Region(chrom=stripped, start=0, end=0, name=stripped)  # unknown: the caller lists the contigs
        raise UsageError(
            f"region '{text}': expected chr, chr:from or chr:from-to (1-based, inclusive), e.g. {REGION_EXAMPLE}"
        )
    start_text, dash, end_text = span.partition("-")
    first = _parse_position(start_text, text)
    if not dash:
        if lengths is None:
            raise UsageError(f"region '{text}': chr:from needs the contig's length (an indexed FASTA); "
                             f"or give chr:from-to, e.g. {REGION_EXAMPLE}")
        last = lengths.get(chrom, first)  # an unknown contig: the caller lists the contigs
    else:
        last = _parse_position(end_text, text)
    if first < 1 or last < first:
        raise UsageError(f"region '{text}': needs 1 <= from <= to, e.g. {REGION_EXAMPLE}")
    return Region(chrom=chrom, start=first - 1, end=last)


def _bed_coordinate(text: str, what: str, where: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise DataError(f"{where}: {what} '{text}' is not an integer") from None
    if value < 0:
        raise DataError(f"{where}: {what} {value} is negative")
    return value


def _parse_bed_line(line: str, where: str) -> Region:
    # BED is tab-separated; files split by spaces are common too and still unambiguous
    fields = line.split("\t") if "\t" in line else line.split()
    fields = [field.strip() for field in fields]
    if len(fields) < 3:
        raise DataError(
            f"{where}: expected at least 3 columns (chrom, start, end), got {len(fields)}"
        )
    chrom = fields[0]
    start = _bed_coordinate(fields[1], "start", where)
    end = _bed_coordinate(fields[2], "end", where)
    if start >= end:
        raise DataError(f"{where}: start {start} must be less than end {end}")
    name = fields[3] if len(fields) > 3 and fields[3] not in ("", ".") else None
    strand_text = fields[5] if len(fields) > 5 else "."
    if strand_text not in BED_STRANDS:
        raise DataError(f"{where}: strand '{strand_text}' must be +, - or .")
    return Region(chrom=chrom, start=start, end=end, name=name, strand=BED_STRANDS[strand_text])


def is_skipped(line: str) -> bool:
    """Whether a BED line carries no region: blank lines, '#' comments and UCSC 'track'/'browser'
    lines (`read_bed` skips them)."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return True
    return stripped.split(maxsplit=1)[0] in SKIPPED_FIRST_WORDS


def read_bed(path: str) -> list[Region]:
    """Read a BED file (plain or gzip; `-` = stdin) into 0-based half-open Regions.

    Column 4 is the name ('.' = none) and column 6 the strand ('.' = '+'). Raises DataError
    naming file:line for a bad line, and when the file holds no region at all.
    """
    source = "stdin" if path == STDIN else path
    regions = []
    try:
        with open_text_input(path) as lines:
            for number, line in enumerate(lines, start=1):
                if not is_skipped(line):
                    regions.append(_parse_bed_line(line, f"{source}:{number}"))
    except (UnicodeDecodeError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{source}: cannot read as BED text (binary or corrupt?): {exc}") from None
    if not regions:
        raise DataError(f"{source}: no regions found")
    return regions
