"""The ``volume`` suite: metrics per volume, the form the volume benchmarks publish (Behrendt et
al.: Dice and AUPRC per volume, threshold chosen on validation; Frotscher et al. 2025: a threshold
fixed at a voxel false-positive rate on healthy validation data).

A volume is a subject's slices of one stratum (one sequence of one source), stacked back in the
order of the split; a pooled Dice lets big lesions dominate, a mean over volumes weights every
patient alike. Rows (family ``volume``, domain ``all``):

* ``volume_dice``: Dice of each lesion volume (one with lesion voxels) at the threshold that
  maximises the pooled Dice on validation (the localisation suite's, so both read one operating
  point), as the mean over lesion volumes with their sd (``std``) and a bootstrap CI over subjects;
* ``volume_auprc``: voxel AUPRC (step-wise AP, in the brain) of each lesion volume, mean ± sd;
* ``volume_dice_oracle``: the mean Dice over the same lesion volumes at the one threshold that
  maximises that mean on test: the upper bound of ``volume_dice`` (its candidates include the
  validation threshold), so the two read one population;
* ``volume_dice_fpr``: Dice per lesion volume at the threshold that :data:`FIXED_FPR` of the
  healthy validation voxels (in the brain, outside any lesion) exceed;
* ``volume_auroc``: detection AUROC over volumes (lesion volume = one with a tumor slice), a
  volume's score aggregating its slices' scores by the :data:`AGGREGATES` entry with the best
  validation volume AUROC (``max`` when validation volumes hold one label only).

The map rows need anomaly maps and masks; ``volume_auroc`` needs scores only. Data whose images
are each their own subject (2D folders) hold no volumes, and the suite writes nothing for them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from harness.metrics.bootstrap import auroc_ap, bootstrap_counts, percentile_interval, weighted_auroc_ap
from harness.metrics.detection import choose_dice_threshold
from harness.metrics.localisation_suite import with_label_rule
from harness.metrics.suite import MethodEvaluation, MetricInfo, MetricSuite, metric_row, register_metric_suite

__all__ = ["AGGREGATES", "FIXED_FPR", "ORACLE_CANDIDATES", "VOLUME_INFOS", "VolumeSuite", "fpr_threshold",
           "oracle_volume_dice", "per_volume_dice", "volume_index"]

ORACLE_CANDIDATES = 256  # thresholds at quantiles of the lesion volumes' in-brain map values
FIXED_FPR = 0.01  # Frotscher et al. fix 1% on healthy T2 validation voxels
AGGREGATES: dict[str, Callable[[np.ndarray], float]] = {
    "max": lambda s: float(np.max(s)), "mean": lambda s: float(np.mean(s)),
    "p90": lambda s: float(np.percentile(s, 90))}

VOLUME_INFOS = (
    MetricInfo("volume_dice", "Dice per lesion volume", "volume", higher_is_better=True, summarised=True),
    MetricInfo("volume_dice_oracle", "Dice per lesion volume (oracle threshold)", "volume", higher_is_better=True),
    MetricInfo("volume_auprc", "Voxel AUPRC per lesion volume", "volume", higher_is_better=True),
    MetricInfo("volume_dice_fpr", f"Dice per lesion volume at {FIXED_FPR:.0%} healthy FPR", "volume",
               higher_is_better=True),
    MetricInfo("volume_auroc", "Volume AUROC", "volume", higher_is_better=True, summarised=True),
)


def volume_index(subjects: Sequence[str], strata: Sequence[str]) -> dict[tuple[str, str], np.ndarray]:
    """(subject, stratum) -> indices of its images, in split order; empty when every image is its
    own subject (no volumes)."""
    out: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(zip(subjects, strata)):
        out.setdefault(key, []).append(i)
    if len(set(subjects)) == len(subjects):
        return {}
    return {k: np.asarray(v) for k, v in out.items()}


def per_volume_dice(maps: np.ndarray, masks: np.ndarray, brain: np.ndarray,
                    volumes: dict[tuple[str, str], np.ndarray], threshold: float) -> dict[tuple[str, str], float]:
    """Dice of ``map >= threshold`` (in the brain) against the mask, per volume with lesion voxels."""
    out = {}
    for key, idx in volumes.items():
        truth = masks[idx]
        if truth.any():
            pred = (maps[idx] >= threshold) & brain[idx]
            out[key] = float(2.0 * (pred & truth).sum() / (pred.sum() + truth.sum()))
    return out


def oracle_volume_dice(maps: np.ndarray, masks: np.ndarray, brain: np.ndarray,
                       volumes: dict[tuple[str, str], np.ndarray],
                       also: float | None = None) -> tuple[float, float] | None:
    """(threshold, mean Dice over lesion volumes) at the candidate threshold with the highest mean:
    :data:`ORACLE_CANDIDATES` quantiles of the lesion volumes' in-brain values plus ``also`` (the
    validation threshold, so the result bounds the validation-threshold mean). None without
    lesion volumes."""
    lesion = [idx for idx in volumes.values() if masks[idx].any()]
    if not lesion:
        return None
    values = np.concatenate([maps[idx][brain[idx]] for idx in lesion])
    candidates = np.unique(np.quantile(values, np.linspace(0.0, 1.0, ORACLE_CANDIDATES)))
    if also is not None:
        candidates = np.append(candidates, also)
    dice = np.zeros(candidates.size)
    for idx in lesion:
        inside = brain[idx]
        v, truth = maps[idx][inside], masks[idx][inside]
        outside_lesion = int(masks[idx].sum() - truth.sum())  # mask voxels outside the brain still count
        order = np.argsort(-v, kind="stable")
        hits = np.concatenate([[0], np.cumsum(truth[order])])
        n_pred = np.searchsorted(-v[order], -candidates, side="right")  # voxels with value >= t
        dice += 2.0 * hits[n_pred] / (n_pred + truth.sum() + outside_lesion)
    dice /= len(lesion)
    best = int(np.argmax(dice))
    return float(candidates[best]), float(dice[best])


def fpr_threshold(maps: np.ndarray, masks: np.ndarray | None, brain: np.ndarray, fpr: float) -> float | None:
    """The map value that a share ``fpr`` of the healthy voxels (in the brain, outside lesions) exceed."""
    healthy = brain if masks is None else brain & ~masks
    values = maps[healthy]
    if values.size == 0 or not np.all(np.isfinite(values)):
        return None
    return float(np.quantile(values, 1.0 - fpr))


@register_metric_suite("volume")
class VolumeSuite(MetricSuite):
    needs = frozenset({"scores"})
    infos = VOLUME_INFOS

    def rows(self, ev: MethodEvaluation) -> list[dict]:
        test_volumes = volume_index(ev.subjects, ev.strata)
        val_volumes = volume_index(ev.val_subjects, ev.val_strata)
        if not test_volumes:
            return []
        rows = [self._auroc(ev, test_volumes, val_volumes)]
        if ev.test_out.maps is not None and ev.test.masks is not None:
            rows += with_label_rule(self._maps(ev, test_volumes), ev.label_rule)
        return rows

    @staticmethod
    def _auroc(ev: MethodEvaluation, test_volumes: dict, val_volumes: dict) -> dict:
        name, how = "max", "max (validation volumes hold one label)"
        val_labels = _volume_labels(ev.val.labels.numpy(), val_volumes)
        if np.unique(val_labels).size == 2:
            val_scores = np.asarray(ev.val_out.scores, dtype=float)
            fits = {k: auroc_ap(_aggregate(val_scores, val_volumes, f), val_labels)[0] for k, f in AGGREGATES.items()}
            name = max(fits, key=lambda k: fits[k])
            how = f"{name} (validation volume AUROC {fits[name]:.3f})"
        labels = _volume_labels(ev.test.labels.numpy(), test_volumes)
        scores = _aggregate(np.asarray(ev.test_out.scores, dtype=float), test_volumes, AGGREGATES[name])
        n = int(labels.size)
        if np.unique(labels).size < 2:
            return metric_row(ev.method, "volume_auroc", None, n=n, note="not computed: the test volumes hold one label")
        subjects = [key[0] for key in test_volumes]
        weights = bootstrap_counts(labels, subjects, ev.settings.bootstrap, np.random.default_rng(ev.seed))
        low, high = percentile_interval(weighted_auroc_ap(scores, labels, weights)[0], ev.settings.ci)
        return metric_row(ev.method, "volume_auroc", auroc_ap(scores, labels)[0], ci_low=low, ci_high=high, n=n,
                          note=f"{n} volumes; a volume's score: its slices' {how}")

    @staticmethod
    def _maps(ev: MethodEvaluation, volumes: dict) -> list[dict]:
        maps = np.asarray(ev.test_out.maps, dtype=float).reshape(len(ev.test), *ev.test.images.shape[-2:])
        masks, brain = (x.numpy().reshape(maps.shape).astype(bool) for x in (ev.test.masks, ev.test.brain))
        val_maps = None if ev.val_out.maps is None else np.asarray(ev.val_out.maps, dtype=float)
        val_brain = ev.val.brain.numpy().astype(bool)
        val_masks = None if ev.val.masks is None else ev.val.masks.numpy().astype(bool)
        if val_maps is not None:
            val_maps = val_maps.reshape(val_brain.shape)
        if not np.all(np.isfinite(maps)):
            note = "not computed: the maps have non-finite values"
            return [metric_row(ev.method, m, None, note=note)
                    for m in ("volume_dice", "volume_dice_oracle", "volume_auprc", "volume_dice_fpr")]
        ap = {}
        for key, idx in volumes.items():
            inside = brain[idx]
            if (masks[idx] & inside).any():
                ap[key] = auroc_ap(maps[idx][inside], masks[idx][inside])[1]
        rows = [_mean_row(ev, "volume_auprc", ap, "voxel AP in the brain")]
        none = "not computed: no validation maps and masks to fix the threshold on"
        dice_t = None if val_maps is None or val_masks is None else \
            choose_dice_threshold(val_maps, val_masks, val_brain.reshape(val_maps.shape))
        rows.append(_mean_row(ev, "volume_dice", per_volume_dice(maps, masks, brain, volumes, dice_t),
                              f"threshold {dice_t:.6g} chosen on validation (pooled Dice)")
                    if dice_t is not None else metric_row(ev.method, "volume_dice", None, note=none))
        oracle = oracle_volume_dice(maps, masks, brain, volumes, dice_t)
        rows.append(_mean_row(ev, "volume_dice_oracle", per_volume_dice(maps, masks, brain, volumes, oracle[0]),
                              f"threshold {oracle[0]:.6g} chosen on test: the upper bound of volume_dice, "
                              "not a result") if oracle is not None else
                    metric_row(ev.method, "volume_dice_oracle", None, n=0,
                               note="not computed: no lesion volume in the test split"))
        fpr_t = None if val_maps is None else fpr_threshold(val_maps, None if val_masks is None else
                                                            val_masks.reshape(val_maps.shape),
                                                            val_brain.reshape(val_maps.shape), FIXED_FPR)
        rows.append(_mean_row(ev, "volume_dice_fpr", per_volume_dice(maps, masks, brain, volumes, fpr_t),
                              f"threshold {fpr_t:.6g}: {FIXED_FPR:.0%} of healthy validation voxels above it")
                    if fpr_t is not None else metric_row(ev.method, "volume_dice_fpr", None, note=none))
        return rows


def _volume_labels(labels: np.ndarray, volumes: dict) -> np.ndarray:
    return np.array([int(np.any(labels[idx] == 1)) for idx in volumes.values()], dtype=int)


def _aggregate(scores: np.ndarray, volumes: dict, how: Callable[[np.ndarray], float]) -> np.ndarray:
    return np.array([how(scores[idx]) for idx in volumes.values()], dtype=float)


def _mean_row(ev: MethodEvaluation, metric: str, values: dict[tuple[str, str], float], how: str) -> dict:
    """Mean ± sd over lesion volumes, with a percentile CI from resampling their subjects."""
    if not values:
        return metric_row(ev.method, metric, None, n=0, note="not computed: no lesion volume in the test split")
    x = np.array(list(values.values()))
    subjects = [key[0] for key in values]
    weights = bootstrap_counts(np.ones(x.size, dtype=int), subjects, ev.settings.bootstrap,
                               np.random.default_rng(ev.seed)).astype(float)
    low, high = percentile_interval((weights @ x) / weights.sum(axis=1), ev.settings.ci)
    sd = float(x.std(ddof=1)) if x.size > 1 else None
    spread = f"{x.mean():.3f} ± {sd:.3f}" if sd is not None else f"{x.mean():.3f}"
    return metric_row(ev.method, metric, float(x.mean()), std=sd, ci_low=low, ci_high=high, n=int(x.size),
                      note=f"{spread} (mean ± sd over {x.size} lesion volumes); {how}")
