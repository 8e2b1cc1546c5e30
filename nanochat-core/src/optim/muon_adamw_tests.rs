//! `MuonAdamW` against HEAD's own two steps on head_tiny (`head_optim.safetensors`): the groups
//! as HEAD builds them, every parameter's update (not the parameters: a wrong update hides under
//! a large parameter) within 1e-4, the optimizer state, and the losses along the way.

use std::collections::BTreeMap;

use super::muon_adamw::*;
use crate::io::{parse_safetensors, SafetensorsFile};
use crate::model::{ForwardOptions, GPTConfig, GPT};
use crate::ops::Reduction;
use crate::{DType, Device, Grads, Tensor};

fn read(name: &str) -> (Vec<u8>, String) {
    let path = format!(
        "{}/../tests/fixtures/reference/head/{name}.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    (std::fs::read(&path).unwrap(), path)
}

fn floats(f: &SafetensorsFile, path: &str, name: &str) -> Vec<f64> {
    f.get(path, name)
        .unwrap()
        .floats(path, name)
        .unwrap()
        .to_vec()
}

fn rel(got: &[f64], want: &[f64]) -> f64 {
    let num: f64 = got.iter().zip(want).map(|(a, b)| (a - b).powi(2)).sum();
    let den: f64 = want.iter().map(|b| b * b).sum();
    (num / den).sqrt()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_vec_f32().unwrap().iter().map(|&x| x as f64).collect()
}

fn grads_of(f: &SafetensorsFile, path: &str, prefix: &str, model: &GPT, dev: &Device) -> Grads {
    let mut g = Grads::default();
    for (name, p) in model.named_parameters() {
        let v = floats(f, path, &format!("{prefix}{name}"));
        let t = Tensor::from_f64(dev, &v, p.shape(), DType::F32).unwrap();
        g.accumulate(p.id(), t).unwrap();
    }
    g
}

fn loss(model: &GPT, idx: &[u32], targets: &[i32], t: usize) -> f64 {
    let opts = ForwardOptions::new().targets(targets, Reduction::Mean);
    model
        .forward(idx, (1, t), opts)
        .unwrap()
        .to_scalar()
        .unwrap() as f64
}

#[test]
fn two_steps_reproduce_heads_updates_state_and_losses() {
    let dev = Device::cpu().unwrap();
    let (tiny_bytes, tiny_path) = read("head_tiny");
    let tiny = parse_safetensors(&tiny_bytes, &tiny_path).unwrap();
    let (opt_bytes, opt_path) = read("head_optim");
    let f = parse_safetensors(&opt_bytes, &opt_path).unwrap();
    let config = GPTConfig::from_json(&f.metadata["config"]).unwrap();
    let model = GPT::from_state_dict(
        config,
        &tiny.tensors,
        "param.",
        &tiny_path,
        &dev,
        DType::F32,
    )
    .unwrap();
    let cfg = MuonAdamWConfig {
        unembedding_lr: 0.008,
        embedding_lr: 0.3,
        matrix_lr: 0.02,
        scalar_lr: 0.5,
        weight_decay: 0.28,
    };
    let mut opt = MuonAdamW::new(&model, &cfg).unwrap();

    // The groups, as HEAD's metadata lists them: kind, parameters and rate.
    let want: serde_json::Value = serde_json::from_str(&f.metadata["param_groups"]).unwrap();
    let want = want.as_array().unwrap();
    assert_eq!(opt.groups().len(), want.len());
    for (g, w) in opt.groups().iter().zip(want) {
        let kind = match g.kind {
            GroupKind::AdamW { .. } => "adamw",
            GroupKind::Muon { .. } => "muon",
        };
        assert_eq!(kind, w["kind"], "{w}");
        let lr = w["lr"].as_f64().unwrap();
        assert!(
            (g.initial_lr - lr).abs() <= 1e-12 * lr,
            "{} vs {w}",
            g.initial_lr
        );
        if let Some(params) = w["params"].as_array() {
            let names: Vec<&str> = params.iter().map(|p| p.as_str().unwrap()).collect();
            assert_eq!(g.params, names);
        }
        if let GroupKind::AdamW {
            betas,
            weight_decay,
            ..
        } = g.kind
        {
            assert_eq!(serde_json::json!([betas.0, betas.1]), w["betas"]);
            assert_eq!(weight_decay, w["weight_decay"].as_f64().unwrap());
        }
    }

    let idx: Vec<u32> = f
        .get(&opt_path, "input.idx")
        .unwrap()
        .ints(&opt_path, "input.idx")
        .unwrap()
        .iter()
        .map(|&i| i as u32)
        .collect();
    let targets: Vec<i32> = f
        .get(&opt_path, "input.targets")
        .unwrap()
        .ints(&opt_path, "input.targets")
        .unwrap()
        .iter()
        .map(|&i| i as i32)
        .collect();
    let t = idx.len();
    let close = |what: &str, got: f64, want: f64| {
        assert!(
            (got - want).abs() <= 1e-4 * want.abs(),
            "{what}: {got} vs {want}"
        );
    };
    close(
        "loss before step 1",
        loss(&model, &idx, &targets, t),
        floats(&f, &opt_path, "loss.step1")[0],
    );

    let mut before: BTreeMap<String, Vec<f64>> = model
        .named_parameters()
        .iter()
        .map(|(n, p)| (n.clone(), values(p)))
        .collect();
    for step in 1..=2 {
        let grads = if step == 1 {
            grads_of(&tiny, &tiny_path, "grad.", &model, &dev)
        } else {
            grads_of(&f, &opt_path, "grad.step2.", &model, &dev)
        };
        opt.step(&grads, 1.0, 0.95, 0.28).unwrap();
        let prev = |n: &str| {
            if step == 1 {
                floats(&tiny, &tiny_path, &format!("param.{n}"))
            } else {
                floats(&f, &opt_path, &format!("param.step1.{n}"))
            }
        };
        for (name, p) in model.named_parameters() {
            let now = values(&p);
            let ours: Vec<f64> = now.iter().zip(&before[&name]).map(|(a, b)| a - b).collect();
            let theirs: Vec<f64> = floats(&f, &opt_path, &format!("param.step{step}.{name}"))
                .iter()
                .zip(prev(&name))
                .map(|(a, b)| a - b)
                .collect();
            let e = rel(&ours, &theirs);
            assert!(e < 1e-4, "step {step} {name}: update off by {e:e}");
            before.insert(name, now);
        }
        let key = format!("loss.step{}", step + 1);
        close(
            &key,
            loss(&model, &idx, &targets, t),
            floats(&f, &opt_path, &key)[0],
        );
    }

    // State after step 2: NorMuon's second moments (stacked per shape group, in group order)
    // and the small AdamW parameters' moments.
    let state: BTreeMap<String, Tensor> = opt.state_tensors().unwrap().into_iter().collect();
    for g in opt.groups() {
        if let GroupKind::Muon { shape: (r, c), .. } = g.kind {
            let stacked: Vec<f64> = g
                .params
                .iter()
                .flat_map(|n| values(&state[&format!("{n}.second_momentum_buffer")]))
                .collect();
            let want = floats(
                &f,
                &opt_path,
                &format!("state.step2.muon.{r}x{c}.second_momentum_buffer"),
            );
            assert!(
                rel(&stacked, &want) < 1e-4,
                "{r}x{c}: {:e}",
                rel(&stacked, &want)
            );
        }
    }
    for name in [
        "resid_lambdas",
        "x0_lambdas",
        "smear_lambda",
        "backout_lambda",
        "smear_gate.weight",
    ] {
        for moment in ["exp_avg", "exp_avg_sq"] {
            let key = format!("state.step2.adamw.{name}.{moment}");
            let Some(_) = f.tensors.get(&key) else {
                continue;
            };
            let e = rel(
                &values(&state[&format!("{name}.{moment}")]),
                &floats(&f, &opt_path, &key),
            );
            assert!(e < 1e-4, "{key}: {e:e}");
        }
    }
    // A model of the other architecture is refused by name.
    let v1 = GPT::new(GPTConfig::default(), &dev, DType::F32, 0).unwrap();
    let e = MuonAdamW::new(&v1, &cfg)
        .err()
        .expect("a v1 model is refused");
    assert!(e.to_string().contains("architecture head"), "{e}");
}
