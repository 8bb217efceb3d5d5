"""xpgrad benchmarks."""
