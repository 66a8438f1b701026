"""Benchmark harness for anomaly detection in brain MRI.

Public types that methods may import live in :mod:`harness.api`; everything else is internal.
"""

__version__ = "0.1.0"
