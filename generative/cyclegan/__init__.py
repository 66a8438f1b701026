"""CycleGAN tumor <-> no_tumor translation, registered as the anomaly scorer ``cyclegan``."""

from generative.cyclegan import method as _method  # noqa: F401  (registers "cyclegan")
