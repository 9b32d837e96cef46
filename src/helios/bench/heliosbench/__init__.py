"""HeliosBench (paper §5.1, Tables 3–4): generating the benchmark's videos, the metrics, and the
official 10-point ratings, weighted totals and throughput score."""
