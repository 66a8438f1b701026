"""Registered generative methods (CycleGAN)."""
