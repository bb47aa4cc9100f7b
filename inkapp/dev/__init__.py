"""Developer tools kept apart from the runtime path: the benchmark, the soak test, process helpers."""
