"""Vocabulary and byte lookup-table encoding."""

import numpy as np
import pytest

from mxdna_cli import sequence as vocab
from mxdna_cli.errors import DataError


def test_reference_ids():
    assert vocab.VOCAB.index("[PAD]") == 0 and vocab.VOCAB.index("[MASK]") == 4
    assert vocab.encode("ATCG").tolist() == [5, 6, 7, 8]


def test_lower_case_encodes_like_upper_case():
    assert vocab.encode("acgtn").tolist() == vocab.encode("ACGTN").tolist()


def test_n_and_iupac_codes_map_to_unk():
    assert set(vocab.encode("NRYSWKMBDHVnrykm").tolist()) == {vocab.UNK}


@pytest.mark.parametrize("text, position, char", [("ACGTX", 5, "X"), ("AC-GT", 3, "-"), ("AC GT", 3, "byte 0x20")])
def test_other_bytes_are_errors_naming_record_and_position(text, position, char):
    with pytest.raises(DataError, match=rf"chr7: position {position}: '{char}'"):
        vocab.encode(text, record="chr7")


def test_reverse_complement_text_and_ids_agree():
    text = "AACGTNacgtRY"
    assert vocab.reverse_complement(text) == "RYacgtNACGTT"
    ids = vocab.encode(text)
    assert vocab.reverse_complement_ids(ids).tolist() == vocab.encode(vocab.reverse_complement(text)).tolist()


def test_fractions():
    assert vocab.n_fraction("ACNN") == 0.5
    assert vocab.soft_masked_fraction("acGT") == 0.5
    assert vocab.n_fraction("") == 0.0


def test_decode_round_trip():
    ids = np.array([vocab.CLS, vocab.A, vocab.T, vocab.C, vocab.G, vocab.UNK, vocab.SEP])
    assert vocab.decode(ids) == "^ATCGN$"


def test_error_position_has_thousands_separators_and_names_the_file():
    text = "A" * 1233 + "J"
    with pytest.raises(DataError) as caught:
        vocab.encode(text, record="genome.fa: record 'chr1'")
    assert str(caught.value) == "genome.fa: record 'chr1': position 1,234: 'J' is not a DNA letter (ACGT, N or IUPAC)"


def test_long_sequences_are_converted_in_pieces_with_the_same_result(monkeypatch):
    rng = np.random.default_rng(3)
    text = "".join(rng.choice(list("ACGTacgtNnRy"), 5_003))
    whole = (vocab.encode(text), vocab.n_fraction(text), vocab.soft_masked_fraction(text))
    monkeypatch.setattr(vocab, "_PIECE", 64)
    assert np.array_equal(vocab.encode(text), whole[0])
    assert vocab.n_fraction(text) == pytest.approx(whole[1]) and vocab.soft_masked_fraction(text) == pytest.approx(whole[2])
    with pytest.raises(DataError, match=r"position 4,001: 'X'"):  # the genome position, not the piece's
        vocab.encode(text[:4000] + "X" + text[4001:], "f.fa: record 'x'")
