//! Tests of the module structure and of the one forward: the parameters' names are the field
//! paths (nanochat's state_dict names, in their order), the forward's options combine as
//! documented, a loss is the cross-entropy of the logits, and the model calls no kernel itself.

use super::*;
use crate::ops::{self, Reduction};
use crate::{CoreError, DType, Device, Tape, Tensor};

fn tiny(bias: bool) -> GPTConfig {
    super::tests::two_layer_8(13, bias)
}

/// A Linear's fields under `name`, with its bias when `bias`.
fn linear_fields(name: String, l: &Linear, bias: bool) -> Vec<(String, &Tensor)> {
    assert_eq!(l.bias.is_some(), bias, "{name}");
    let mut v = vec![(format!("{name}.weight"), &l.weight)];
    v.extend(l.bias.iter().map(|b| (format!("{name}.bias"), b)));
    v
}

/// `named_parameters` lists each field under its path, in the order `build` asks for them.
#[test]
fn named_parameters_are_the_field_paths() {
    let dev = Device::cpu().unwrap();
    for bias in [false, true] {
        let mut asked = Vec::new();
        let m = GPT::build(tiny(bias), &dev, DType::F32, |name, shape, _| {
            asked.push(name.to_string());
            Tensor::zeros(&dev, shape, DType::F32)
        })
        .unwrap();
        let mut want: Vec<(String, &Tensor)> =
            vec![("transformer.wte.weight".into(), &m.transformer.wte.weight)];
        let linear = |name: String, l| linear_fields(name, l, bias);
        let mut layers = Vec::new();
        for (i, b) in m.transformer.h.iter().enumerate() {
            let p = format!("transformer.h.{i}");
            layers.extend(linear(format!("{p}.attn.c_q"), &b.attn.c_q));
            layers.extend(linear(format!("{p}.attn.c_k"), &b.attn.c_k));
            layers.extend(linear(format!("{p}.attn.c_v"), &b.attn.c_v));
            layers.extend(linear(format!("{p}.attn.c_proj"), &b.attn.c_proj));
            layers.extend(linear(format!("{p}.mlp.c_fc"), &b.mlp.c_fc));
            layers.extend(linear(format!("{p}.mlp.c_proj"), &b.mlp.c_proj));
        }
        want.extend(layers);
        want.extend(linear("lm_head".into(), &m.lm_head));
        let got = m.named_parameters();
        let got_names: Vec<_> = got.iter().map(|(n, _)| n.clone()).collect();
        let want_names: Vec<_> = want.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(got_names, want_names);
        assert_eq!(asked, want_names, "build asks in the listing's order");
        for ((n, g), (_, w)) in got.iter().zip(&want) {
            assert_eq!(g.id(), w.id(), "{n} is not the field's tensor");
        }
    }
    // Exactly nanochat's state_dict, in its order.
    let m = GPT::new(tiny(false), &dev, DType::F32, 0).unwrap();
    let mut want = vec!["transformer.wte.weight".to_string()];
    for i in 0..2 {
        for l in [
            "attn.c_q",
            "attn.c_k",
            "attn.c_v",
            "attn.c_proj",
            "mlp.c_fc",
            "mlp.c_proj",
        ] {
            want.push(format!("transformer.h.{i}.{l}.weight"));
        }
    }
    want.push("lm_head.weight".into());
    let got: Vec<_> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(got, want);
    let shapes: Vec<_> = m
        .named_parameters()
        .into_iter()
        .map(|(_, t)| t.shape().to_vec())
        .collect();
    assert_eq!(
        shapes[..4],
        [vec![13, 8], vec![8, 8], vec![4, 8], vec![4, 8]]
    );
    assert_eq!(shapes[5..7], [vec![32, 8], vec![8, 32]]);
    assert_eq!(shapes.last().unwrap(), &vec![13, 8]);
}

/// A tensor of another shape than its field's is an error naming the parameter.
#[test]
fn build_names_a_parameter_of_the_wrong_shape() {
    let dev = Device::cpu().unwrap();
    let e = GPT::build(tiny(false), &dev, DType::F32, |name, shape, _| {
        let shape = if name == "transformer.h.1.mlp.c_fc.weight" {
            vec![3, 3]
        } else {
            shape.to_vec()
        };
        Tensor::zeros(&dev, &shape, DType::F32)
    })
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("transformer.h.1.mlp.c_fc.weight"), "{e}");
}

/// Options that do not combine are errors, and leave the cache as it was.
#[test]
fn forward_options_that_do_not_combine_are_errors() {
    let dev = Device::cpu().unwrap();
    let m = GPT::new(tiny(false), &dev, DType::F32, 1).unwrap();
    let ids = [1u32, 2, 3, 4];
    let targets = [2i32, 3, 4, 5];
    let tape = Tape::new();
    let mut cache = KvCache::new(m.config(), &dev, DType::F32, 1, 8).unwrap();
    let e = m
        .forward(
            &ids,
            (1, 4),
            ForwardOptions::new().tape(&tape).kv_cache(&mut cache),
        )
        .unwrap_err();
    assert!(
        matches!(&e, CoreError::Tape { why, .. } if why.contains("no tape")),
        "{e}"
    );
    let last = ForwardOptions::new().positions(LogitPositions::Last);
    assert!(m.forward(&ids, (1, 4), last.tape(&tape)).is_err());
    let last = ForwardOptions::new().positions(LogitPositions::Last);
    let e = m
        .forward(&ids, (1, 4), last.targets(&targets, Reduction::Mean))
        .unwrap_err();
    assert!(e.to_string().contains("every position"), "{e}");
    let flat = ForwardOptions::new().positions(LogitPositions::Flat(&[4]));
    assert!(m.forward(&ids, (1, 4), flat).is_err());
    let mut two = KvCache::new(m.config(), &dev, DType::F32, 2, 8).unwrap();
    let e = m
        .forward(&ids, (1, 4), ForwardOptions::new().kv_cache(&mut two))
        .unwrap_err();
    assert!(e.to_string().contains("holds 2 sequences"), "{e}");
    assert_eq!(cache.len(), 0);
    for _ in 0..2 {
        m.forward(&ids, (1, 4), ForwardOptions::new().kv_cache(&mut cache))
            .unwrap();
    }
    let e = m
        .forward(
            &ids[..1],
            (1, 1),
            ForwardOptions::new().kv_cache(&mut cache),
        )
        .unwrap_err();
    assert!(e.to_string().contains("KV cache full"), "{e}");
    assert_eq!(cache.len(), 8);
}

/// With targets the forward returns the cross-entropy of its logits: the mean, or (B, T).
#[test]
fn targets_give_the_cross_entropy_of_the_logits() {
    let dev = Device::cpu().unwrap();
    let mut m = GPT::new(tiny(false), &dev, DType::F32, 2).unwrap();
    m.lm_head.weight = m.transformer.wte.weight.clone();
    let ids: Vec<u32> = (0..8).map(|i| (i * 5 % 13) as u32).collect();
    let targets: Vec<i32> = vec![3, -1, 7, 1, 0, 12, -1, 4];
    let logits = m.forward(&ids, (2, 4), ForwardOptions::new()).unwrap();
    assert_eq!(logits.shape(), &[2, 4, 13]);
    for reduction in [Reduction::Mean, Reduction::None] {
        let want = ops::cross_entropy(None, &logits, &targets, reduction)
            .unwrap()
            .to_vec_f32()
            .unwrap();
        let loss = m
            .forward(
                &ids,
                (2, 4),
                ForwardOptions::new().targets(&targets, reduction),
            )
            .unwrap();
        let shape: &[usize] = match reduction {
            Reduction::Mean => &[],
            Reduction::None => &[2, 4],
        };
        assert_eq!(loss.shape(), shape);
        for (g, w) in loss.to_vec_f32().unwrap().iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{reduction:?}: {g} vs {w}");
        }
    }
}

/// The model reaches the kernels only through `ops` (nothing under src/model names the kernel
/// crate).
#[test]
fn the_model_calls_no_kernel() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/model");
    let kernels = ["nanochat", "_kernels"].concat();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                !text.contains(&kernels),
                "{} uses the kernels",
                path.display()
            );
            seen += 1;
        }
    }
    assert!(seen >= 10, "read {seen} files of {}", dir.display());
}
