"""Bootstrap AUROC/AP: the vectorised weighted evaluation vs a scikit-learn loop (the baseline).

Run: ``python benchmarks/bench_bootstrap.py [--n N] [--boot B]``. Prints both timings and
their ratio, measured in the same process, and checks the two agree.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from harness.metrics.detection import stratified_counts, weighted_auroc_ap


def main(n: int = 300, n_boot: int = 1000) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    s = rng.normal(size=n) + y
    counts = stratified_counts(y, n_boot, np.random.default_rng(1))

    t = time.perf_counter()
    base = np.array([(roc_auc_score(y, s, sample_weight=w), average_precision_score(y, s, sample_weight=w))
                     for w in counts])
    t_base = time.perf_counter() - t

    t = time.perf_counter()
    auroc, ap = weighted_auroc_ap(s, y, counts)
    t_fast = time.perf_counter() - t

    assert np.allclose(base[:, 0], auroc) and np.allclose(base[:, 1], ap)
    print(f"n={n} replicates={n_boot}: sklearn loop {t_base:.3f} s, weighted {t_fast:.3f} s, "
          f"speed-up x{t_base / t_fast:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="scores (default 300)")
    parser.add_argument("--boot", type=int, default=1000, help="bootstrap replicates (default 1000)")
    args = parser.parse_args()
    main(args.n, args.boot)
