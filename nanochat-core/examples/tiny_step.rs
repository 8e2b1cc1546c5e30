//! A quick measurement of training-step speed on the CPU: the tiny preset (depth 4, vocab
//! 32768), B=4 x T=256, forward + backward + AdamW. `cargo run --release -p nanochat-core
//! --example tiny_step`. The training pipeline will measure tokens/s properly.

use nanochat_core::model::{GPTConfig, ModelSize};
use nanochat_core::ops::Reduction;
use nanochat_core::optim::{AdamW, AdamWConfig};
use nanochat_core::{DType, Device, Tape, GPT};
fn main() {
    let dev = Device::cpu().unwrap();
    let c = GPTConfig::preset(ModelSize::Tiny, 32768, 256);
    let model = GPT::new(c, &dev, DType::F32, 1).unwrap();
    let params: Vec<_> = model.named_parameters().into_iter().map(|(_, p)| p).collect();
    let mut opt = AdamW::new(AdamWConfig::default());
    let (b, t) = (4, 256);
    let ids: Vec<u32> = (0..b * t).map(|i| (i * 7919 % 32768) as u32).collect();
    let tg: Vec<i32> = ids.iter().map(|&x| ((x + 1) % 32768) as i32).collect();
    for step in 0..4 {
        let t0 = std::time::Instant::now();
        let tape = Tape::new();
        for p in &params { tape.watch(p); }
        let loss = model.loss(Some(&tape), &ids, &tg, b, t, Reduction::Mean).unwrap();
        let l = loss.to_scalar().unwrap();
        let t1 = t0.elapsed();
        let grads = tape.backward(&loss).unwrap();
        opt.step(&params, &grads).unwrap();
        dev.sync().unwrap();
        let el = t0.elapsed().as_secs_f64();
        println!("step {step}: loss {l:.3} fwd {:.2}s total {:.2}s = {:.0} tok/s, {:.1} GFLOP/s", t1.as_secs_f64(), el, (b*t) as f64/el, model.estimate_flops() * (b*t) as f64 / el / 1e9);
    }
}
