//! Shared pieces of the benchmarks (timers, percentile tables).
