"""VCF/BCF through pysam (htslib): reading records with one-line errors, and writing a copy of the
input with added INFO/FILTER values as VCF (plain, or bgzip with a tabix index), atomically.

htslib is strict in ways that bite scoring tools: a record on a contig the header does not
declare parses with an error flag, and copying such a record into another header ends the
process (bcf_translate). `VcfReader` therefore declares every contig it meets before records
are parsed for output (`declare_contigs`), and the writer shares the reader's header instead of
translating records into a copy of it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pysam

from mxdna_cli.errors import DataError
from mxdna_cli.io.writers import STDOUT, _remove_quietly, move_into_place, output_folder

VCF_SUFFIXES = (".vcf", ".vcf.gz", ".vcf.bgz", ".bcf")
BGZIP_SUFFIXES = (".vcf.gz", ".vcf.bgz")
END_LINE = '##INFO=<ID=END,Number=1,Type=Integer,Description="Stop position of the interval">'  # VCF 4.2's own


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """htslib's own warnings (undeclared contigs, ...) would repeat what our messages say."""
    previous = pysam.set_verbosity(0)
    try:
        yield
    finally:
        pysam.set_verbosity(previous)


def is_symbolic(allele: str | None) -> bool:
    """<DEL>, <*>, breakends (N[chr1:5[), the spanning deletion '*' and a missing ALT '.'."""
    return allele is None or allele in ("*", ".") or allele.startswith("<") or "[" in allele or "]" in allele


class VcfReader:
    """One pass over the records of a VCF or BCF file (plain or compressed), in file order.

    Iterating yields (number, record) with 1-based record numbers for messages; a malformed line is
    a DataError naming the file and the record number.
    """

    def __init__(self, path: str) -> None:
        if path == STDOUT:
            raise DataError("the VCF cannot be stdin ('-'): it is read more than once; give a file")
        if not os.path.isfile(path):
            raise DataError(f"{path}: file not found" if not os.path.exists(path) else f"{path}: not a file")
        self.path = path
        try:
            with _quiet():
                self._file = pysam.VariantFile(path)
        except (OSError, ValueError):
            raise DataError(f"{path}: not a VCF/BCF file (htslib cannot read it)") from None
        if self._file.format not in ("VCF", "BCF"):
            self._file.close()
            raise DataError(f"{path}: not a VCF/BCF file (htslib reads it as {self._file.format})")

    @property
    def header(self) -> pysam.VariantHeader:
        return self._file.header

    def declare_contigs(self, contigs: dict[str, int | None]) -> None:
        """Add a ##contig line (with its length when known) for every contig the header lacks."""
        for name, length in contigs.items():
            if name not in self._file.header.contigs:
                self._file.header.add_line(f"##contig=<ID={name}" + (f",length={length}>" if length else ">"))

    def complete_header(self) -> None:
        """Read the file once to find the definitions htslib adds while parsing records (undeclared
        contigs, FILTER, INFO or ALT ids), and declare them in this reader's header before its records
        are parsed: a writer copies the header when it opens, and a record that uses an id only the
        reader learnt later cannot be written (htslib: 'INFO tag id is too large')."""
        with _quiet():
            scout = pysam.VariantFile(self.path)
            try:
                for record in scout:
                    # pysam declares INFO/END the first time a symbolic record's extent is read
                    _ = record.stop, list(record.info)
            except (OSError, ValueError) as error:
                raise DataError(f"{self.path}: cannot parse: {error}") from None
            existing = {str(line) for line in self._file.header.records}
            for line in scout.header.records:
                if str(line) not in existing:
                    self._file.header.add_line(str(line).rstrip("\n"))
            scout.close()
            if "END" not in self._file.header.info:  # htslib may add it for symbolic alleles while writing
                self._file.header.add_line(END_LINE)

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        number = 0
        samples = len(self._file.header.samples)
        iterator = iter(self._file)
        while True:
            try:
                with _quiet():
                    record = next(iterator)
            except StopIteration:
                return
            except (OSError, ValueError) as error:
                raise DataError(f"{self.path}: record {number + 1}: cannot parse: {error}") from None
            number += 1
            if len(record.samples) != samples:  # htslib reads it, then refuses to write it
                raise DataError(f"{self.path}: record {number} ({record.chrom}:{record.pos}): "
                                f"{len(record.samples)} sample columns where the header names {samples}")
            yield number, record

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> VcfReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def header_value(value: Any) -> str:
    """A ##key=value line's value: one line, no angle brackets that would read as a structured line."""
    return " ".join(str(value).split()).replace("<", "(").replace(">", ")")


class VcfWriter:
    """The records of `reader` (with the values the caller sets) written to `path`, atomically.

    `.vcf.gz`/`.vcf.bgz`: BGZF, then a tabix index (`.tbi`) when the records are sorted (tabix
    refuses unsorted files; `indexed` says whether one was made); `.vcf`: plain text. Nothing
    appears at `path` until `commit()`; `abort()` leaves any earlier file there untouched.
    """

    def __init__(self, path: str, reader: VcfReader) -> None:
        lower = path.lower()
        if path == STDOUT or not lower.endswith((".vcf", *BGZIP_SUFFIXES)):
            raise ValueError(f"{path}: a VCF output is named .vcf, .vcf.gz or .vcf.bgz")
        self.path = path
        self.bgzip = lower.endswith(BGZIP_SUFFIXES)
        folder = output_folder(path)
        # the suffix matters: pysam.tabix_index compresses (again) a file whose name lacks .gz
        fd, self._temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.",
                                               suffix=".vcf.gz" if self.bgzip else ".vcf")
        os.close(fd)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(self._temporary, 0o666 & ~mask)  # mkstemp's 0600 would make the output private
        self._file = pysam.VariantFile(self._temporary, "wz" if self.bgzip else "w", header=reader.header)
        self._last: tuple[str, int] | None = None
        self._seen: set[str] = set()
        self.sorted = True
        self.indexed = False
        self._open = True

    def write(self, record: Any) -> None:
        chrom, pos = record.chrom, record.pos
        if self._last is not None:
            if chrom == self._last[0]:
                self.sorted &= pos >= self._last[1]
            else:
                self.sorted &= chrom not in self._seen
        self._seen.add(chrom)
        self._last = (chrom, pos)
        self._file.write(record)

    def commit(self) -> None:
        """Close, index (bgzip, sorted), move the file and its index into place."""
        self._file.close()
        self._open = False
        index = self._temporary + ".tbi"
        try:
            if self.bgzip and self.sorted and self._last is not None:
                pysam.tabix_index(self._temporary, preset="vcf", force=True)
                self.indexed = True
            move_into_place(self._temporary, self.path)
            if self.indexed:
                move_into_place(index, self.path + ".tbi")
            elif os.path.exists(self.path + ".tbi"):
                os.unlink(self.path + ".tbi")  # an earlier run's index no longer describes the file
        finally:
            _remove_quietly(self._temporary)
            _remove_quietly(index)

    def abort(self) -> None:
        if self._open:
            with contextlib.suppress(Exception):
                self._file.close()
            self._open = False
        _remove_quietly(self._temporary)
        _remove_quietly(self._temporary + ".tbi")
