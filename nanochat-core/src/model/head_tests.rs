//! Tests of nanochat HEAD's architecture: config rules, HEAD's initialisation (the fixture
//! README's "Init" section), cached decoding past the short window with smear, and the refusal
//! of checkpoints that carry only some of HEAD's tensors.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::io::{HostData, HostTensor};
use crate::{CoreError, DType, Device};

/// A HEAD config: `SSSL` over 4 layers, sequence 512 (short window 128), GQA.
fn head(n_embd: usize, vocab: usize) -> GPTConfig {
    GPTConfig {
        architecture: Architecture::Head,
        window_pattern: "SSSL".into(),
        vocab_size: vocab,
        n_layer: 4,
        n_head: 4,
        n_kv_head: 2,
        n_embd,
        block_size: 512,
        rope_base: 100000.0,
        ..GPTConfig::default()
    }
}

#[test]
fn window_sizes_value_embeddings_and_padding_follow_heads_rules() {
    let c = head(32, 100);
    assert_eq!(c.window_sizes(), vec![128, 128, 128, 512]);
    assert_eq!(c.padded_vocab_size(), 128);
    assert_eq!(
        (0..4)
            .filter(|&i| c.has_value_embeds(i))
            .collect::<Vec<_>>(),
        vec![1, 3]
    );
    assert_eq!(c.backout_layer(), Some(2));
    let c5 = GPTConfig {
        n_layer: 5,
        window_pattern: "SSL".into(),
        block_size: 256,
        ..c.clone()
    };
    assert_eq!(c5.window_sizes(), vec![128, 128, 256, 128, 256]);
    assert_eq!(
        (0..5)
            .filter(|&i| c5.has_value_embeds(i))
            .collect::<Vec<_>>(),
        vec![0, 2, 4]
    );
    // 2048: the short window is 512 (not half the context, not 768); a lower-case pattern.
    let long = GPTConfig {
        n_layer: 3,
        window_pattern: "sl".into(),
        block_size: 2048,
        ..c.clone()
    };
    assert_eq!(long.window_sizes(), vec![512, 2048, 2048]);
    // v1: every layer sees the whole context, nothing padded, no HEAD modules.
    let v1 = GPTConfig::default();
    assert_eq!(v1.window_sizes(), vec![1024; 12]);
    assert_eq!(v1.padded_vocab_size(), 32768);
    assert!(!v1.has_value_embeds(11) && v1.backout_layer().is_none());
    assert_eq!(v1.qk_scale(), 1.0);
}

#[test]
fn nanochats_model_config_reads_as_the_right_architecture() {
    // HEAD's meta (7 keys, window_pattern among them) and v1's (6 keys).
    let h = GPTConfig::from_json(r#"{"sequence_len": 512, "vocab_size": 330, "n_layer": 3, "n_head": 2, "n_kv_head": 2, "n_embd": 64, "window_pattern": "SSSL"}"#).unwrap();
    assert_eq!(
        (h.architecture, h.rope_base),
        (Architecture::Head, 100000.0)
    );
    let v = GPTConfig::from_json(r#"{"sequence_len": 128, "vocab_size": 320, "n_layer": 3, "n_head": 4, "n_kv_head": 2, "n_embd": 64}"#).unwrap();
    assert_eq!((v.architecture, v.rope_base), (Architecture::V1, 10000.0));
    // Our own JSON round-trips, architecture and pattern included.
    assert_eq!(GPTConfig::from_json(&h.to_json()).unwrap(), h);
    assert!(h.to_json().contains("\"architecture\":\"head\""));
}

#[test]
fn invalid_head_configs_name_the_field() {
    let cases = [
        (
            GPTConfig {
                window_pattern: "SXL".into(),
                ..head(32, 100)
            },
            "window_pattern",
        ),
        (
            GPTConfig {
                window_pattern: "".into(),
                ..head(32, 100)
            },
            "window_pattern",
        ),
        (
            GPTConfig {
                window_pattern: "SL".into(),
                ..GPTConfig::default()
            },
            "window_pattern",
        ),
        (
            GPTConfig {
                dropout: 0.1,
                ..head(32, 100)
            },
            "dropout",
        ),
        (
            GPTConfig {
                n_embd: 16,
                n_head: 2,
                n_kv_head: 2,
                ..head(32, 100)
            },
            "n_embd",
        ),
    ];
    for (c, field) in cases {
        let e = c.validate().unwrap_err();
        assert!(
            matches!(&e, CoreError::InvalidArgument { name, .. } if *name == field),
            "{e} should name {field}"
        );
    }
}

/// A model parameter as a host tensor (what a file would hold).
fn to_host(t: &crate::Tensor) -> HostTensor {
    HostTensor {
        shape: t.shape().to_vec(),
        data: HostData::Float(t.to_vec_f32().unwrap().iter().map(|&x| x as f64).collect()),
    }
}

/// Mean and standard deviation.
fn stats(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[test]
fn heads_init_constants_exactly_and_random_parameters_by_range_and_std() {
    let c = GPTConfig {
        n_layer: 5,
        ..head(64, 1000)
    };
    let dev = Device::cpu().unwrap();
    let m = GPT::new(c.clone(), &dev, DType::F32, 7).unwrap();
    let p: BTreeMap<String, Vec<f32>> = m
        .named_parameters()
        .into_iter()
        .map(|(n, t)| (n, t.to_vec_f32().unwrap()))
        .collect();
    let get = |n: &str| &p[n];
    // Constants, exactly: resid 1.15 - 0.10 i/(L-1), x0 0.20 - 0.15 i/(L-1), smear 0,
    // backout 0.2, both c_proj 0.
    let ramp = |a: f64, b: f64| -> Vec<f32> {
        (0..5)
            .map(|i| (a + (b - a) * i as f64 / 4.0) as f32)
            .collect()
    };
    assert_eq!(get("resid_lambdas"), &ramp(1.15, 1.05));
    assert_eq!(get("x0_lambdas"), &ramp(0.20, 0.05));
    assert_eq!(get("smear_lambda"), &vec![0.0]);
    assert_eq!(get("backout_lambda"), &vec![0.2]);
    for i in 0..5 {
        for name in ["attn.c_proj", "mlp.c_proj"] {
            let w = get(&format!("transformer.h.{i}.{name}.weight"));
            assert!(w.iter().all(|&x| x == 0.0), "{name} of block {i}");
        }
    }
    // Random ones: normal by std, uniform by range and std (b / sqrt(3) for U(-b, b)).
    let s = (3.0f64).sqrt() / 64f64.sqrt();
    let close = |name: &str, got: f64, want: f64| {
        assert!(
            (got / want - 1.0).abs() < 0.1,
            "{name}: std {got}, want {want}"
        );
    };
    let (_, sd) = stats(get("transformer.wte.weight"));
    close("wte", sd, 0.8);
    let (_, sd) = stats(get("lm_head.weight"));
    close("lm_head", sd, 0.001);
    for (name, bound) in [
        ("transformer.h.0.attn.c_q.weight", s),
        ("transformer.h.2.attn.c_k.weight", s),
        ("transformer.h.4.attn.c_v.weight", s),
        ("transformer.h.1.mlp.c_fc.weight", 0.4 * s),
        ("value_embeds.0.weight", s),
        ("value_embeds.4.weight", s),
    ] {
        let w = get(name);
        assert!(
            w.iter().all(|&x| (x as f64).abs() <= bound * (1.0 + 1e-6)),
            "{name} range"
        );
        let (mean, sd) = stats(w);
        assert!(mean.abs() < 0.05 * bound, "{name} mean {mean}");
        close(name, sd, bound / 3f64.sqrt());
    }
    for name in ["smear_gate.weight", "transformer.h.2.attn.ve_gate.weight"] {
        let w = get(name);
        assert!(w.iter().all(|&x| (0.0..=0.02).contains(&x)), "{name} range");
        assert!(w.iter().any(|&x| x > 0.0), "{name} is random");
    }
    // Shapes: padded vocab rows, ve_gate (Hkv, 12), smear_gate (1, 24); value embeddings on
    // layers 0, 2, 4 of 5.
    let shapes: BTreeMap<String, Vec<usize>> = m
        .named_parameters()
        .into_iter()
        .map(|(n, t)| (n, t.shape().to_vec()))
        .collect();
    assert_eq!(shapes["transformer.wte.weight"], vec![1024, 64]);
    assert_eq!(shapes["lm_head.weight"], vec![1024, 64]);
    assert_eq!(shapes["value_embeds.2.weight"], vec![1024, 32]);
    assert_eq!(shapes["transformer.h.0.attn.ve_gate.weight"], vec![2, 12]);
    assert_eq!(shapes["smear_gate.weight"], vec![1, 24]);
    assert!(!shapes.contains_key("value_embeds.1.weight"));
    assert!(!shapes.contains_key("transformer.h.1.attn.ve_gate.weight"));
    // HEAD's state_dict order: its scalars first, then the transformer, lm_head, smear_gate and
    // the value embeddings.
    let names: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names[..5],
        [
            "resid_lambdas",
            "x0_lambdas",
            "smear_lambda",
            "backout_lambda",
            "transformer.wte.weight"
        ]
    );
    assert_eq!(
        names[names.len() - 5..],
        [
            "lm_head.weight",
            "smear_gate.weight",
            "value_embeds.0.weight",
            "value_embeds.2.weight",
            "value_embeds.4.weight"
        ]
    );
}

/// A HEAD model whose constant-initialised parameters are made random too (so smear, backout
/// and the projections all act), on the CPU in f32.
fn random_head_model(c: &GPTConfig, seed: u64) -> GPT {
    let dev = Device::cpu().unwrap();
    let mut r = crate::autograd::gradcheck::rng(seed);
    GPT::build(c.clone(), &dev, DType::F32, |name, shape, init| {
        let init = match init {
            Init::Zeros | Init::Constant { .. } => Init::Uniform { lo: 0.1, hi: 0.5 },
            _ if name == "lm_head.weight" => Init::Normal { std: 0.3 },
            other => other,
        };
        crate::Tensor::from_f32(&dev, &init.values(shape, &mut r), shape, DType::F32)
    })
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3, failure_persistence: None, ..ProptestConfig::default() })]

    /// A prompt longer than the short window (130+ tokens at window 128), prefilled in one
    /// chunk and then decoded a token at a time (smear carried in the cache), gives the full
    /// forward's logits at every decoded position; also after replicating the cache (to
    /// rounding: two rows may take another matmul kernel).
    #[test]
    fn cached_decoding_equals_the_full_forward_past_the_window(prompt in 130usize..140, steps in 2usize..6, seed in any::<u64>()) {
        let c = head(32, 100);
        let model = random_head_model(&c, seed);
        let n = prompt + steps;
        let ids: Vec<u32> = (0..n as u64).map(|i| ((i * 2654435761 + seed % 1000) % 100) as u32).collect();
        let full = model.forward(&ids, (1, n), ForwardOptions::new()).unwrap().to_vec_f32().unwrap();
        let dev = Device::cpu().unwrap();
        let mut cache = KvCache::new(&c, &dev, DType::F32, 1, n).unwrap();
        model.forward(&ids[..prompt], (1, prompt), ForwardOptions::new().kv_cache(&mut cache)).unwrap();
        let mut two = cache.replicate(2).unwrap();
        let scale = full.iter().fold(0f32, |m, v| m.max(v.abs()));
        for t in prompt..n {
            let got = model.forward(&ids[t..t + 1], (1, 1), ForwardOptions::new().kv_cache(&mut cache)).unwrap().to_vec_f32().unwrap();
            let both = model.forward(&[ids[t], ids[t]], (2, 1), ForwardOptions::new().kv_cache(&mut two)).unwrap().to_vec_f32().unwrap();
            let want = &full[t * 100..(t + 1) * 100];
            for (j, (g, w)) in got.iter().zip(want).enumerate() {
                prop_assert!((g - w).abs() <= 2e-5 * scale, "position {t} logit {j}: {g} vs {w}");
                // Two rows may take another matmul kernel than one (GEMM vs GEMV): equal to
                // rounding, not to the bit.
                for b in [both[j], both[100 + j]] {
                    prop_assert!((g - b).abs() <= 1e-6 * scale, "position {t} logit {j}: {g} vs replicated {b}");
                }
            }
        }
    }
}

#[test]
fn a_checkpoint_with_only_some_of_heads_tensors_is_refused_by_name() {
    let c = head(32, 100);
    let dev = Device::cpu().unwrap();
    let m = GPT::new(c.clone(), &dev, DType::F32, 1).unwrap();
    let host: BTreeMap<String, HostTensor> = m
        .named_parameters()
        .into_iter()
        .map(|(n, t)| (n, to_host(&t)))
        .collect();
    // An intermediate-month checkpoint: no smear yet.
    let mut no_smear = host.clone();
    no_smear.remove("smear_gate.weight");
    no_smear.remove("smear_lambda");
    let e = GPT::from_state_dict(
        c.clone(),
        &no_smear,
        "",
        "model_000100.pt",
        &dev,
        DType::F32,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("model_000100.pt")
            && (e.contains("smear_lambda") || e.contains("smear_gate.weight"))
            && e.contains("missing"),
        "{e}"
    );
    // HEAD tensors under a v1 config: the unexpected one is named.
    let v1 = GPTConfig {
        architecture: Architecture::V1,
        window_pattern: "L".into(),
        rope_base: 10000.0,
        ..c.clone()
    };
    let mut v1_host: BTreeMap<String, HostTensor> = GPT::new(v1.clone(), &dev, DType::F32, 1)
        .unwrap()
        .named_parameters()
        .into_iter()
        .map(|(n, t)| (n, to_host(&t)))
        .collect();
    v1_host.insert("backout_lambda".into(), host["backout_lambda"].clone());
    let e = GPT::from_state_dict(v1, &v1_host, "", "model.pt", &dev, DType::F32)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("backout_lambda") && e.contains("not a parameter"),
        "{e}"
    );
}
