//! Kernel throughput with criterion: matmul (reported as FLOP/s: criterion's "elem/s" counts
//! FLOPs here), attention forward/backward (FLOP/s), RMSNorm, cross-entropy and element-wise
//! add (bytes/s). `NANOCHAT_BENCH_DEVICE=cuda` benchmarks the GPU of a `--features cuda` build.

// `criterion_group!` generates an undocumented `pub fn`, the only public item here.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nanochat_kernels::attention::{
    attention_backward_with, attention_forward_with, AttentionKernel, AttentionShape, KvLayout,
};
use nanochat_kernels::check::upload_f32;
use nanochat_kernels::cross_entropy::{
    cross_entropy_backward, cross_entropy_forward, upload_targets,
};
use nanochat_kernels::elementwise::{binary, Binary};
use nanochat_kernels::matmul::{matmul, sync, MatmulShape};
use nanochat_kernels::rmsnorm::{rmsnorm_backward, rmsnorm_forward};
use nanochat_kernels::{Backend, Client};

fn client() -> Client {
    let name =
        nanochat_core::paths::env_string("NANOCHAT_BENCH_DEVICE").unwrap_or_else(|| "cpu".into());
    let backend: Backend = name
        .parse()
        .expect("NANOCHAT_BENCH_DEVICE: cpu, cuda or cuda:N");
    backend.client().expect("device")
}

fn data(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect()
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
    // The depth-4 model's shape: T=1024, two heads of 128.
    let s = AttentionShape::new(1, 1024, 2, 2, 128);
    let nq = s.batch * s.tq * s.heads * s.head_dim;
    let (q, k, v, dout) = (
        upload_f32(&client, &data(nq)),
        upload_f32(&client, &data(nq)),
        upload_f32(&client, &data(nq)),
        upload_f32(&client, &data(nq)),
    );
    let layout = KvLayout::contiguous(&s);
    for kernel in AttentionKernel::ALL {
        g.throughput(Throughput::Elements(s.forward_flops() as u64));
        g.bench_function(format!("forward {kernel:?} T=1024 H=2 D=128"), |b| {
            b.iter(|| {
                attention_forward_with::<f32>(&client, kernel, &q, &k, &v, &s, &layout).unwrap();
                sync(&client).unwrap();
            })
        });
        let (o, lse) =
            attention_forward_with::<f32>(&client, kernel, &q, &k, &v, &s, &layout).unwrap();
        g.throughput(Throughput::Elements((2.5 * s.forward_flops()) as u64));
        g.bench_function(format!("backward {kernel:?} T=1024 H=2 D=128"), |b| {
            b.iter(|| {
                attention_backward_with::<f32>(&client, kernel, &q, &k, &v, &o, &lse, &dout, &s)
                    .unwrap();
                sync(&client).unwrap();
            })
        });
    }
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
            cross_entropy_forward::<f32>(&client, &logits, &targets, rows, vocab, Some(15.0))
                .unwrap();
            sync(&client).unwrap();
        })
    });
    let (_, lse) =
        cross_entropy_forward::<f32>(&client, &logits, &targets, rows, vocab, Some(15.0)).unwrap();
    g.throughput(Throughput::Bytes((2 * rows * vocab * 4) as u64));
    g.bench_function("cross_entropy backward 1024x8192", |b| {
        b.iter(|| {
            cross_entropy_backward::<f32>(
                &client,
                &logits,
                &targets,
                &lse,
                &grad,
                rows,
                vocab,
                Some(15.0),
            )
            .unwrap();
            sync(&client).unwrap();
        })
    });
}

fn bench_other(c: &mut Criterion) {
    use nanochat_kernels::attention::attention_decode;
    use nanochat_kernels::embedding::{embedding_backward, embedding_forward};
    use nanochat_kernels::layout::transpose;
    use nanochat_kernels::optim::{adamw_step, newton_schulz, AdamWStep};
    use nanochat_kernels::rotary::{rotary_forward, rotary_tables, RotaryShape};
    use nanochat_kernels::softmax::softmax;
    let client = client();
    let (rows, cols) = (1024usize, 768usize);
    let n = rows * cols;
    let x = upload_f32(&client, &data(n));
    let y = upload_f32(&client, &data(n));
    let mut g = c.benchmark_group("other_f32 (bytes/s)");
    let mut run = |name: &str, bytes: usize, f: &mut dyn FnMut()| {
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                f();
                sync(&client).unwrap();
            })
        });
    };
    run("softmax 1024x768", 2 * n * 4, &mut || {
        drop(softmax::<f32>(&client, &x, rows, cols).unwrap())
    });
    let ids: Vec<u32> = (0..rows as u32).map(|i| (i * 7) % rows as u32).collect();
    run("embedding 1024x768", 2 * n * 4, &mut || {
        drop(embedding_forward::<f32>(&client, &x, rows, cols, &ids).unwrap())
    });
    run("embedding backward 1024x768", 2 * n * 4, &mut || {
        drop(embedding_backward::<f32>(&client, &y, &ids, rows, cols).unwrap())
    });
    let rs = RotaryShape {
        batch: 1,
        seq: rows,
        heads: 12,
        head_dim: 64,
        t0: 0,
        table_len: rows,
    };
    let (cs, sn) = rotary_tables(rows, 64, 10000.0);
    let (hc, hs) = (upload_f32(&client, &cs), upload_f32(&client, &sn));
    run("rotary 1024x12x64", 2 * n * 4, &mut || {
        drop(rotary_forward::<f32>(&client, &x, &hc, &hs, rs).unwrap())
    });
    let (m, v) = (
        upload_f32(&client, &vec![0.0; n]),
        upload_f32(&client, &vec![0.0; n]),
    );
    let h = AdamWStep {
        lr: 1e-3,
        beta1: 0.8,
        beta2: 0.95,
        eps: 1e-10,
        weight_decay: 0.0,
        step: 1,
    };
    run("adamw 786432", 28 * n, &mut || {
        adamw_step::<f32>(&client, &x, &y, &m, &v, n, &h).unwrap()
    });
    run("transpose 1024x768", 2 * n * 4, &mut || {
        drop(transpose::<f32>(&client, &x, 1, rows, cols).unwrap())
    });
    let s = AttentionShape {
        batch: 1,
        tq: 1,
        tk: rows,
        heads: 12,
        kv_heads: 12,
        head_dim: 64,
        window: usize::MAX,
    };
    let q = upload_f32(&client, &data(12 * 64));
    let layout = KvLayout::contiguous(&s);
    run(
        "attention decode len=1024 H=12 D=64",
        2 * n * 4,
        &mut || drop(attention_decode::<f32>(&client, &q, &x, &y, &s, &layout).unwrap()),
    );
    drop(g);
    let mut g = c.benchmark_group("newton_schulz_f32 (elem/s = FLOP/s)");
    let a = upload_f32(&client, &data(256 * 256));
    g.throughput(Throughput::Elements(15 * 2 * 256u64.pow(3)));
    g.bench_function("5 steps 256x256", |b| {
        b.iter(|| {
            newton_schulz::<f32>(&client, &a, 256, 256, 5).unwrap();
            sync(&client).unwrap();
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    targets = bench_matmul, bench_attention, bench_memory_bound, bench_other
}
criterion_main!(benches);
