//! `serve-bench`: the OpenLoRA throughput benchmark (being written).
fn main() {}
