"""Reference code for tests and benchmarks (never imported by the library itself: nothing below points up here)."""
