//! Benchmarks live in `benches/`; run `cargo bench -p nanochat-benches` (CPU) or with
//! `--features cuda` and `NANOCHAT_BENCH_DEVICE=cuda` on a GPU.
