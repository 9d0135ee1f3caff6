//! Code shared by the tools binaries (benchmarks and load generators).

pub mod loadgen;
