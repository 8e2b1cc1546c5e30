//! nanochat's own optimizer numbers: two steps of its `setup_optimizers()` (AdamW + Muon, float64
//! PyTorch) on the gqa_tiny model, reproduced in f32 to 1e-4 relative on every parameter.

use std::path::Path;

use super::*;
use crate::io::read_safetensors;
use crate::model::{ForwardOptions, GPTConfig, GPT};
use crate::ops::Reduction;
use crate::{DType, Device, Tape};

#[test]
fn two_steps_of_adamw_and_muon_match_nanochat() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/reference/gqa_tiny_optim.safetensors");
    let p = path.display().to_string();
    let f = read_safetensors(&path).unwrap();
    let config = GPTConfig::from_json(&f.metadata["config"]).unwrap();
    let dev = Device::cpu().unwrap();
    let model =
        GPT::from_state_dict(config, &f.tensors, "param.step0.", &p, &dev, DType::F32).unwrap();
    let ints = |name: &str| f.get(&p, name).unwrap().ints(&p, name).unwrap();
    let idx: Vec<u32> = ints("input.idx").iter().map(|&i| i as u32).collect();
    let targets: Vec<i32> = ints("input.targets").iter().map(|&i| i as i32).collect();
    let (b, t) = (
        f.tensors["input.idx"].shape[0],
        f.tensors["input.idx"].shape[1],
    );
    let mut opt = Optimizer::new(&model, &OptimConfig::default());
    // The learning rates nanochat gave each group (metadata `optimizer`).
    let meta: serde_json::Value = serde_json::from_str(&f.metadata["optimizer"]).unwrap();
    for (name, rule) in opt.rules() {
        let want = meta[&name]["lr"].as_f64().unwrap() as f32;
        let got = match rule {
            Rule::AdamW(lr) => {
                assert_eq!(meta[&name]["optimizer"], "AdamW", "{name}");
                lr
            }
            Rule::Muon(lr) => {
                assert_eq!(meta[&name]["optimizer"], "Muon", "{name}");
                lr
            }
        };
        assert!(
            (got - want).abs() <= 1e-6 * want,
            "{name}: lr {got} vs {want}"
        );
    }
    for step in 1..=2 {
        let tape = Tape::new();
        let params = model.named_parameters();
        for (_, p) in &params {
            tape.watch(p);
        }
        let loss = model
            .forward(
                &idx,
                (b, t),
                ForwardOptions::new()
                    .tape(&tape)
                    .targets(&targets, Reduction::Mean),
            )
            .unwrap();
        let want_loss = f.tensors[&format!("loss.step{step}")]
            .floats(&p, "loss")
            .unwrap()[0];
        let got_loss = loss.to_scalar().unwrap() as f64;
        assert!(
            (got_loss - want_loss).abs() / want_loss < 1e-5,
            "step {step}: loss {got_loss} vs {want_loss}"
        );
        let grads = tape.backward(&loss).unwrap();
        opt.step(&grads, 1.0, 0.95).unwrap();
        for (name, param) in &params {
            let want = f.tensors[&format!("param.step{step}.{name}")]
                .floats(&p, name)
                .unwrap();
            let got = param.to_vec_f32().unwrap();
            let (rel, _) = nanochat_kernels::check::errors(&got, &want);
            assert!(rel < 1e-4, "step {step} {name}: relative error {rel:e}");
        }
    }
}

#[test]
fn peak_lr_scales_every_group() {
    let c = OptimConfig::with_peak_lr(0.04);
    assert_eq!(c.matrix_lr, 0.04);
    assert!((c.unembedding_lr - 0.008).abs() < 1e-9 && (c.embedding_lr - 0.4).abs() < 1e-7);
    assert_eq!(
        rule_for("transformer.h.3.mlp.c_fc.weight", &c, 768),
        Rule::Muon(0.04)
    );
    assert_eq!(
        rule_for("transformer.h.3.mlp.c_fc.bias", &c, 768),
        Rule::AdamW(c.unembedding_lr)
    );
    assert_eq!(
        rule_for("lm_head.weight", &c, 3072),
        Rule::AdamW(c.unembedding_lr * 0.5)
    );
}
