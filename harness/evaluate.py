"""Turn one method's outputs into the rows and files of the run folder.

The runner calls these after a method has been fitted; every metric is computed here, never
by the method, so all methods are measured the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from harness.api import LABELS, NO_TUMOR, TUMOR, ImageSet, Method, ScoreOutput
from harness.config import MetricSettings
from harness.data.input_audit import choose_feature, input_features
from harness.metrics.detection import (Estimate, choose_dice_threshold, dice_at_threshold, image_detection,
                                       pixel_detection)
from harness.metrics.generative import Translations
from harness.metrics.paired import PAIRED_METRICS, paired_rows
from harness.results import FLOOR_METHOD, SCORES_COLUMNS, STRATUM_PREFIX, metric_row

EXAMPLES_PER_KIND = 4  # best and worst cases per domain in examples/<method>.npz


def check_output(method: str, split: str, images: ImageSet, out: ScoreOutput) -> None:
    """A method's ScoreOutput must match its input; a mismatch is the method's bug."""
    n = len(images)
    scores = np.asarray(out.scores)
    if scores.shape != (n,):
        raise ValueError(f"{method}.score({split}) returned scores of shape {scores.shape}, expected ({n},)")
    if out.maps is not None:
        want = (n, *images.images.shape[-2:])
        if tuple(np.asarray(out.maps).shape) != want:
            raise ValueError(f"{method}.score({split}) returned maps of shape "
                             f"{tuple(np.asarray(out.maps).shape)}, expected {want}")


def score_frame(method: str, split: str, images: ImageSet, out: ScoreOutput) -> pd.DataFrame:
    """Rows of scores.csv for one split."""
    return pd.DataFrame({
        "method": method, "split": split, "id": list(images.ids),
        "label": images.labels.numpy().astype(int),
        "score": np.asarray(out.scores, dtype=np.float64),
    })


def _rows(method: str, estimates: list[Estimate], domain: str = "all") -> list[dict]:
    return [metric_row(method, e.metric, e.value, domain=domain, ci_low=e.ci_low, ci_high=e.ci_high, n=e.n,
                       note=e.note) for e in estimates]


def detection_rows(method: str, val: ImageSet, test: ImageSet, val_out: ScoreOutput,
                   test_out: ScoreOutput, settings: MetricSettings, seed: int,
                   test_subjects: list[str] | None = None) -> tuple[list[dict], float | None]:
    """Image-level rows on test (threshold from val) and the threshold; with ``test_subjects``
    the CIs resample subjects."""
    estimates, threshold = image_detection(val.labels.numpy(), np.asarray(val_out.scores),
                                           test.labels.numpy(), np.asarray(test_out.scores),
                                           settings, seed, test_subjects)
    return _rows(method, estimates), threshold


def _strata_names(strata: np.ndarray, n: int) -> list[str]:
    """The named strata of the test split; empty unless there are two or more."""
    if strata.shape != (n,):
        raise ValueError(f"{len(strata)} strata for {n} test images")
    names = sorted(set(strata.tolist()) - {""})
    return names if len(names) >= 2 else []


def stratum_rows(method: str, val: ImageSet, test: ImageSet, val_out: ScoreOutput, test_out: ScoreOutput,
                 test_strata: list[str], settings: MetricSettings, seed: int,
                 test_subjects: list[str] | None = None) -> list[dict]:
    """Image-level rows per acquisition stratum of the test split (domain ``stratum:<name>``).

    An overall AUROC can hide a method that fails on one sequence or scanner; the threshold
    stays the one chosen on all of validation, so each stratum is read at the operating point a
    user would deploy. Nothing is returned unless the test split holds two or more strata.
    """
    strata = np.asarray(test_strata, dtype=str)
    labels, scores = test.labels.numpy(), np.asarray(test_out.scores)
    subjects = None if test_subjects is None else np.asarray(test_subjects, dtype=str)
    rows = []
    for name in _strata_names(strata, len(test)):
        members = strata == name
        estimates, _ = image_detection(val.labels.numpy(), np.asarray(val_out.scores), labels[members],
                                       scores[members], settings, seed,
                                       None if subjects is None else subjects[members])
        rows += _rows(method, estimates, domain=f"{STRATUM_PREFIX}{name}")
    return rows


def pixel_rows(method: str, test: ImageSet, test_out: ScoreOutput, settings: MetricSettings,
               seed: int, test_subjects: list[str] | None = None, *, val: ImageSet | None = None,
               val_out: ScoreOutput | None = None, test_strata: list[str] | None = None) -> list[dict]:
    """Pixel AUROC/AP, the oracle Dice, and ``dice`` at the threshold that maximises Dice on
    ``val`` (overall and, with ``test_strata``, per stratum); rows with a note when maps or
    masks are missing."""
    if test.masks is None or test_out.maps is None:
        missing = "ground-truth masks" if test.masks is None else "anomaly maps"
        note = f"not computed: the test set has no {missing}"
        return [metric_row(method, m, None, n=len(test), note=note)
                for m in ("pixel_auroc", "pixel_ap", "dice", "dice_oracle")]
    maps, masks, brain = np.asarray(test_out.maps), test.masks.numpy(), test.brain.numpy()
    labels = test.labels.numpy()
    rows = _rows(method, pixel_detection(maps, masks, brain, labels, settings, seed, groups=test_subjects))
    if val is None or val_out is None or val.masks is None or val_out.maps is None:
        return rows + [metric_row(method, "dice", None, n=len(test),
                                  note="not computed: no validation maps and masks to fix the threshold on")]
    threshold = choose_dice_threshold(np.asarray(val_out.maps), val.masks.numpy(), val.brain.numpy())
    rows += _rows(method, [dice_at_threshold(maps, masks, brain, labels, threshold, settings, seed, test_subjects)])
    strata = np.asarray(test_strata if test_strata is not None else [""] * len(test), dtype=str)
    subjects = None if test_subjects is None else np.asarray(test_subjects, dtype=str)
    for name in _strata_names(strata, len(test)):
        members = strata == name
        estimate = dice_at_threshold(maps[members], masks[members], brain[members], labels[members], threshold,
                                     settings, seed, None if subjects is None else subjects[members])
        rows += _rows(method, [estimate], domain=f"{STRATUM_PREFIX}{name}")
    return rows


def shortcut_floor(val: ImageSet, test: ImageSet, subjects: Mapping[str, str],
                   positions: Mapping[str, float] | None, settings: MetricSettings,
                   seed: int, strata: Mapping[str, str] | None = None) -> tuple[list[dict], pd.DataFrame]:
    """Rows (method :data:`FLOOR_METHOD`) and per-image scores (val and test) of the input feature
    that best separates the labels on validation, its direction chosen there too, scored on test
    like a method (:mod:`harness.data.input_audit`), overall and, with ``strata``, per stratum. A
    method that does not beat it has not shown that it needs to find the lesion."""
    fv, ft = input_features(val, positions), input_features(test, positions)
    usable = {name: fv[name] for name in fv if np.all(np.isfinite(ft[name]))}  # it must score every test image
    chosen = choose_feature(val.labels.numpy(), usable)
    if chosen is None:
        note = "not computed: no input feature varies on validation (with both labels) and is known on test"
        return ([metric_row(FLOOR_METHOD, m, None, n=len(test), note=note) for m in ("auroc", "ap")],
                pd.DataFrame(columns=list(SCORES_COLUMNS)))
    name, val_auroc = chosen
    sign = 1.0 if val_auroc >= 0.5 else -1.0
    val_out, test_out = ScoreOutput(sign * fv[name]), ScoreOutput(sign * ft[name])
    estimates, _ = image_detection(val.labels.numpy(), val_out.scores, test.labels.numpy(), test_out.scores,
                                   settings, seed, [subjects.get(i, i) for i in test.ids])
    what = (f"shortcut floor: input feature {name}, {'higher' if sign > 0 else 'lower'} = tumor, chosen on "
            f"validation (val AUROC {max(val_auroc, 1 - val_auroc):.3f})")
    rows = [metric_row(FLOOR_METHOD, e.metric, e.value, ci_low=e.ci_low, ci_high=e.ci_high, n=e.n,
                       note=f"{what}; {e.note}" if e.note else what) for e in estimates]
    rows += stratum_rows(FLOOR_METHOD, val, test, val_out, test_out, [(strata or {}).get(i, "") for i in test.ids],
                         settings, seed, [subjects.get(i, i) for i in test.ids])
    frames = [score_frame(FLOOR_METHOD, "val", val, val_out), score_frame(FLOOR_METHOD, "test", test, test_out)]
    return rows, pd.concat(frames, ignore_index=True)


def is_comparison_row(row: dict) -> bool:
    """Rows of :func:`comparison_rows`, which the runner recomputes after every method ran."""
    return row.get("method") == FLOOR_METHOD or row.get("metric") in PAIRED_METRICS


def comparison_rows(scores: pd.DataFrame, val: ImageSet, test: ImageSet, subjects: Mapping[str, str],
                    positions: Mapping[str, float] | None, settings: MetricSettings, seed: int,
                    strata: Mapping[str, str] | None = None) -> list[dict]:
    """The run-level rows, computed once all methods ran: the shortcut floor, and the paired
    differences (``auroc_delta``, ``ap_delta``) of every ordered pair among the methods in
    ``scores`` (scores.csv) and the floor, on the same test images and subject resamples."""
    floor_rows, floor_scores = shortcut_floor(val, test, subjects, positions, settings, seed, strata)
    frames = [f for f in (scores, floor_scores) if len(f)]
    both = pd.concat(frames, ignore_index=True) if frames else scores
    return floor_rows + paired_rows(both, subjects, settings, seed)


def _pick_examples(scores: np.ndarray, higher_is_better: bool, k: int,
                   subjects: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Indices of up to ``k`` best then up to ``k`` worst cases, best first, each from a subject
    not shown yet (four neighbouring slices of one subject say less than four subjects); no image
    is both. With fewer subjects than rows, the rest of the rows stay empty rather than repeat."""
    order = np.argsort(-scores if higher_is_better else scores, kind="stable")
    n_best = min(k, (order.size + 1) // 2)
    best = _distinct_subjects(order, subjects, n_best, taken=set())
    rest = np.array([i for i in order if i not in set(best.tolist())], dtype=order.dtype)
    worst = _distinct_subjects(rest[::-1], subjects, min(k, rest.size), taken=set())
    return np.concatenate([best, worst]), ["best"] * best.size + ["worst"] * worst.size


def _distinct_subjects(order: np.ndarray, subjects: Sequence[str], k: int, taken: set[str]) -> np.ndarray:
    picked = []
    for i in order:
        if len(picked) == k:
            break
        if subjects[i] not in taken:
            taken.add(subjects[i])
            picked.append(i)
    return np.array(picked, dtype=order.dtype)


def example_arrays(method: Method, test: ImageSet, test_out: ScoreOutput, subjects: Sequence[str] | None = None,
                   k: int = EXAMPLES_PER_KIND) -> dict[str, np.ndarray]:
    """The arrays of examples/<method>.npz (docs/results-schema.md); ``subjects`` (one per test
    image; None: each image its own) keeps best and worst cases on distinct subjects."""
    scores = np.asarray(test_out.scores, dtype=np.float64)
    subjects = list(test.ids) if subjects is None else list(subjects)
    arrays: dict[str, np.ndarray] = {}
    for label, domain in enumerate(LABELS):
        members = np.flatnonzero(test.labels.numpy() == label)
        if members.size == 0:
            continue
        picked, kinds = _pick_examples(scores[members], domain == TUMOR, k, [subjects[i] for i in members])
        index = members[picked]
        arrays[f"{domain}_real"] = test.images[index, 0].numpy().astype(np.float32)
        if "translates" in method.capabilities:
            # the other domain, or for a method that only reconstructs healthy images, that
            # reconstruction (a healthy slice's own: what the method deems normal in it)
            other = NO_TUMOR if domain == TUMOR else TUMOR
            target = other if other in method.translates_to else NO_TUMOR
            with torch.no_grad():
                moved = method.translate(test.images[index], target)
            arrays[f"{domain}_translated"] = moved.detach().float().cpu()[:, 0].numpy()
        if test_out.maps is not None:
            arrays[f"{domain}_map"] = np.asarray(test_out.maps)[index].astype(np.float32)
        if test.masks is not None:
            arrays[f"{domain}_mask"] = test.masks[index, 0].numpy().astype(bool)
        arrays[f"{domain}_ids"] = np.array([test.ids[i] for i in index], dtype=str)
        arrays[f"{domain}_scores"] = scores[index]
        arrays[f"{domain}_kind"] = np.array(kinds, dtype=str)
    return arrays


def translate_test(method: Method, test: ImageSet, groups: Sequence[str] | None = None) -> Translations:
    """For each domain the method translates into (``Method.translates_to``): the real test images
    of that domain and the other domain's test images translated into it, each with its subject
    group (``groups``, one per test image, e.g. ``subject_halves.subject_groups``; None: every
    image is its own subject, as in folder datasets without subject ids)."""
    groups = list(test.ids) if groups is None else [str(g) for g in groups]
    if len(groups) != len(test):
        raise ValueError(f"{len(groups)} subject groups for {len(test)} test images")
    members = {label: torch.nonzero(test.labels == i).flatten() for i, label in enumerate(LABELS)}
    real = {d: test.images[idx] for d, idx in members.items()}
    real_groups = {d: [groups[i] for i in idx.tolist()] for d, idx in members.items()}
    translated, source_groups = {}, {}
    with torch.no_grad():
        for domain in (TUMOR, NO_TUMOR):
            if domain not in method.translates_to:
                continue
            source = NO_TUMOR if domain == TUMOR else TUMOR
            images = real[source]
            moved = method.translate(images, domain).detach().float().cpu() if len(images) else images.clone()
            if moved.shape != images.shape:
                raise ValueError(f"{method.name}.translate returned shape {tuple(moved.shape)} "
                                 f"for input {tuple(images.shape)}")
            translated[domain] = moved.clamp(0, 1)
            source_groups[domain] = real_groups[source]
    return Translations(real, translated, real_groups, source_groups)
