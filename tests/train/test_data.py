"""Tests of mxdna_cli.train.data: FASTA loading, held-out split, window sampler, masking, tiling."""

import copy
import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from mxdna_cli.errors import DataError, UsageError
from mxdna_cli.sequence import MASK as MASK_ID, UNK as UNK_ID, reverse_complement_ids as reverse_complement
from mxdna_cli.train.data import (
    HELDOUT_SEQUENCES,
    Genomes,
    WindowSampler,
    find_fasta_files,
    fixed_validation_windows,
    load_genomes,
    mask_tokens,
    split_heldout,
)

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "pretrain_small.fa"
IDS = {"A": 5, "T": 6, "C": 7, "G": 8}


def encode(text: str) -> np.ndarray:
    """Independent reference encoder (no shared table with the module)."""
    return np.array([IDS.get(ch.upper(), 1) for ch in text], dtype=np.uint8)


def fixture_records() -> dict[str, str]:
    recs, name = {}, None
    for line in FIXTURE.read_text().splitlines():
        if line.startswith(">"):
            name = line[1:].split()[0]
            recs[name] = ""
        else:
            recs[name] += line.strip()
    return recs


def write(path: Path, text: str, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def random_bases(rng, n):
    return rng.integers(5, 9, size=n).astype(np.uint8)


def binom_ok(count, n, p, z=5.0):
    return abs(count - n * p) <= z * np.sqrt(n * p * (1 - p)) + 1


# ---------------------------------------------------------------- files and loading


def test_find_fasta_files_recursive_sorted(tmp_path):
    for rel in ["b/x.fa", "a/deep/y.fasta.gz", "a/z.fna", "c.fas", "d.FA.GZ", "notes.txt", "e.fa.bz2", "a/gff.gz"]:
        write(tmp_path / rel, ">r\nACGT\n")
    found = find_fasta_files([tmp_path])
    names = [p.relative_to(tmp_path).as_posix() for p in found]
    assert names == sorted(["b/x.fa", "a/deep/y.fasta.gz", "a/z.fna", "c.fas", "d.FA.GZ"])
    assert found == sorted(found)
    # an explicit file is taken whatever its name; duplicates collapse
    assert find_fasta_files([tmp_path / "notes.txt", tmp_path / "c.fas", tmp_path / "c.fas"]) == sorted(
        [tmp_path / "notes.txt", tmp_path / "c.fas"]
    )


def test_find_fasta_files_errors(tmp_path):
    write(tmp_path / "only.txt", "hello")
    with pytest.raises(DataError, match="no FASTA"):
        find_fasta_files([tmp_path])
    with pytest.raises(DataError, match="missing"):
        find_fasta_files([tmp_path / "missing"])


def test_load_fixture_matches_reference_encoding():
    g = load_genomes([FIXTURE])
    ref = fixture_records()
    assert [r.name for r in g] == list(ref)
    assert all(r.file == str(FIXTURE) for r in g)
    for r in g:
        assert r.seq.dtype == np.uint8
        np.testing.assert_array_equal(r.seq, encode(ref[r.name]))
    # the fixture really has soft-masked lower case and an N run
    assert any(c.islower() for s in ref.values() for c in s)
    assert g.total_length == sum(len(s) for s in ref.values()) == g.nbytes
    assert int((g[3].seq == UNK_ID).sum()) == 1000


def test_load_case_iupac_whitespace_gzip(tmp_path):
    text = ">r1 desc here\nACGTacgt\r\nNnRYK-*\n  AC GT\n>r2\nggg\n"
    plain = write(tmp_path / "x.fa", text)
    gz = write(tmp_path / "y.fa.gz", text, gz=True)
    for f in (plain, gz):
        g = load_genomes([f])
        assert [r.name for r in g] == ["r1", "r2"]
        np.testing.assert_array_equal(g[0].seq, [5, 7, 8, 6, 5, 7, 8, 6, 1, 1, 1, 1, 1, 1, 1, 5, 7, 8, 6])
        np.testing.assert_array_equal(g[1].seq, [8, 8, 8])


def test_load_errors(tmp_path):
    with pytest.raises(DataError, match="not FASTA"):
        load_genomes([write(tmp_path / "a.fa", "ACGT\n")])
    with pytest.raises(DataError, match="'r2' has no sequence"):
        load_genomes([write(tmp_path / "b.fa", ">r1\nAC\n>r2\n>r3\nGG\n")])
    with pytest.raises(DataError, match="c.fa"):
        load_genomes([write(tmp_path / "c.fa", "")])
    bad_gz = tmp_path / "d.fa.gz"
    bad_gz.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(DataError, match="d.fa.gz"):
        load_genomes([bad_gz])


def test_exclude_and_split_heldout(tmp_path):
    dmel = write(tmp_path / "drosophila" / "DmelanDM6_4_GCF_x_genomic.fna.gz", ">NC_004353.4 chr4\nACGTACGT\n", gz=True)
    hpy = write(
        tmp_path / "bacteria" / "Hpylori_Puno120.fasta.gz",
        ">gi|385227773|ref|NC_017378.1| Puno120\nAAAACCCC\n",
        gz=True,
    )
    other = write(tmp_path / "bacteria" / "Hpylori_G27.fasta", ">NC_004353.4 same name, other file\nGGGG\n>x\nTT\n")
    files = find_fasta_files([tmp_path])
    g = load_genomes(files)
    train, held = split_heldout(g, strict=True)
    assert sorted((Path(r.file).name, r.name) for r in held) == [
        (dmel.name, "NC_004353.4"),
        (hpy.name, "gi|385227773|ref|NC_017378.1|"),
    ]
    assert sorted((Path(r.file).name, r.name) for r in train) == [(other.name, "NC_004353.4"), (other.name, "x")]
    # load_genomes(exclude_records=HELDOUT_SEQUENCES) gives the same training set
    g2 = load_genomes(files, exclude_records=HELDOUT_SEQUENCES)
    assert [(r.file, r.name) for r in g2] == [(r.file, r.name) for r in train]
    # a plain record name excludes it in every file
    g3 = load_genomes(files, exclude_records={"NC_004353.4"})
    assert sorted(r.name for r in g3) == ["gi|385227773|ref|NC_017378.1|", "x"]
    # strict split without the held-out sequences
    with pytest.raises(DataError, match="not found"):
        split_heldout(Genomes(list(train)), strict=True)
    assert len(split_heldout(Genomes(list(train)))[1]) == 0


# ---------------------------------------------------------------- sampler


def test_sampler_deterministic_and_seed_dependent():
    g = load_genomes([FIXTURE])
    a = WindowSampler(g, 256, seed=7)
    b = WindowSampler(g, 256, seed=7)
    c = WindowSampler(g, 256, seed=8)
    ba, bb, bc = a.next_batch(16), b.next_batch(16), c.next_batch(16)
    assert ba.shape == (16, 256) and ba.dtype == np.int64
    np.testing.assert_array_equal(ba, bb)
    assert not np.array_equal(ba, bc)


def test_sampler_exact_resume():
    g = load_genomes([FIXTURE])
    s1 = WindowSampler(g, 300, seed=3)
    for _ in range(5):
        s1.next_batch(8)
    state = pickle.loads(pickle.dumps(copy.deepcopy(s1.state_dict())))  # must survive serialisation
    assert state["counter"] == 40
    cont = [s1.next_batch(8) for _ in range(4)]
    s2 = WindowSampler(g, 300, seed=3)
    s2.load_state_dict(state)
    assert s2.counter == 40
    resumed = [s2.next_batch(8) for _ in range(4)]
    for x, y in zip(cont, resumed):
        np.testing.assert_array_equal(x, y)
    # a fresh sampler that did not load the state does not reproduce them
    fresh = WindowSampler(g, 300, seed=3).next_batch(8)
    assert not np.array_equal(fresh, cont[0])
    # a saved state for another window size is refused
    with pytest.raises(UsageError, match="window"):
        WindowSampler(g, 200, seed=3).load_state_dict(state)


def test_sampler_windows_are_genome_substrings_and_rc_rate():
    g = load_genomes([FIXTURE])
    fwd = [r.seq.tobytes() for r in g]
    rev = [reverse_complement(r.seq).tobytes() for r in g]
    s = WindowSampler(g, 64, seed=0)
    batch = s.next_batch(2000).astype(np.uint8)
    n_fwd = n_rev = 0
    for w in batch:
        wb = w.tobytes()
        in_f = any(wb in f for f in fwd)
        in_r = any(wb in r for r in rev)
        assert in_f or in_r
        n_fwd += in_f and not in_r
        n_rev += in_r and not in_f
    assert n_fwd + n_rev > 1900  # almost no palindromic windows
    assert binom_ok(n_rev, n_fwd + n_rev, 0.5)


def test_sampler_rc_probability_extremes():
    rng = np.random.default_rng(0)
    seq = np.concatenate([random_bases(rng, 50), [UNK_ID], random_bases(rng, 49)]).astype(np.uint8)
    only_fwd = WindowSampler([seq], 100, seed=1, reverse_complement_p=0.0).next_batch(5)
    only_rev = WindowSampler([seq], 100, seed=1, reverse_complement_p=1.0).next_batch(5)
    assert (only_fwd == seq).all()
    assert (only_rev == reverse_complement(seq)).all()


def test_reverse_complement_values():
    ids = encode("AACGTN")
    np.testing.assert_array_equal(reverse_complement(ids), encode("NACGTT"))
    two = np.stack([encode("ACCG"), encode("TTGA")])
    np.testing.assert_array_equal(reverse_complement(two), np.stack([encode("CGGT"), encode("TCAA")]))
    np.testing.assert_array_equal(reverse_complement(reverse_complement(ids)), ids)


def test_sampler_rejects_n_rich_windows():
    rng = np.random.default_rng(1)
    seq = np.concatenate([random_bases(rng, 300), np.full(400, UNK_ID, np.uint8), random_bases(rng, 300)])
    s = WindowSampler([seq], 100, seed=0, max_n_fraction=0.1)
    n_count = (s.next_batch(3000) == UNK_ID).sum(axis=1)
    assert n_count.max() <= 10
    assert (n_count > 0).any()  # windows at the edge of the N run, with <= 10 N, are allowed
    # the same draws without rejection do contain N-rich windows (so the check above means something)
    loose = (WindowSampler([seq], 100, seed=0, max_n_fraction=1.0).next_batch(3000) == UNK_ID).sum(axis=1)
    assert loose.max() > 50


def test_sampler_record_choice_proportional_to_starts():
    short = np.full(100, 5, np.uint8)  # all A
    long = np.full(900, 7, np.uint8)  # all C
    s = WindowSampler([short, long], 1, seed=5, reverse_complement_p=0.0)
    n_short = int((s.next_batch(20000) == 5).sum())
    assert binom_ok(n_short, 20000, 0.1)


def test_sampler_data_errors(tmp_path):
    all_n = load_genomes([write(tmp_path / "n.fa", ">n1\n" + "N" * 500 + "\n>n2\nNNNNNNNNNN\n")])
    with pytest.raises(DataError, match="no window"):
        WindowSampler(all_n, 100, seed=0)
    g = load_genomes([FIXTURE])
    with pytest.raises(DataError, match="longer than every sequence"):
        WindowSampler(g, 4001, seed=0)
    WindowSampler(g, 4000, seed=0)  # exactly the longest record: fine
    # N everywhere but in short stretches: every window of 100 has > 10% N
    patterned = np.tile(np.concatenate([np.full(5, 5, np.uint8), np.full(5, UNK_ID, np.uint8)]), 100)
    with pytest.raises(DataError, match="no window"):
        WindowSampler([patterned], 100, seed=0)
    with pytest.raises(UsageError):
        WindowSampler(g, 0, seed=0)


# ---------------------------------------------------------------- masking


def test_mask_tokens_statistics():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 9, (64, 4096), generator=gen)
    ids[:, ::10] = UNK_ID  # 10% N, never chosen
    ids[:, 0] = 2  # CLS-like special token, never chosen
    inp, labels = mask_tokens(ids, torch.Generator().manual_seed(1))
    chosen = labels != -100
    n_eligible = int(((ids >= 5) & (ids <= 8)).sum())
    n_chosen = int(chosen.sum())
    assert binom_ok(n_chosen, n_eligible, 0.15)
    assert not chosen[ids == UNK_ID].any() and not chosen[:, 0].any()
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(inp[~chosen], ids[~chosen])
    is_mask = inp[chosen] == MASK_ID
    same = inp[chosen] == ids[chosen]
    other_base = ~is_mask & ~same
    assert binom_ok(int(is_mask.sum()), n_chosen, 0.8)
    assert binom_ok(int(same.sum()), n_chosen, 0.1 + 0.1 * 0.25)  # unchanged, or random base = original
    assert binom_ok(int(other_base.sum()), n_chosen, 0.1 * 0.75)
    assert ((inp[chosen][other_base] >= 5) & (inp[chosen][other_base] <= 8)).all()
    assert not (inp == MASK_ID)[~chosen].any()


def test_mask_tokens_deterministic():
    ids = torch.randint(5, 9, (4, 500), generator=torch.Generator().manual_seed(0))
    a = mask_tokens(ids, torch.Generator().manual_seed(5))
    b = mask_tokens(ids, torch.Generator().manual_seed(5))
    c = mask_tokens(ids, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    # mask_prob is honoured
    _, lab = mask_tokens(ids, torch.Generator().manual_seed(5), mask_prob=0.5)
    assert binom_ok(int((lab != -100).sum()), ids.numel(), 0.5)


# ---------------------------------------------------------------- validation tiling


def test_fixed_validation_windows():
    rng = np.random.default_rng(2)
    a = random_bases(rng, 1050)
    a[420:450] = UNK_ID  # window 4 has 30% N -> dropped
    b = random_bases(rng, 99)  # shorter than a window -> no window
    c = random_bases(rng, 250)
    w = fixed_validation_windows([a, b, c], 100)
    expected = [a[i * 100 : (i + 1) * 100] for i in range(10) if i != 4] + [c[:100], c[100:200]]
    np.testing.assert_array_equal(w, np.stack(expected))
    assert w.dtype == np.int64
    np.testing.assert_array_equal(w, fixed_validation_windows([a, b, c], 100))
    w2 = fixed_validation_windows([c], 100, stride=50)
    np.testing.assert_array_equal(w2, np.stack([c[0:100], c[50:150], c[100:200], c[150:250]]))
    assert fixed_validation_windows([b], 100).shape == (0, 100)
    # with a genome collection: the human fixture record loses the windows inside the N run
    g = load_genomes([FIXTURE])
    wf = fixed_validation_windows(g, 500)
    assert wf.shape == (8 + 8 + 8 + 4, 500)
    assert ((wf == UNK_ID).sum(axis=1) <= 50).all()
