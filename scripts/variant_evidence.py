#!/usr/bin/env python
"""Evidence that the classifier's variant scores mean something (docs/variants.md).

    python scripts/build_promoter_datasets.py            # once: data/promoter/ (git-ignored)
    OMP_NUM_THREADS=1 python scripts/variant_evidence.py [--n 200] [--ism 3] [--seed 0]

On the TEST split of data/promoter/human_tata_genomic (EPDnew human TATA promoters, 300 bp,
-249..+50 around the TSS, in no split the shipped `promoter-human` classifier trained or was
selected on), every promoter with a TATA box (TATAWAW, W = A/T, starting between -40 and -20) is
mutated twice: (a) the 7 bases of its TATA box, (b) 7 contiguous bases at a random position of the
same promoter that does not overlap the box; every mutated base becomes its transversion partner
(A->C, C->A, G->T, T->G). The classifier reads each sequence whole, forward strand, as `mxdna
predict promoter` does; the score is P(promoter | mutant) - P(promoter | reference), the
MXDNA_DPROB of `mxdna score-variants` for these MNVs when the window is the whole promoter.

Then `Model.ism` (as `mxdna ism --model promoter-human`) over the first --ism of those promoters:
mean per-base importance (minus the mean probability change of the three substitutions) inside
the TATA box, the initiator (-2..+4 around the TSS) and elsewhere; the first of them whose
P(promoter) is below 0.9 is drawn (-80..+40) to docs/variants_ism.png. Prints markdown tables; writes nothing else.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TSS = 249  # index of the TSS in the -249..+50 sequences
TATA = re.compile(r"(?=(TATA[AT]A[AT]))")
BOX = 7
TATA_FROM, TATA_TO = TSS - 40, TSS - 20  # where a TATA box may start (-40..-20)
INR = (TSS - 2, TSS + 5)  # -2..+4
TRANSVERSION = str.maketrans("ACGT", "CATG")


def tata_start(sequence: str) -> int | None:
    """The TATA box starting nearest to -30 within -40..-20, or None."""
    starts = [m.start() for m in TATA.finditer(sequence) if TATA_FROM <= m.start() <= TATA_TO]
    return min(starts, key=lambda s: abs(s - (TSS - 30))) if starts else None


def mutate(sequence: str, start: int) -> str:
    return sequence[:start] + sequence[start : start + BOX].translate(TRANSVERSION) + sequence[start + BOX :]


def describe(values: np.ndarray) -> str:
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return (f"{values.mean():+.4f} | {median:+.4f} | [{q1:+.4f}, {q3:+.4f}] | {np.mean(values < 0):.0%} | "
            f"{np.mean(values < -0.1):.0%}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT / "data/promoter/human_tata_genomic/test.tsv"))
    parser.add_argument("--model", default="promoter-human")
    parser.add_argument("--n", type=int, default=200, help="promoters (those with a TATA box, in file order)")
    parser.add_argument("--ism", type=int, default=3, help="promoters for the saturation mutagenesis")
    parser.add_argument("--plot", default=str(ROOT / "docs/variants_ism.png"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    import mxdna_cli as mx
    from mxdna_cli.engine.ism import IsmResult, plot_ism

    torch.set_num_threads(1)
    path = Path(args.data)
    if not path.is_file():
        sys.exit(f"{path}: not found; build it with `python scripts/build_promoter_datasets.py`")
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    promoters = [seq for seq, label in rows if label == "promoter"]
    boxed = [(seq, tata_start(seq)) for seq in promoters]
    boxed = [(seq, start) for seq, start in boxed if start is not None][: args.n]
    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {len(promoters)} promoters, "
          f"{sum(tata_start(s) is not None for s in promoters)} with a TATA box at -40..-20; using {len(boxed)}\n")

    rng = np.random.default_rng(args.seed)
    model = mx.load(args.model, device="cpu", threads=1)
    column = model.labels.index("promoter")
    sequences, controls = [], []
    for seq, start in boxed:
        allowed = [p for p in range(len(seq) - BOX + 1) if p + BOX <= start or p >= start + BOX]
        control = int(rng.choice(allowed))
        controls.append(control)
        sequences += [seq, mutate(seq, start), mutate(seq, control)]
    started = time.perf_counter()
    probs = model.predict_proba(sequences)[:, column].reshape(-1, 3).astype(np.float64)
    seconds = time.perf_counter() - started
    tata = probs[:, 1] - probs[:, 0]
    random = probs[:, 2] - probs[:, 0]
    difference = tata - random
    boot = [np.mean(rng.choice(difference, len(difference))) for _ in range(2000)]
    print(f"model {model.name} (sha256 {model.loaded.info.sha256[:12]}...), {len(sequences)} sequences in {seconds:.0f} s\n")
    print(f"reference P(promoter): mean {probs[:, 0].mean():.3f}, median {np.median(probs[:, 0]):.3f}\n")
    print("| mutation (7 bp) | mean dP | median dP | IQR | share dP < 0 | share dP < -0.1 |")
    print("|---|---|---|---|---|---|")
    print(f"| TATA box | {describe(tata)} |")
    print(f"| random position | {describe(random)} |")
    print(f"| TATA - random (paired) | {describe(difference)} |\n")
    print(f"paired difference TATA - random: mean {difference.mean():+.4f}, 95% bootstrap CI "
          f"[{np.percentile(boot, 2.5):+.4f}, {np.percentile(boot, 97.5):+.4f}]; TATA lower than random in "
          f"{np.mean(difference < 0):.0%} of {len(difference)} promoters (n = {len(difference)})\n")

    print("| promoter | P(promoter) | mean importance: TATA box | initiator (-2..+4) | elsewhere | top-10 bases in TATA/Inr |")
    print("|---|---|---|---|---|---|")
    drawn: list[int] = []
    for k, (seq, start) in enumerate(boxed[: args.ism]):
        result = model.ism(seq)
        importance = -result.mean
        box = np.zeros(len(seq), bool)
        box[start : start + BOX] = True
        inr = np.zeros(len(seq), bool)
        inr[INR[0] : INR[1]] = True
        top = np.argsort(-importance)[:10]
        print(f"| test promoter {k + 1} (TATA at {start - TSS}) | {probs[k, 0]:.3f} | {importance[box].mean():+.4f} | "
              f"{importance[inr].mean():+.4f} | {importance[~box & ~inr].mean():+.4f} | "
              f"{np.sum(box[top] | inr[top])}/10 |")
        if args.plot and not drawn and probs[k, 0] < 0.9:
            # the first promoter whose probability is not saturated (near 1 a base can barely move it),
            # drawn from -80 to +40 so that the letters can be read
            drawn.append(k)
            a, b = TSS - 80, TSS + 41
            view = IsmResult(result.sequence[a:b], result.delta[a:b], result.score, "TSS-relative", a - TSS - 1)
            plot_ism(view, args.plot, f"{model.name}: ISM of held-out human TATA promoter {k + 1} (test split), "
                                      f"-80..+40 around the TSS (0); TATA box at {start - TSS}",
                     xlabel="position relative to the TSS (0 = TSS)")
    if drawn:
        print(f"\n{args.plot}: test promoter {drawn[0] + 1}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
