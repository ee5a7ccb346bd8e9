"""Benchmarks of issue 7: interactive latency on CPU and training throughput/memory, each against a naive baseline.

- ``python -m benchmarks.interactive``: trace, δ-update, threshold update, rollout and per-stage Grad-CAM latency.
- ``python -m benchmarks.train_throughput``: img/s, peak memory and MFU of our training step vs a naive step.

Timing claims live here, never in the test suite; ``tests/test_benchmarks.py`` only runs both scripts on a tiny
configuration and checks that every row is reported and every ratio is computed from the measured times.
"""
