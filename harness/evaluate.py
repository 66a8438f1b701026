"""Turn one method's outputs into the rows and files of the run folder.

The runner calls these after a method has been fitted: every metric comes from a registered
metric suite (:mod:`harness.metrics.suite`), never from the method, so all methods are measured
the same way; here the suites that apply are chosen and run, and their rows checked.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from harness.api import LABELS, NO_TUMOR, TUMOR, ImageSet, Method, ScoreOutput
from harness.metric_info import MetricInfo
from harness.metrics.generative import Translations
from harness.metrics.suite import MethodEvaluation, MetricSuite, RunEvaluation, needs_met
from harness.registry import METRICS, metric_suites
from harness.results import ROW_KEYS

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


def method_suites(capabilities: Iterable[str]) -> list[type[MetricSuite]]:
    """The method-scope suites whose needs a method with these capabilities meets, in run order."""
    met = needs_met(capabilities)
    return [s for s in metric_suites() if s.scope == "method" and s.needs <= met]


def run_suites() -> list[type[MetricSuite]]:
    """The run-scope suites, in run order."""
    return [s for s in metric_suites() if s.scope == "run"]


def run_infos(capabilities: Iterable[Iterable[str]]) -> dict[str, MetricInfo]:
    """The metrics.json ``metrics`` block of a run whose methods have these capabilities: the
    infos of every suite that runs for them and of the run-scope suites, in run order."""
    suites = {s for caps in capabilities for s in method_suites(caps)}
    chosen = [s for s in metric_suites() if s in suites or s.scope == "run"]
    return {info.id: info for s in chosen for info in s.infos}


def _suite_rows(suite: type[MetricSuite], ev: MethodEvaluation | RunEvaluation) -> list[dict]:
    """The suite's rows, refused unless each has the one row shape and a metric its infos declare."""
    rows = suite().rows(ev)
    if any(not isinstance(r, dict) or list(r) != list(ROW_KEYS) for r in rows):
        raise ValueError(f"metric suite {suite.name!r} wrote a row not made with harness.results.metric_row")
    stray = sorted({str(r["metric"]) for r in rows} - {info.id for info in suite.infos})
    if stray:
        raise ValueError(f"metric suite {suite.name!r} wrote rows of metric(s) {', '.join(stray)} that its infos "
                         f"do not declare")
    return rows


class LazyTranslations:
    """``MethodEvaluation.translations``: the method's test translations, made on first call
    (by :func:`translate_test`) and timed, so a run whose suites need none translates nothing."""

    def __init__(self, method: Method, test: ImageSet, groups: Sequence[str] | None) -> None:
        self._args = (method, test, groups)
        self._value: Translations | None = None
        self.seconds: float | None = None

    def __call__(self) -> Translations:
        if self._value is None:
            t = time.perf_counter()
            self._value = translate_test(*self._args)
            self.seconds = time.perf_counter() - t
        return self._value


def evaluate_method(ev: MethodEvaluation, suites: Sequence[type[MetricSuite]]) -> tuple[list[dict], dict]:
    """Every suite's rows, in order, and the seconds of two of run.json's stages: ``translate``
    (None when no suite asked for translations) and, when a suite needs translations,
    ``generative`` (those suites, translating apart)."""
    rows: list[dict] = []
    generative = 0.0
    for suite in suites:
        t = time.perf_counter()
        rows += _suite_rows(suite, ev)
        if "translations" in suite.needs:
            generative += time.perf_counter() - t
    translate = getattr(ev.translations, "seconds", None)
    stages: dict[str, float | None] = {"translate": None if translate is None else round(translate, 3)}
    if any("translations" in suite.needs for suite in suites):
        stages["generative"] = round(generative - (translate or 0.0), 3)
    return rows, stages


def suite_load_notes() -> list[str]:
    """Why a registered metric suite is missing from the run: it failed to import or to register
    (a plugin with a typo in its needs), so the run's notes say so rather than drop it silently."""
    metric_suites()
    return [f"metric suite {name} not loaded: {error}" for name, error in METRICS.load_errors.items()]


def evaluate_run(ev: RunEvaluation) -> list[dict]:
    """The rows of every run-scope suite, in order."""
    return [row for suite in run_suites() for row in _suite_rows(suite, ev)]


def is_run_row(row: Mapping, methods: Iterable[str]) -> bool:
    """A row of a run-scope suite, which the runner recomputes after every (resumed) run: it is
    of no method of the run (the shortcut floor), or of a metric no method-scope suite writes
    (the paired differences)."""
    per_method = {info.id for s in metric_suites() if s.scope == "method" for info in s.infos}
    return row.get("method") not in set(methods) or row.get("metric") not in per_method


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
