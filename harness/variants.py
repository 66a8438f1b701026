"""A fitted method's named variant, seen as a method of its own so the runner evaluates it like one.

Why: a variant (``Method.variants``, e.g. ``dae+tuned``) is another scorer of the *same* trained
model, so it must not be trained again, yet it needs its own run.json entry, metric rows, scores
and example grid, computed by exactly the code that measures every method. :class:`VariantView`
wraps the fitted method: ``score`` calls ``score_variant``, ``selection`` the variant's own, and
``checkpoint`` is the method's (the same file and sha256). It offers only scores and maps:
translations and features belong to the model and are measured once, under the method's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.api import FitContext, ImageSet, Method, ScoreOutput
from harness.registry import VARIANT_SEPARATOR

__all__ = ["VariantView", "variant_views"]

_VARIANT_CAPABILITIES = frozenset({"scores", "maps"})


class VariantView(Method):
    """Variant ``variant`` of the fitted ``base``, named ``<base name>+<variant>``."""

    def __init__(self, base: Method, variant: str) -> None:
        if variant not in base.variants:
            raise ValueError(f"method {base.name!r} has no variant {variant!r}; it has {sorted(base.variants)}")
        super().__init__(base.settings)
        self.base, self.variant = base, variant
        # instance attributes shadow the class-level declarations the runner reads
        self.name = f"{base.name}{VARIANT_SEPARATOR}{variant}"  # type: ignore[misc]
        self.capabilities = frozenset(base.capabilities) & _VARIANT_CAPABILITIES  # type: ignore[misc]
        self.supervision = base.variants[variant]  # type: ignore[misc]
        self.description = base.variant_descriptions.get(variant, "")  # type: ignore[misc]

    def fit(self, train: ImageSet, val: ImageSet, ctx: FitContext) -> None:
        raise TypeError(f"{self.name} is scored from {self.base.name}'s fitted model; it is never trained")

    def score(self, images: ImageSet) -> ScoreOutput:
        return self.base.score_variant(images, self.variant)

    def selection(self) -> dict[str, Any]:
        return self.base.variant_selection(self.variant)

    def checkpoint(self) -> Path | None:
        return self.base.checkpoint()


def variant_views(method: Method) -> list[VariantView]:
    """The fitted ``method``'s variants, in declaration order."""
    return [VariantView(method, variant) for variant in method.variants]
