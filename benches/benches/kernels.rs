//! Kernel throughput with criterion: matmul (reported as FLOP/s: criterion's "elem/s" counts
//! FLOPs here), attention forward/backward (FLOP/s), RMSNorm, cross-entropy and element-wise
//! add (bytes/s). `NANOCHAT_BENCH_DEVICE=cuda` benchmarks the GPU of a `--features cuda` build.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nanochat_kernels::attention::{attention_backward, attention_forward, AttentionShape, KvLayout};
use nanochat_kernels::check::upload_f32;
use nanochat_kernels::cross_entropy::{cross_entropy_backward, cross_entropy_forward, upload_targets};
use nanochat_kernels::elementwise::{binary, Binary};
use nanochat_kernels::matmul::{matmul, sync, MatmulShape};
use nanochat_kernels::rmsnorm::{rmsnorm_backward, rmsnorm_forward};
use nanochat_kernels::{Backend, Client};

fn client() -> Client {
    let name = std::env::var("NANOCHAT_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    let backend: Backend = name.parse().expect("NANOCHAT_BENCH_DEVICE: cpu, cuda or cuda:N");
    backend.client().expect("device")
}

fn data(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect()
}

fn bench_matmul(c: &mut Criterion) {
    let client = client();
    let mut g = c.benchmark_group("matmul_f32 (elem/s = FLOP/s)");
    for n in [256usize, 512, 1024] {
        for (name, tb) in [("nn", false), ("nt", true)] {
            let s = MatmulShape::new(n, n, n, false, tb);
            let a = upload_f32(&client, &data(n * n));
            let b = upload_f32(&client, &data(n * n));
            g.throughput(Throughput::Elements(s.flops() as u64));
            g.bench_with_input(BenchmarkId::new(name, n), &n, |bch, _| {
                bch.iter(|| {
                    matmul::<f32>(&client, &a, &b, &s).unwrap();
                    sync(&client).unwrap();
                })
            });
        }
    }
}

fn bench_attention(c: &mut Criterion) {
    let client = client();
    let mut g = c.benchmark_group("attention_f32 (elem/s = FLOP/s)");
    let s = AttentionShape::new(1, 256, 4, 4, 64);
    let nq = s.batch * s.tq * s.heads * s.head_dim;
    let (q, k, v, dout) = (upload_f32(&client, &data(nq)), upload_f32(&client, &data(nq)), upload_f32(&client, &data(nq)), upload_f32(&client, &data(nq)));
    let layout = KvLayout::contiguous(&s);
    g.throughput(Throughput::Elements(s.forward_flops() as u64));
    g.bench_function("forward T=256 H=4 D=64", |b| {
        b.iter(|| {
            attention_forward::<f32>(&client, &q, &k, &v, &s, &layout).unwrap();
            sync(&client).unwrap();
        })
    });
    let (o, lse) = attention_forward::<f32>(&client, &q, &k, &v, &s, &layout).unwrap();
    g.throughput(Throughput::Elements((2.5 * s.forward_flops()) as u64));
    g.bench_function("backward T=256 H=4 D=64", |b| {
        b.iter(|| {
            attention_backward::<f32>(&client, &q, &k, &v, &o, &lse, &dout, &s).unwrap();
            sync(&client).unwrap();
        })
    });
}

fn bench_memory_bound(c: &mut Criterion) {
    let client = client();
    let mut g = c.benchmark_group("memory_bound_f32 (bytes/s)");
    let (rows, cols, vocab) = (1024usize, 768usize, 8192usize);
    let x = upload_f32(&client, &data(rows * cols));
    let dy = upload_f32(&client, &data(rows * cols));
    g.throughput(Throughput::Bytes((2 * rows * cols * 4) as u64));
    g.bench_function("rmsnorm forward 1024x768", |b| {
        b.iter(|| {
            rmsnorm_forward::<f32>(&client, &x, rows, cols, 1e-6).unwrap();
            sync(&client).unwrap();
        })
    });
    let (_, rstd) = rmsnorm_forward::<f32>(&client, &x, rows, cols, 1e-6).unwrap();
    g.throughput(Throughput::Bytes((3 * rows * cols * 4) as u64));
    g.bench_function("rmsnorm backward 1024x768", |b| {
        b.iter(|| {
            rmsnorm_backward::<f32>(&client, &x, &rstd, &dy, rows, cols).unwrap();
            sync(&client).unwrap();
        })
    });
    g.throughput(Throughput::Bytes((3 * rows * cols * 4) as u64));
    g.bench_function("add 1024x768", |b| {
        b.iter(|| {
            binary::<f32>(&client, &x, &dy, rows * cols, Binary::Add, 0.0, 0.0).unwrap();
            sync(&client).unwrap();
        })
    });
    let logits = upload_f32(&client, &data(rows * vocab));
    let targets = upload_targets(&client, &(0..rows as i32).collect::<Vec<_>>());
    let grad = upload_f32(&client, &vec![1.0 / rows as f32; rows]);
    g.throughput(Throughput::Bytes((rows * vocab * 4) as u64));
    g.bench_function("cross_entropy forward 1024x8192", |b| {
        b.iter(|| {
            cross_entropy_forward::<f32>(&client, &logits, &targets, rows, vocab).unwrap();
            sync(&client).unwrap();
        })
    });
    let (_, lse) = cross_entropy_forward::<f32>(&client, &logits, &targets, rows, vocab).unwrap();
    g.throughput(Throughput::Bytes((2 * rows * vocab * 4) as u64));
    g.bench_function("cross_entropy backward 1024x8192", |b| {
        b.iter(|| {
            cross_entropy_backward::<f32>(&client, &logits, &targets, &lse, &grad, rows, vocab).unwrap();
            sync(&client).unwrap();
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    targets = bench_matmul, bench_attention, bench_memory_bound
}
criterion_main!(benches);
