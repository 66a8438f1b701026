"""The ``generative`` suite: per-domain FID, KID, IS, reference and relative FID and target rates
of a translating method's test translations, in each feature space (:mod:`harness.metrics.generative`),
and the Fréchet Radiomics Distance with its reference and relative form (:mod:`harness.metrics.frd`)."""

from __future__ import annotations

from harness.metrics.generative import evaluate_generative
from harness.metrics.suite import MethodEvaluation, MetricInfo, MetricSuite, register_metric_suite

__all__ = ["GENERATIVE_INFOS", "GenerativeSuite"]

GENERATIVE_INFOS = (
    MetricInfo("fid", "FID", "generative", digits=2, higher_is_better=False),
    MetricInfo("fid_reference", "Reference FID (real vs real)", "generative", digits=2),
    MetricInfo("fid_relative", "Relative FID", "generative", higher_is_better=False),
    MetricInfo("kid", "KID", "generative", digits=4, higher_is_better=False),
    MetricInfo("is", "IS", "generative", higher_is_better=True),
    MetricInfo("target_rate", "Target rate", "generative", higher_is_better=True),
    MetricInfo("target_rate_reference", "Target rate of real images (reference)", "generative"),
    MetricInfo("frd", "FRD (d², radiomics)", "generative", digits=2, higher_is_better=False),
    MetricInfo("frd_reference", "Reference FRD (real vs real)", "generative", digits=2),
    MetricInfo("frd_relative", "Relative FRD", "generative", higher_is_better=False),
)


@register_metric_suite("generative")
class GenerativeSuite(MetricSuite):
    needs = frozenset({"translations"})
    infos = GENERATIVE_INFOS

    def rows(self, ev: MethodEvaluation) -> list[dict]:
        mri, missing = ev.mri_extractor()
        return evaluate_generative(
            ev.method, ev.translations(), settings=ev.settings, device=ev.device, seed=ev.seed,
            working_size=ev.working_size, inception_weights=ev.inception_weights, mri=mri, mri_missing=missing,
            cache_dir=ev.cache_dir, logger=ev.logger, realism=ev.realism_space())
