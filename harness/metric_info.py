"""What a metric is, as the results record it: title, digits, direction, whether it is summarised
across seeds and which metric a paired difference compares.

Why a module of its own, with no numpy or torch: the report (``reports/``, built without the ML
stack) and the seed summary read these facts from a run's metrics.json (``"metrics"``: id ->
info), while the metric suites (:mod:`harness.metrics.suite`) declare them; neither side should
need the other's imports. Runs written before metrics.json carried infos hold only the built-in
metrics of :data:`SCHEMA1_METRICS`, which the reading side falls back to; ids renamed since
(:data:`RENAMED_METRICS`) are read under their current names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["MetricInfo", "RENAMED_METRICS", "SCHEMA1_METRICS", "infos_from_document", "infos_to_document",
           "merge_infos", "paired_infos", "summarised_infos", "with_seed_pairs"]


@dataclass(frozen=True)
class MetricInfo:
    """One metric id of metrics.json rows and how results show it.

    ``higher_is_better``: None for a metric without a direction (a chance level, a reference
    scale). ``summarised``: shown across seeds (``run --seeds``, grids, the report's index).
    ``paired_of``: for a paired difference (``method`` minus ``other``), the metric it compares.
    ``family``: the group a report shows it in ("detection", "localisation", "generative",
    "paired", or a plugin's own, which gets a table of its own on the run page).
    """

    id: str
    title: str
    family: str
    digits: int = 3
    higher_is_better: bool | None = None
    summarised: bool = False
    paired_of: str | None = None

    def __post_init__(self) -> None:
        if not self.id or not self.title or not self.family:
            raise ValueError(f"a MetricInfo needs an id, a title and a family: {self!r}")
        if self.digits < 0:
            raise ValueError(f"metric {self.id!r}: digits must be >= 0, not {self.digits}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricInfo:
        """The info of a metrics.json ``metrics`` entry; keys a newer harness added are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _info(id: str, title: str, family: str, **kw: Any) -> tuple[str, MetricInfo]:
    return id, MetricInfo(id, title, family, **kw)


# The built-in metrics as runs of schema version 1 written them, before metrics.json carried
# infos (those runs hold nothing else). Frozen: the suites declare today's infos themselves;
# change this table only to describe what old runs contain.
SCHEMA1_METRICS: Mapping[str, MetricInfo] = dict([
    _info("auroc", "AUROC", "detection", higher_is_better=True, summarised=True),
    _info("ap", "AP", "detection", higher_is_better=True, summarised=True),
    _info("sensitivity", "Sensitivity", "detection", higher_is_better=True),
    _info("specificity", "Specificity", "detection", higher_is_better=True),
    _info("balanced_accuracy", "Balanced acc.", "detection", higher_is_better=True),
    _info("ap_chance", "AP chance level", "detection"),
    _info("pixel_auroc", "Pixel AUROC", "localisation", higher_is_better=True, summarised=True),
    _info("pixel_ap", "Pixel AP", "localisation", higher_is_better=True),
    _info("dice", "Dice", "localisation", higher_is_better=True, summarised=True),
    _info("dice_oracle", "Dice (oracle threshold)", "localisation", higher_is_better=True),
    _info("fid", "FID", "generative", digits=2, higher_is_better=False),
    _info("fid_reference", "Reference FID (real vs real)", "generative", digits=2),
    _info("fid_relative", "Relative FID", "generative", higher_is_better=False),
    _info("kid", "KID", "generative", digits=4, higher_is_better=False),
    _info("is", "IS", "generative", higher_is_better=True),
    _info("target_rate", "Target rate", "generative", higher_is_better=True),
    _info("target_rate_reference", "Target rate of real images (reference)", "generative"),
    _info("auroc_delta", "Δ AUROC", "paired", higher_is_better=True, paired_of="auroc"),
    _info("ap_delta", "Δ AP", "paired", higher_is_better=True, paired_of="ap"),
])


# Metric ids renamed since runs were first written: old id -> the current info. Readers rename
# the old rows (harness.results) and their infos (below), so an old run reads like a new one.
RENAMED_METRICS: Mapping[str, MetricInfo] = {
    "target_rate_real": SCHEMA1_METRICS["target_rate_reference"],  # was called a ceiling; it is not
}


def infos_to_document(infos: Iterable[MetricInfo]) -> dict[str, dict[str, Any]]:
    """The ``metrics`` block of metrics.json: id -> info, in the given order."""
    return {info.id: info.to_dict() for info in infos}


def infos_from_document(doc: Any) -> dict[str, MetricInfo]:
    """The infos of a metrics.json document; :data:`SCHEMA1_METRICS` for one written before
    metrics.json carried them. An entry that cannot be read is left out (its rows then show as
    metrics the report does not know), never an error: the rows are the results."""
    block = doc.get("metrics") if isinstance(doc, dict) else None
    if not isinstance(block, dict):
        return dict(SCHEMA1_METRICS)
    out = {}
    for key, value in block.items():
        if key in RENAMED_METRICS:
            out.setdefault(RENAMED_METRICS[key].id, RENAMED_METRICS[key])
            continue
        try:
            info = MetricInfo.from_dict(value)
        except (TypeError, ValueError):
            continue
        out[str(key)] = info
    return out


def merge_infos(*many: Mapping[str, MetricInfo]) -> dict[str, MetricInfo]:
    """Infos of several runs in one mapping; the first run that names an id describes it."""
    out: dict[str, MetricInfo] = {}
    for infos in many:
        for key, info in infos.items():
            out.setdefault(key, info)
    return out


def summarised_infos(infos: Mapping[str, MetricInfo]) -> list[MetricInfo]:
    """The metrics shown across seeds, in the infos' order (paired differences apart)."""
    return [i for i in infos.values() if i.summarised and i.paired_of is None]


def paired_infos(infos: Mapping[str, MetricInfo]) -> list[MetricInfo]:
    """The paired differences, in the infos' order."""
    return [i for i in infos.values() if i.paired_of is not None]


def with_seed_pairs(infos: Mapping[str, MetricInfo]) -> dict[str, MetricInfo]:
    """``infos`` and a paired difference ``<id>_delta`` for each summarised metric with a direction
    that no suite pairs within a run (pixel AUROC, Dice, the per-volume metrics).

    Why across seeds only: such a metric pools pixels or volumes, so one run has no per-image
    pairing to test it on; but two methods' values on one seed share its split, and the per-seed
    differences are tested over the seeds like AUROC's (:mod:`harness.seed_inference`)."""
    compared = {i.paired_of for i in paired_infos(infos)}
    added = {f"{i.id}_delta": MetricInfo(f"{i.id}_delta", f"Δ {i.title}", "paired", digits=i.digits,
                                         higher_is_better=i.higher_is_better, paired_of=i.id)
             for i in summarised_infos(infos) if i.higher_is_better is not None and i.id not in compared}
    return merge_infos(infos, added)
