//! A quick measurement of training-step speed on the CPU: depth 4 (n_embd 256), forward +
//! backward + nanochat's optimizers. `cargo run --release -p nanochat-core --example tiny_step
//! -- VOCAB BATCH SEQ`. `nanochat bench train` is the measurement of record.

use nanochat_core::model::{ForwardOptions, GPTConfig, ModelSize};
use nanochat_core::ops::Reduction;
use nanochat_core::optim::{OptimConfig, Optimizer};
use nanochat_core::{DType, Device, Tape, GPT};

fn main() {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().unwrap())
        .collect();
    let (vocab, b, t) = (
        a.first().copied().unwrap_or(8192),
        a.get(1).copied().unwrap_or(1),
        a.get(2).copied().unwrap_or(1024),
    );
    let dev = Device::cpu().unwrap();
    let c = GPTConfig::preset(ModelSize::Tiny, vocab, t);
    let model = GPT::new(c, &dev, DType::F32, 1).unwrap();
    let params: Vec<_> = model
        .named_parameters()
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let mut opt = Optimizer::new(&model, &OptimConfig::default());
    let ids: Vec<u32> = (0..b * t).map(|i| (i * 7919 % vocab) as u32).collect();
    let tg: Vec<i32> = ids
        .iter()
        .map(|&x| ((x + 1) % vocab as u32) as i32)
        .collect();
    for step in 0..4 {
        let dev2 = dev.clone();
        dev.exclusive(|| {
        let dev = dev2;
        let t0 = std::time::Instant::now();
        let tape = Tape::new();
        for p in &params {
            tape.watch(p);
        }
        let loss = model.forward(&ids, (b, t), ForwardOptions::new().tape(&tape).targets(&tg, Reduction::Mean)).unwrap();
        let l = loss.to_scalar().unwrap();
        let t1 = t0.elapsed().as_secs_f64();
        let grads = tape.backward(&loss).unwrap();
        dev.sync().unwrap();
        let t2 = t0.elapsed().as_secs_f64();
        opt.step(&grads, 1.0, 0.95).unwrap();
        dev.sync().unwrap();
        let el = t0.elapsed().as_secs_f64();
        println!(
            "step {step}: loss {l:.3} fwd {t1:.2}s bwd {:.2}s opt {:.2}s total {el:.2}s = {:.0} tok/s",
            t2 - t1,
            el - t2,
            (b * t) as f64 / el
        );
        }).unwrap();
    }
}
