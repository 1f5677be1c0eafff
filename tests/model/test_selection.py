"""Tests for mxdna_cli.model.selection (greedy non-overlapping unit selection)."""

from __future__ import annotations

import pytest
import torch

from mxdna_cli.model.selection import (
    member_expert,
    select_units,
    select_units_reference,
    unit_spans,
)

torch.set_num_threads(1)

KS10 = list(range(1, 11))


def _both(scores, mask, ks):
    """Run both implementations, return (reference, fast)."""
    return select_units_reference(scores, mask, ks), select_units(scores, mask, ks)


def _expected(L, centres):
    """(1, L) int64 centre tensor from a {position: expert} dict."""
    out = torch.full((1, L), -1, dtype=torch.long)
    for p, j in centres.items():
        out[0, p] = j
    return out


def _layout_mask(L, m):
    """[CLS] + m nucleotides + [SEP] + padding, as a (L,) bool mask."""
    mask = torch.zeros(L, dtype=torch.bool)
    mask[1 : 1 + m] = True
    return mask


# ----------------------------------------------------------------------------
# hand-worked cases
# ----------------------------------------------------------------------------


def test_hand_seven_nucleotides_explicit_scores():
    # index: 0=[CLS], 1..7 nucleotides, 8=[SEP], 9..10 padding
    L, ks = 11, [1, 2, 3]
    mask = _layout_mask(L, 7)[None]
    s = torch.zeros(1, L, 3)
    s[0, :, 0] = 0.1  # kernel-1 fallback everywhere
    s[0, 8, 1] = 5.0  # k=2 at 8 -> span {7, 8}: crosses [SEP], rejected
    s[0, 1, 2] = 4.0  # k=3 at 1 -> span {0, 1, 2}: includes [CLS], rejected
    s[0, 10, 0] = 3.0  # k=1 on padding, rejected
    s[0, 3, 2] = 0.9  # k=3 at 3 -> {2, 3, 4}: accepted first
    s[0, 2, 1] = 0.85  # k=2 at 2 -> {1, 2}: overlaps 2, rejected
    s[0, 6, 1] = 0.8  # k=2 at 6 -> {5, 6} (even: centre is right middle): accepted
    # left: 1 and 7 -> kernel-1 units
    expected = _expected(L, {3: 2, 6: 1, 1: 0, 7: 0})
    ref, fast = _both(s, mask, ks)
    assert torch.equal(ref, expected)
    assert torch.equal(fast, expected)

    assert member_expert(fast, ks).tolist() == [[-1, 0, 2, 2, 2, 1, 1, 0, -1, -1, -1]]
    b, start, length, expert = unit_spans(fast, ks)
    assert b.tolist() == [0, 0, 0, 0]
    assert start.tolist() == [1, 2, 5, 7]
    assert length.tolist() == [1, 3, 2, 1]
    assert expert.tolist() == [0, 2, 1, 0]


def test_hand_ties_lower_position_then_lower_expert():
    # 0=[CLS], 1..7 nucleotides, 8=[SEP]; k=2 and k=3 all tied at 0, k=1 worse
    L, ks = 9, [1, 2, 3]
    mask = _layout_mask(L, 7)[None]
    s = torch.zeros(1, L, 3)
    s[0, :, 0] = -1.0
    # walk (p, j): (2,1) {1,2} ok; (2,2) {1,2,3} x; (3,1) x; (3,2) x; (4,1) {3,4} ok;
    # (4,2) x; (5,*) x; (6,1) {5,6} ok; (6,2) x; (7,1) {6,7} x; then k=1 at 7.
    expected = _expected(L, {2: 1, 4: 1, 6: 1, 7: 0})
    ref, fast = _both(s, mask, ks)
    assert torch.equal(ref, expected)
    assert torch.equal(fast, expected)

    # the same with the experts listed in another order: ids change with the order
    ks2 = [3, 2, 1]
    ref2, fast2 = _both(s.flip(2), mask, ks2)
    # now k=3 (id 0) precedes k=2 (id 1) at the same centre:
    # (2,0) {1,2,3} ok; (3,*) x; (4,*) x; (5,0) {4,5,6} ok; (6,*) x; (7,1) {6,7} x
    # -> 7 by k=1 (id 2)
    expected2 = _expected(L, {2: 0, 5: 0, 7: 2})
    assert torch.equal(ref2, expected2)
    assert torch.equal(fast2, expected2)


def test_hand_equal_scores_across_positions():
    # two k=2 pairs overlapping with the same score: the lower position wins
    L, ks = 5, [1, 2]
    mask = torch.tensor([[False, True, True, True, False]])
    s = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [0.0, 2.0], [0.0, 2.0], [0.0, 0.0]]])
    # (2,1) {1,2} and (3,1) {2,3} tie at 2.0 -> (2,1); then 3 by k=1
    expected = _expected(L, {2: 1, 3: 0})
    ref, fast = _both(s, mask, ks)
    assert torch.equal(ref, expected)
    assert torch.equal(fast, expected)


def test_hand_negative_zero_equals_zero():
    L, ks = 4, [1, 2]
    mask = torch.ones(1, L, dtype=torch.bool)
    s = torch.full((1, L, 2), -5.0)
    s[0, 1, 1] = -0.0  # {0, 1}
    s[0, 2, 1] = 0.0  # {1, 2}: ties with -0.0 (not higher), higher p -> loses
    s[0, 3, 1] = -0.0  # {2, 3}
    expected = _expected(L, {1: 1, 3: 1})
    ref, fast = _both(s, mask, ks)
    assert torch.equal(ref, expected)
    assert torch.equal(fast, expected)


def test_hand_one_nucleotide_and_empty_samples():
    L = 6
    mask = torch.stack([_layout_mask(L, 1), torch.zeros(L, dtype=torch.bool), _layout_mask(L, 4)])
    s = torch.zeros(3, L, 10)
    s[:, :, 1:] = 1.0  # longer units preferred, but nothing longer than 1 fits sample 0
    s[2, 2, 3] = 2.0  # sample 2: k=4 at 2 -> span {0..3} includes [CLS]: rejected
    s[2, 3, 3] = 1.5  # sample 2: k=4 at 3 -> span {1..4}: accepted
    expected = torch.full((3, L), -1, dtype=torch.long)
    expected[0, 1] = 0
    expected[2, 3] = 3
    ref, fast = _both(s, mask, KS10)
    assert torch.equal(ref, expected)
    assert torch.equal(fast, expected)
    assert member_expert(fast, KS10).tolist() == [
        [-1, 0, -1, -1, -1, -1],
        [-1] * 6,
        [-1, 3, 3, 3, 3, -1],
    ]

    # without a kernel-1 expert a lone nucleotide gets no unit
    ref, fast = _both(s[:, :, 1:3], mask, [2, 3])
    assert (ref[:2] == -1).all() and (fast[:2] == -1).all()
    # sample 2 (4 nucleotides at 1..4) with k=2/k=3 all tied at 1.0:
    # (2,0) {1,2} ok; (2,1) {1,2,3} x; (3,*) x; (4,0) {3,4} ok
    assert ref[2].tolist() == [-1, -1, 0, -1, 0, -1]
    assert torch.equal(ref, fast)


def test_hand_kernel_larger_than_sequence_and_edges():
    # no [CLS]/[SEP]: nucleotides run to both tensor edges; k=10 never fits L=4
    L = 4
    mask = torch.ones(1, L, dtype=torch.bool)
    s = torch.zeros(1, L, 3)
    s[0, :, 2] = 9.0  # k=10: out of range everywhere
    s[0, 2, 1] = 1.0  # k=4 at 2 -> {0,1,2,3}
    ref, fast = _both(s, mask, [1, 4, 10])
    expected = _expected(L, {2: 1})
    assert torch.equal(ref, expected)
    assert torch.equal(fast, expected)


def test_empty_shapes():
    for B, L in [(0, 5), (2, 0)]:
        s = torch.zeros(B, L, 3)
        m = torch.ones(B, L, dtype=torch.bool)
        ref, fast = _both(s, m, [1, 2, 3])
        assert ref.shape == fast.shape == (B, L)
        assert member_expert(fast, [1, 2, 3]).shape == (B, L)
        assert all(t.numel() == 0 for t in unit_spans(fast, [1, 2, 3]))


def test_input_validation():
    s = torch.zeros(1, 4, 3)
    m = torch.ones(1, 4, dtype=torch.bool)
    for fn in (select_units, select_units_reference):
        with pytest.raises(ValueError):
            fn(s, m, [1, 2])  # wrong number of kernel sizes
        with pytest.raises(ValueError):
            fn(s, m.long(), [1, 2, 3])  # mask not bool
        with pytest.raises(ValueError):
            fn(s, m, [0, 1, 2])  # non-positive kernel
        bad = s.clone()
        bad[0, 1, 1] = float("nan")
        with pytest.raises(ValueError):
            fn(bad, m, [1, 2, 3])


# ----------------------------------------------------------------------------
# random property tests
# ----------------------------------------------------------------------------

KERNEL_SETS = [KS10, [1, 2, 3], [3, 2, 5], [1], [4], [2, 2, 1], [10, 1, 5, 7], [6, 3]]
SCORE_KINDS = [
    "randn", "ties", "bf16", "bf16_ties", "bf16_wide",
    "f64", "f16", "monotone", "const", "zeros_inf",
]


def _random_scores(kind, B, L, n, g):
    if kind == "randn":
        return torch.randn(B, L, n, generator=g)
    if kind == "ties":
        return torch.randint(0, 4, (B, L, n), generator=g).float()
    if kind == "bf16":
        return torch.randn(B, L, n, generator=g).to(torch.bfloat16)
    if kind == "bf16_ties":
        return (torch.randint(0, 4, (B, L, n), generator=g).float() / 3).to(torch.bfloat16)
    if kind == "bf16_wide":
        # magnitudes far outside float16's range / precision
        scale = 2.0 ** torch.randint(-40, 40, (B, L, n), generator=g).float()
        return (torch.randn(B, L, n, generator=g) * scale).to(torch.bfloat16)
    if kind == "f64":
        return torch.randn(B, L, n, generator=g, dtype=torch.float64)
    if kind == "f16":
        return torch.randn(B, L, n, generator=g).half()
    if kind == "monotone":
        # runs of strictly increasing / decreasing scores along the sequence
        steps = torch.rand(B, L, 1, generator=g) + 0.01
        sign = torch.where(torch.rand(B, 1, 1, generator=g) < 0.5, 1.0, -1.0)
        base = (steps * sign).cumsum(1)
        return base + 0.001 * torch.randn(B, L, n, generator=g)
    if kind == "const":
        return torch.full((B, L, n), 0.5)
    if kind == "zeros_inf":
        vals = torch.tensor([-0.0, 0.0, 1.0, float("inf"), -float("inf")])
        return vals[torch.randint(0, 5, (B, L, n), generator=g)]
    raise AssertionError(kind)


def _random_mask(B, L, g, style):
    if style == "layout":
        m = torch.randint(0, max(L - 1, 1), (B,), generator=g)  # nucleotides 0..L-2
        return torch.stack([_layout_mask(L, int(x)) for x in m])
    if style == "bernoulli":
        p = torch.rand(B, 1, generator=g)
        return torch.rand(B, L, generator=g) < p
    return torch.ones(B, L, dtype=torch.bool)


def _cases(seed, n_configs, B):
    g = torch.Generator().manual_seed(seed)
    for i in range(n_configs):
        ks = KERNEL_SETS[i % len(KERNEL_SETS)]
        kind = SCORE_KINDS[i % len(SCORE_KINDS)]
        style = ["layout", "bernoulli", "full"][i % 3]
        L = int(torch.randint(1, 65, (1,), generator=g))
        s = _random_scores(kind, B, L, len(ks), g)
        mask = _random_mask(B, L, g, style)
        yield ks, kind, s, mask


def test_fast_equals_reference_random():
    total = 0
    for ks, kind, s, mask in _cases(seed=1234, n_configs=144, B=40):
        ref, fast = _both(s, mask, ks)
        assert torch.equal(ref, fast), (ks, kind, s.shape)
        total += s.shape[0]
    assert total >= 5000


def test_many_rounds_monotone_scores():
    # strictly increasing scores: each round can only settle the rightmost pair(s)
    L = 60
    s = torch.arange(L, dtype=torch.float32)[None, :, None].repeat(2, 1, 3)
    s[1] = s[1].flip(0)
    mask = torch.ones(2, L, dtype=torch.bool)
    fast, rounds = select_units(s, mask, [1, 2, 3], return_rounds=True)
    assert rounds >= L // 4
    assert torch.equal(fast, select_units_reference(s, mask, [1, 2, 3]))


def _greedy_order(s, mask, ks):
    """Candidates of one sample as (p, j, start, end) in greedy order."""
    L = s.shape[0]
    cands = []
    for p in range(L):
        for j, k in enumerate(ks):
            a = p - k // 2
            if a >= 0 and a + k <= L and bool(mask[a : a + k].all()):
                cands.append((-float(s[p, j]), p, j, a, a + k))
    cands.sort()
    return [c[1:] for c in cands]


def test_lexicographic_first_characterisation():
    """Independent check: a candidate is accepted iff no earlier accepted one overlaps it."""
    for ks, kind, s, mask in _cases(seed=99, n_configs=18, B=6):
        fast = select_units(s, mask, ks)
        for b in range(s.shape[0]):
            order = _greedy_order(s[b].double(), mask[b], ks)
            accepted = [(p, j, a, e) for (p, j, a, e) in order if int(fast[b, p]) == j]
            assert int((fast[b] >= 0).sum()) == len(accepted)
            rank = {c[:2]: i for i, c in enumerate(order)}
            for i, (p, j, a, e) in enumerate(order):
                blocked = any(
                    rank[(q, jj)] < i and qa < e and a < qe for (q, jj, qa, qe) in accepted
                )
                assert (int(fast[b, p]) == j) == (not blocked), (ks, kind, b, p, j)


def test_tiling_invariant_kernels_1_to_10():
    g = torch.Generator().manual_seed(7)
    B, L = 32, 64
    for kind in ["randn", "ties", "bf16", "monotone"]:
        s = _random_scores(kind, B, L, 10, g)
        for style in ["layout", "bernoulli"]:
            mask = _random_mask(B, L, g, style)
            ce = select_units(s, mask, KS10)
            b, start, length, expert = unit_spans(ce, KS10)
            assert ((length >= 1) & (length <= 10)).all()
            assert torch.equal(length, torch.tensor(KS10)[expert])
            cover = torch.zeros(B, L, dtype=torch.long)
            for bi, a, n in zip(b.tolist(), start.tolist(), length.tolist()):
                assert 0 <= a and a + n <= L
                cover[bi, a : a + n] += 1
            # every nucleotide exactly once, no non-nucleotide at all
            assert torch.equal(cover, mask.long())
            me = member_expert(ce, KS10)
            assert torch.equal(me >= 0, mask)


def test_member_expert_and_unit_spans_agree():
    for ks, kind, s, mask in _cases(seed=5, n_configs=24, B=8):
        ce = select_units(s, mask, ks)
        B, L = ce.shape
        b, start, length, expert = unit_spans(ce, ks)
        assert all(t.dtype == torch.long and t.dim() == 1 for t in (b, start, length, expert))
        assert b.numel() == int((ce >= 0).sum())
        # ordered by (batch, start)
        key = (b * (L + 1) + start).tolist()
        assert key == sorted(key) and len(set(key)) == len(key)
        # centres and experts consistent with center_expert
        centre = start + length // 2
        assert torch.equal(ce[b, centre], expert)
        assert torch.equal(length, torch.tensor(ks)[expert])
        # member_expert equals the per-position expansion of the spans
        me_loop = torch.full((B, L), -1, dtype=torch.long)
        for bi, a, n, j in zip(b.tolist(), start.tolist(), length.tolist(), expert.tolist()):
            assert (me_loop[bi, a : a + n] == -1).all()  # units do not overlap
            me_loop[bi, a : a + n] = j
        assert torch.equal(member_expert(ce, ks), me_loop)


# ----------------------------------------------------------------------------
# GPU
# ----------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_reference():
    for ks, kind, s, mask in _cases(seed=2024, n_configs=36, B=16):
        ref = select_units_reference(s, mask, ks)
        fast = select_units(s.cuda(), mask.cuda(), ks)
        assert fast.device.type == "cuda"
        assert torch.equal(fast.cpu(), ref), (ks, kind)
        assert torch.equal(member_expert(fast, ks).cpu(), member_expert(ref, ks))
    # a large random case as well
    g = torch.Generator().manual_seed(0)
    s = torch.randn(4, 1024, 10, generator=g)
    mask = torch.stack([_layout_mask(1024, m) for m in (1022, 700, 1, 0)])
    ref = select_units_reference(s, mask, KS10)
    assert torch.equal(select_units(s.cuda(), mask.cuda(), KS10).cpu(), ref)
