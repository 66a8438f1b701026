"""Several data sources as one cohort (``--data brats=PATH --data ixi=PATH``).

Why: the field's benchmarks train on healthy volumes of one dataset (IXI) and test on lesion
volumes of another (BraTS). Read as one cohort, every image keeps its source: ids and subjects
are prefixed with the source's name (so two sources' ``sub-001`` stay two subjects), the stratum
becomes ``source/stratum`` (so splits keep each source's share, per label, in every split, and
per-stratum rows are per source), and ``meta["source"]`` lets the shortcut audit ask whether the
source alone predicts the label, which it does when healthy images come from one dataset and
tumor images from another: a model can then learn the scanner, not the lesion.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from harness.data.types import DatasetError, DataSource, Record, SkippedFile, label_rule

__all__ = ["Cohort"]


class Cohort:
    """Named :class:`~harness.data.types.DataSource` objects as one."""

    def __init__(self, sources: Sequence[tuple[str, DataSource]]) -> None:
        names = [n for n, _ in sources]
        if len(set(names)) != len(names):
            raise DatasetError(f"two --data sources share a name ({', '.join(names)}); name each one differently")
        self.name = "+".join(f"{n}:{s.name}" for n, s in sources)
        self.root = "; ".join(f"{n}={s.root}" for n, s in sources)
        self.records: list[Record] = []
        self.skipped: list[SkippedFile] = []
        self.notices: list[str] = []
        self.label_rule = "; ".join(f"{n}: {label_rule(s)}" for n, s in sources if label_rule(s))
        self._sources = dict(sources)
        self._origin: dict[str, tuple[str, Record]] = {}
        for name, source in sources:
            for r in source.records:
                record = replace(r, id=f"{name}/{r.id}", subject=f"{name}/{r.subject}",
                                 stratum=f"{name}/{r.stratum}" if r.stratum else name,
                                 meta={**r.meta, "source": name})
                self.records.append(record)
                self._origin[record.id] = (name, r)
            self.skipped += [SkippedFile(f"{name}/{s.path}", s.reason) for s in source.skipped]
            self.notices += [f"{name}: {n}" for n in source.notices]

    def fingerprint(self) -> str:
        parts = "\n".join(f"{n}\t{s.fingerprint()}" for n, s in self._sources.items())
        return hashlib.sha256(parts.encode()).hexdigest()[:16]

    def load_image(self, record: Record) -> np.ndarray:
        name, original = self._find(record)
        return self._sources[name].load_image(original)

    def load_mask(self, record: Record) -> np.ndarray | None:
        name, original = self._find(record)
        return self._sources[name].load_mask(original)

    def _find(self, record: Record) -> tuple[str, Record]:
        try:
            return self._origin[record.id]
        except KeyError:
            raise DatasetError(f"record {record.id!r} is not part of {self.root}") from None
