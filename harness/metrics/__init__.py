"""Metric suites and the metrics behind them: detection, localisation, generative, paired.

A new metric is a suite: :mod:`harness.metrics.suite` is the public API it is written against
(``MetricSuite``, ``MetricInfo``, the evaluation contexts, ``metric_row``, the resampling).
"""
