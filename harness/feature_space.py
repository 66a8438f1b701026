"""A run's feature spaces beyond Inception: the MRI-domain network its generative metrics (FID,
KID, target rate) and the learning-curve FID of translating methods are computed in, and the
``realism-ssl`` space (a self-supervised encoder of the train split, accepted by a degradation
ladder on the test split's real images) in which FID and KID are computed as well.

Why apart from the runner: which network serves (this run's feature method, else a dedicated one
trained once per split and cached), and what happens when none can, is a policy of its own; the
runner only asks for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from harness.api import LABELS, ImageSet, Method
from harness.config import RunConfig
from harness.hashing import file_sha256
from harness.metrics.degradation_ladder import run_ladder
from harness.metrics.feature_spaces import FeatureSpace as MetricSpace
from harness.metrics.feature_spaces import MRIExtractor
from harness.metrics.fid_probe import MRIFidProbe
from harness.metrics.realism_encoder import load_or_train, settings_for
from harness.metrics.realism_space import REALISM_SPACE, embedder, realism_space
from harness.mri_reference import cache_root, dedicated_checkpoint, feature_method
from harness.registry import METHODS

__all__ = ["FeatureSpace"]


class FeatureSpace:
    """Resolves the run's MRI feature network on first use; why it is missing goes to ``notes``.

    ``own_checkpoint(name)`` returns the checkpoint of method ``name`` when this run trained it
    to completion (None otherwise): that network is preferred over a cached dedicated one.
    """

    def __init__(self, config: RunConfig, sets: dict[str, ImageSet], split_hash: str, device: torch.device,
                 own_checkpoint: Callable[[str], Path | None], notes: list[str], logger: logging.Logger,
                 progress: bool, test_groups: list[str] | None = None) -> None:
        self.config = config
        self.sets = sets
        self.split_hash = split_hash
        self.device = device
        self.own_checkpoint = own_checkpoint
        self.notes = notes
        self.logger = logger
        self.progress = progress
        self.test_groups = test_groups  # subject (joined by duplicate group) of each test image
        self._realism: tuple[MetricSpace | None, str] | None = None

    def probe(self, method: Method) -> MRIFidProbe:
        """MRI-space FID for ``method``'s learning curve; the network is resolved (and, in a run
        without the feature method, trained and cached as for the final rows) at first use."""
        return MRIFidProbe(lambda: self.extractor()[0], self.device, type(method).working_size(method.settings))

    def extractor(self) -> tuple[MRIExtractor | None, str]:
        """The feature method's network for the MRI-domain rows, or None and why not."""
        path = self.checkpoint()
        if path is None:
            return None, "no MRI-domain network (see the run's notes)"
        name = feature_method(self.config.methods)
        try:
            module = METHODS.get(name).feature_extractor(path, self.device)
        except Exception as exc:  # a checkpoint its method cannot read is a missing feature space
            return None, f"{name} could not build its feature network from {path}: {type(exc).__name__}: {exc}"
        val = self.sets["val"]
        return MRIExtractor(module, f"mri-{name}", file_sha256(path, length=64), val.images, val.labels), ""

    def realism(self) -> tuple[MetricSpace | None, str]:
        """The ``realism-ssl`` space (trained on the train split or reused from the cache) with the
        degradation ladder's verdict in its rows' notes, or None and why not. Built once per run,
        on first use; the ladder's figures go into the run's notes."""
        if self._realism is None:
            self._realism = self._build_realism()
        return self._realism

    def _build_realism(self) -> tuple[MetricSpace | None, str]:
        try:
            train, test = self.sets["train"], self.sets["test"]
            encoder, key = load_or_train(train.images, self.split_hash, settings_for(self.config.profile.name),
                                         self.config.training_seed, cache_root(), self.logger)
            probe = realism_space(encoder, key, "")
            groups = self.test_groups or list(test.ids)
            domains = {}
            for label, domain in enumerate(LABELS):
                members = torch.nonzero(test.labels == label).flatten()
                images = (test.images[members].float().clamp(0, 1) * 255).round().to(torch.uint8)
                domains[domain] = (images, [groups[i] for i in members.tolist()])
            ladder = run_ladder(embedder(probe, self.device), domains, self.config.seed)
        except Exception as exc:  # a space that cannot be built is a note, never a failed method
            why = f"the realism encoder could not be built or checked: {type(exc).__name__}: {exc}"
            self._note(f"{REALISM_SPACE} feature space unavailable: {why}")
            self.logger.warning("%s feature space unavailable: %s", REALISM_SPACE, why)
            return None, why
        summary = ladder.summary()
        self._note(f"{REALISM_SPACE} (encoder {key[:12]}): {summary}")
        self.logger.info("%s: %s", REALISM_SPACE, summary)
        verdict = ("degradation ladder passed (figures in the run's notes)" if ladder.passed else
                   f"NOT accepted as realism: {summary}")
        return realism_space(encoder, key, verdict), ""

    def checkpoint(self) -> Path | None:
        """This run's feature method's checkpoint, else a cached dedicated one; None (with a note) if neither."""
        name = feature_method(self.config.methods)
        if name is None:
            self._note("MRI feature space unavailable: no registered method has the 'features' capability")
            return None
        own = self.own_checkpoint(name)
        if own is not None:
            return own
        try:
            return dedicated_checkpoint(
                name, self.config.method_settings[name], self.sets["train"], self.sets["val"],
                split_hash=self.split_hash, seed=self.config.training_seed, profile=self.config.profile.name,
                device=self.device, logger=self.logger, progress=self.progress)
        except Exception as exc:
            note = f"MRI feature space unavailable: {type(exc).__name__}: {exc}"
            self._note(note)
            self.logger.warning(note)
            return None

    def _note(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)
