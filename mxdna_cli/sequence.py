"""DNA text to model ids and back: the vocabulary, a byte lookup-table encoder, reverse complement.

The ids are the reference checkpoint's (PAD 0, UNK 1, CLS 2, SEP 3, MASK 4, A 5, T 6, C 7, G 8), so
weights trained by the reference code and by this package read the same inputs. Lower case
(soft-masked repeats) is encoded like upper case: the reference tokenizer silently turned it into
[UNK], which destroyed a large share of every real genome. N and the IUPAC ambiguity codes all map
to [UNK]; any other byte is an error that names the record and the position.
"""

from __future__ import annotations

import numpy as np

from mxdna_cli.errors import DataError

PAD, UNK, CLS, SEP, MASK, A, T, C, G = range(9)
VOCAB = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "A", "T", "C", "G")
BASE_IDS = np.array([A, T, C, G], dtype=np.int64)
AMBIGUOUS_ID = UNK  # N and every IUPAC ambiguity code (R Y S W K M B D H V)

_INVALID = 255
_ENCODE = np.full(256, _INVALID, dtype=np.uint8)
for _letter, _id in {"A": A, "T": T, "C": C, "G": G}.items():
    _ENCODE[ord(_letter)] = _ENCODE[ord(_letter.lower())] = _id
for _letter in "NRYSWKMBDHV":
    _ENCODE[ord(_letter)] = _ENCODE[ord(_letter.lower())] = AMBIGUOUS_ID

# Complement as a permutation of ids; specials and UNK map to themselves.
_COMPLEMENT_IDS = np.arange(len(VOCAB), dtype=np.uint8)
_COMPLEMENT_IDS[[A, T, C, G]] = [T, A, G, C]
_COMPLEMENT_TEXT = str.maketrans("ACGTacgtRYSWKMBDHVNrymkbdhvn", "TGCAtgcaYRSWMKVHDBNyrkmvhdbn")
_DECODE = np.frombuffer(b"_N^$?ATCG", dtype=np.uint8)  # PAD _, UNK N, CLS ^, SEP $, MASK ?


_PIECE = 1 << 22  # bytes converted at a time: a chromosome's temporaries stay a few MB, not 3-4 bytes/nt


def _pieces(sequence: str | bytes):
    """(offset, uint8 bytes) of consecutive pieces of the text (non-ASCII characters become '?')."""
    for offset in range(0, len(sequence), _PIECE):
        piece = sequence[offset : offset + _PIECE]
        yield offset, np.frombuffer(piece.encode("ascii", "replace") if isinstance(piece, str) else piece, dtype=np.uint8)


def encode(sequence: str | bytes, record: str = "sequence", offset: int = 0) -> np.ndarray:
    """Encode DNA text as uint8 ids (no CLS/SEP); raise DataError on a byte that is not DNA.

    `record` starts the message: say which file and record, e.g. "genome.fa: record 'chr1'";
    `offset` is where the text starts in that record (the message gives the record's position).
    """
    ids = np.empty(len(sequence), dtype=np.uint8)
    for start, raw in _pieces(sequence):
        part = ids[start : start + len(raw)]
        np.take(_ENCODE, raw, out=part)
        bad = np.flatnonzero(part == _INVALID)
        if bad.size:
            position = int(bad[0])
            char = chr(raw[position]) if 32 < raw[position] < 127 else f"byte 0x{raw[position]:02x}"
            raise DataError(f"{record}: position {offset + start + position + 1:,}: '{char}' is not a DNA letter "
                            "(ACGT, N or IUPAC)")
    return ids


def decode(ids: np.ndarray) -> str:
    """Ids back to text (A/T/C/G, N for UNK); for messages and tests."""
    return _DECODE[np.asarray(ids, dtype=np.int64)].tobytes().decode()


def reverse_complement_ids(ids: np.ndarray) -> np.ndarray:
    """Reverse complement of an id array (last axis)."""
    return _COMPLEMENT_IDS[np.asarray(ids)][..., ::-1]


def reverse_complement(sequence: str) -> str:
    """Reverse complement of DNA text, keeping case and ambiguity codes."""
    return sequence.translate(_COMPLEMENT_TEXT)[::-1]


def n_fraction(sequence: str) -> float:
    """Share of positions that are not A/C/G/T (either case)."""
    if not sequence:
        return 0.0
    return sum(int(np.count_nonzero(_ENCODE[raw] == AMBIGUOUS_ID)) for _, raw in _pieces(sequence)) / len(sequence)


def soft_masked_count(sequence: str) -> int:
    """Number of lower-case (soft-masked) positions."""
    return sum(int(np.count_nonzero((raw >= ord("a")) & (raw <= ord("z")))) for _, raw in _pieces(sequence))


def soft_masked_fraction(sequence: str) -> float:
    """Share of lower-case (soft-masked) positions."""
    return soft_masked_count(sequence) / len(sequence) if sequence else 0.0
