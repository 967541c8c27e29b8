"""Side-by-side benchmarks. Each module runs as ``python -m benchmarks.<name>`` and
prints one JSON object with the machine, the raw timings and the ratios against the
peer measured in the same run (ratios survive a noisy machine; absolute times do not)."""
