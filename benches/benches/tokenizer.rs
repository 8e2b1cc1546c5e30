//! Encoding throughput (bytes/s) of our tokenizer (one at a time and batched in parallel)
//! against tiktoken-rs's GPT-2 and GPT-4 encodings, on 1 MB of the bundled corpus. The
//! tokenizer is trained in the set-up (8192 tokens on the bundled corpus, about a second).

// `criterion_group!` generates an undocumented `pub fn`, the only public item here.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nanochat_core::data::bundled_documents;
use nanochat_core::tokenizer::eval::Reference;
use nanochat_core::tokenizer::{train_tokenizer, TrainOptions};

fn bench_encode(c: &mut Criterion) {
    let docs = bundled_documents().unwrap();
    let opts = TrainOptions {
        vocab_size: 8192,
        ..TrainOptions::default()
    };
    let (tok, _) = train_tokenizer(&docs, &opts).unwrap();
    let reference = Reference::load().unwrap();
    let mut text = Vec::new();
    let mut bytes = 0;
    for d in &docs {
        if bytes > 1_000_000 {
            break;
        }
        bytes += d.len();
        text.push(d.as_str());
    }
    let mut g = c.benchmark_group("encode 1 MB (bytes/s)");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("ours", |b| {
        b.iter(|| text.iter().map(|t| tok.encode(t).len()).sum::<usize>())
    });
    g.bench_function("ours batch (parallel)", |b| {
        b.iter(|| tok.encode_batch(&text).len())
    });
    g.bench_function("tiktoken gpt2", |b| {
        b.iter(|| {
            text.iter()
                .map(|t| reference.gpt2.encode_ordinary(t).len())
                .sum::<usize>()
        })
    });
    g.bench_function("tiktoken cl100k", |b| {
        b.iter(|| {
            text.iter()
                .map(|t| reference.gpt4.encode_ordinary(t).len())
                .sum::<usize>()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench_encode
}
criterion_main!(benches);
