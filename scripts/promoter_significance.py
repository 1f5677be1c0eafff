#!/usr/bin/env python
"""Is a classifier's lead or lag against the promoter baselines on each test split real, or within
what a test split of that size can tell apart? A paired bootstrap per dataset.

    python scripts/promoter_significance.py [-m promoter-eukaryote] [--data data/promoter] \\
        [--datasets ...] [--models kmer_lr cnn] [--resamples 2000] [--threads 1] \\
        [--out docs/promoter_significance.tsv]

For each dataset the baselines are refitted exactly as scripts/promoter_baselines.py fits them
(`baselines_promoter.run_promoter_baselines`: the 6-mer LR with C chosen on the valid split; the
CNN with early stopping on it, `--models cnn`, minutes), the classifier scores the test split, and `metrics.paired_bootstrap` resamples the test
examples (the same resample for both models) to give the MCC and AUROC difference, classifier
minus baseline, with its 95% interval and the share of resamples the classifier wins. Only test
splits are scored, and nothing is chosen from the result.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_promoter_datasets import DATASETS  # noqa: E402

COLUMNS = ("dataset", "n", "baseline", "model_mcc", "baseline_mcc", "mcc_difference", "mcc_low", "mcc_high",
           "mcc_model_better", "model_auroc", "baseline_auroc", "auroc_difference", "auroc_low", "auroc_high",
           "auroc_model_better", "baseline_valid_mcc")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--model", default="promoter-eukaryote", help="classifier name or folder")
    parser.add_argument("--data", default="data/promoter")
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument("--models", nargs="+", default=["kmer_lr"], choices=["kmer_lr", "cnn"])
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="docs/promoter_significance.tsv")
    args = parser.parse_args(argv)

    from mxdna_cli.io.writers import atomic_output
    from mxdna_cli.train.baselines_promoter import load_split_tables, run_promoter_baselines
    from mxdna_cli.train.metrics import classification_metrics, paired_bootstrap
    from mxdna_cli.train.scoring import predict_probabilities
    from mxdna_cli.weights import load_model, resolve_model

    torch.set_num_threads(args.threads)
    model, info = load_model(resolve_model(args.model, task="classification"))
    strand = info.extra.get("eval_strand", "forward")
    rows = []
    for dataset in args.datasets:
        data = load_split_tables(Path(args.data) / dataset, info.labels)
        scored = predict_probabilities(model, data.sequences["test"], batch_size=64, strand=strand)
        mine = classification_metrics(data.y["test"], scored)
        for baseline, theirs in run_promoter_baselines(data, seed=args.seed, models=args.models).items():
            probabilities = theirs["test_probabilities"]
            result = paired_bootstrap(data.y["test"], scored, probabilities, resamples=args.resamples,
                                      seed=args.seed)
            row = {"dataset": dataset, "n": len(data.y["test"]), "baseline": baseline,
                   "baseline_valid_mcc": theirs["validation_mcc"]}
            for metric in ("mcc", "auroc"):
                difference = result[metric]
                row.update({f"model_{metric}": mine[metric], f"baseline_{metric}": theirs[metric],
                            f"{metric}_difference": difference["difference"], f"{metric}_low": difference["low"],
                            f"{metric}_high": difference["high"], f"{metric}_model_better": difference["a_better"]})
            rows.append(row)
            print(f"{dataset:24s} vs {baseline:7s}: MCC {row['mcc_difference']:+.4f} "
                  f"[{row['mcc_low']:+.4f}, {row['mcc_high']:+.4f}] (model ahead in {row['mcc_model_better']:.0%}); "
                  f"AUROC {row['auroc_difference']:+.4f} [{row['auroc_low']:+.4f}, {row['auroc_high']:+.4f}] "
                  f"({row['auroc_model_better']:.0%})", file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(str(out)) as handle:
        handle.write(f"# model {info.name} sha256 {info.sha256}; paired bootstrap, {args.resamples} resamples, "
                     f"seed {args.seed}, 95% intervals of (model - baseline) on each test split\n")
        handle.write("\t".join(COLUMNS) + "\n")
        for row in rows:
            handle.write("\t".join(f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c]) for c in COLUMNS)
                         + "\n")
    print(f"-> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
