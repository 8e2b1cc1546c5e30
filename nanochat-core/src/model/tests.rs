//! Property tests of the model: KV-cache decoding equals the full forward, the initial loss is
//! ln(vocab), one batch can be overfit, dropout only trains, generation is reproducible.

use proptest::prelude::*;

use super::*;
use crate::ops::Reduction;
use crate::optim::{AdamW, AdamWConfig};
use crate::{CoreError, DType, Device, Tape};

fn small(vocab: usize, n_kv_head: usize) -> GPTConfig {
    GPTConfig {
        vocab_size: vocab,
        n_layer: 2,
        n_head: 4,
        n_kv_head,
        n_embd: 32,
        block_size: 16,
        ..GPTConfig::default()
    }
}

/// Two layers of width 8 (2 heads sharing 1 kv head, block 8) over `vocab` tokens, with
/// biases when `bias`: the forward and weight-file tests' model.
pub(crate) fn two_layer_8(vocab: usize, bias: bool) -> GPTConfig {
    GPTConfig {
        n_head: 2,
        n_embd: 8,
        block_size: 8,
        bias,
        ..small(vocab, 1)
    }
}

/// The forward's output for `ids` shaped `bt` under `opts`, as f32s.
fn logits(model: &GPT, ids: &[u32], bt: (usize, usize), opts: ForwardOptions<'_>) -> Vec<f32> {
    model.forward(ids, bt, opts).unwrap().to_vec_f32().unwrap()
}

/// The logits of one row of `ids` at every position, as f32s.
pub(crate) fn row_logits(model: &GPT, ids: &[u32]) -> Vec<f32> {
    logits(model, ids, (1, ids.len()), ForwardOptions::new())
}

/// The logits of one row of 8 tokens, as f32s.
fn logits_1x8(model: &GPT, ids: &[u32]) -> Vec<f32> {
    logits(model, ids, (1, 8), ForwardOptions::new())
}

/// The mean loss of `ids` against `targets`, recorded on a new tape that watches `params`.
fn recorded_loss(
    model: &GPT,
    params: &[crate::Tensor],
    ids: &[u32],
    bt: (usize, usize),
    targets: &[i32],
) -> (Tape, crate::Tensor) {
    let tape = Tape::watching(params);
    let opts = ForwardOptions::new()
        .tape(&tape)
        .targets(targets, Reduction::Mean);
    let loss = model.forward(ids, bt, opts).unwrap();
    (tape, loss)
}

fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    (0..n as u64)
        .map(|i| ((i * 2654435761 + seed * 97) % vocab as u64) as u32)
        .collect()
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

/// A tensor of `shape` with [`Init::Linear`] values (f32).
pub(crate) fn linear_values(
    dev: &Device,
    shape: &[usize],
    rng: &mut rand::rngs::StdRng,
) -> crate::Tensor {
    crate::Tensor::from_f32(dev, &Init::Linear.values(shape, rng), shape, DType::F32).unwrap()
}

/// A model of `config` (init seed `init_seed`) whose output projections are random (seed
/// `proj_seed`) so that every layer matters, with the embedding as its lm_head when `tied`.
fn lively(dev: &Device, config: GPTConfig, init_seed: u64, proj_seed: u64, tied: bool) -> GPT {
    let mut model = GPT::new(config, dev, DType::F32, init_seed).unwrap();
    randomize_projections(&mut model, &mut rand::SeedableRng::seed_from_u64(proj_seed));
    if tied {
        model.lm_head.weight = model.transformer.wte.weight.clone();
    }
    model
}

/// nanochat's init zeroes the blocks' output projections, so no layer would change the output
/// (nor the context matter): give `attn.c_proj` and `mlp.c_proj` values.
pub(crate) fn randomize_projections(model: &mut GPT, rng: &mut rand::rngs::StdRng) {
    let dev = model.get_device().clone();
    for b in &mut model.transformer.h {
        for l in [&mut b.attn.c_proj, &mut b.mlp.c_proj] {
            let shape = l.weight.shape().to_vec();
            l.weight = linear_values(&dev, &shape, rng);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    /// Prefill a prompt, then feed the rest in chunks (one token or several): every position's
    /// logits equal the full forward's.
    #[test]
    fn kv_cache_decoding_equals_the_full_forward(prompt in 1usize..7, rest in 1usize..7, chunk in 1usize..4,
                                                  kv in prop::sample::select(vec![1usize, 2, 4]), seed in 0u64..1000) {
        let dev = Device::cpu().unwrap();
        let model = lively(&dev, small(29, kv), seed, seed, true);
        let n = prompt + rest;
        let ids = tokens(n, 29, seed);
        let full = model.forward(&ids, (1, n), ForwardOptions::new()).unwrap().to_vec_f32().unwrap();
        let mut cache = KvCache::new(model.config(), &dev, DType::F32, 1, n).unwrap();
        let mut got = model.forward(&ids[..prompt], (1, prompt), ForwardOptions::new().kv_cache(&mut cache)).unwrap().to_vec_f32().unwrap();
        let mut pos = prompt;
        while pos < n {
            let step = chunk.min(n - pos);
            got.extend(model.forward(&ids[pos..pos + step], (1, step), ForwardOptions::new().kv_cache(&mut cache)).unwrap().to_vec_f32().unwrap());
            pos += step;
        }
        prop_assert_eq!(cache.len(), n);
        let err = max_rel(&got, &full);
        prop_assert!(err < 1e-4, "max relative deviation {}", err);
    }
}

#[test]
fn initial_loss_is_ln_vocab() {
    let dev = Device::cpu().unwrap();
    for vocab in [50usize, 97, 32768] {
        let c = GPTConfig {
            vocab_size: vocab,
            ..small(vocab, 2)
        };
        let model = GPT::new(c, &dev, DType::F32, 1).unwrap();
        let ids = tokens(16, vocab, 3);
        let targets: Vec<i32> = tokens(16, vocab, 4).into_iter().map(|t| t as i32).collect();
        let loss = model
            .forward(
                &ids,
                (2, 8),
                ForwardOptions::new().targets(&targets, Reduction::Mean),
            )
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(
            (loss - (vocab as f32).ln()).abs() < 1e-3,
            "vocab {vocab}: loss {loss}"
        );
    }
}

fn overfit(bias: bool) -> f32 {
    let dev = Device::cpu().unwrap();
    let c = GPTConfig {
        bias,
        ..small(37, 2)
    };
    let model = GPT::new(c, &dev, DType::F32, 5).unwrap();
    let (b, t) = (2, 8);
    let ids = tokens(b * t, 37, 11);
    let targets: Vec<i32> = tokens(b * t, 37, 12)
        .into_iter()
        .map(|x| x as i32)
        .collect();
    let params = model.parameters();
    let mut opt = AdamW::new(AdamWConfig {
        lr: 1e-2,
        ..AdamWConfig::default()
    });
    let mut loss = f32::INFINITY;
    for _ in 0..150 {
        let (tape, l) = recorded_loss(&model, &params, &ids, (b, t), &targets);
        loss = l.to_scalar().unwrap();
        if loss < 0.05 {
            break;
        }
        let grads = tape.backward(&l).unwrap();
        if bias {
            let g = grads
                .get(model.transformer.h[0].mlp.c_fc.bias.as_ref().unwrap())
                .expect("bias gradient");
            assert_eq!(g.shape(), &[128]);
        }
        opt.step(&params, &grads).unwrap();
    }
    loss
}

#[test]
fn one_batch_overfits_with_adamw() {
    let loss = overfit(false);
    assert!(loss < 0.1, "loss after training: {loss}");
}

#[test]
fn one_batch_overfits_with_biases() {
    let loss = overfit(true);
    assert!(loss < 0.1, "loss after training: {loss}");
}

#[test]
fn dropout_applies_only_in_training_mode() {
    let dev = Device::cpu().unwrap();
    let c = GPTConfig {
        dropout: 0.5,
        ..small(31, 2)
    };
    let mut model = GPT::new(c.clone(), &dev, DType::F32, 2).unwrap();
    // c_proj starts at zero, which would hide dropout: give the MLP output weight values.
    let shape = model.transformer.h[0].mlp.c_proj.weight.shape().to_vec();
    let w = Init::Linear.values(&shape, &mut rand::SeedableRng::seed_from_u64(1));
    model.transformer.h[0].mlp.c_proj.weight =
        crate::Tensor::from_f32(&dev, &w, &shape, DType::F32).unwrap();
    model.lm_head.weight = model.transformer.wte.weight.clone();
    let ids = tokens(8, 31, 1);
    let eval1 = logits_1x8(&model, &ids);
    let eval2 = logits_1x8(&model, &ids);
    assert_eq!(eval1, eval2);
    model.train();
    let train1 = logits_1x8(&model, &ids);
    let train2 = logits_1x8(&model, &ids);
    assert_ne!(train1, eval1);
    assert_ne!(train1, train2, "each step draws a new mask");
    model.eval();
    assert_eq!(logits_1x8(&model, &ids), eval1);
}

#[test]
fn greedy_generation_matches_the_full_forward_and_seeds_reproduce() {
    let dev = Device::cpu().unwrap();
    let mut model = GPT::new(small(23, 2), &dev, DType::F32, 9).unwrap();
    model.lm_head.weight = model.transformer.wte.weight.clone();
    let prompt = vec![1u32, 5, 7];
    let greedy: Vec<u32> = model
        .generate(
            &prompt,
            6,
            SamplingParams {
                temperature: 0.0,
                top_k: None,
                seed: 0,
            },
        )
        .unwrap()
        .collect::<crate::Result<_>>()
        .unwrap();
    // The same by re-running the whole sequence each step (nanochat's naive generate).
    let mut ids = prompt.clone();
    for _ in 0..6 {
        let logits = row_logits(&model, &ids);
        let last = &logits[logits.len() - 23..];
        ids.push(
            last.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0 as u32,
        );
    }
    assert_eq!(greedy, ids[3..]);
    let sample = |seed| -> Vec<u32> {
        let p = SamplingParams {
            temperature: 5.0,
            top_k: Some(10),
            seed,
        };
        model
            .generate(&prompt, 8, p)
            .unwrap()
            .map(|t| t.unwrap())
            .collect()
    };
    assert_eq!(sample(7), sample(7));
    assert!((0..5).any(|s| sample(s) != sample(7)));
    // The context is the limit: 13 tokens fill block_size 16 after a 3-token prompt, and the
    // logits of the last position give one more.
    let mut g = model
        .generate(&prompt, 100, SamplingParams::default())
        .unwrap();
    let n = g.by_ref().count();
    assert_eq!(n, 14);
    assert!(g.context_full());
}

#[test]
fn counts_follow_nanochat() {
    let dev = Device::cpu().unwrap();
    let c = small(64, 2);
    let model = GPT::new(c.clone(), &dev, DType::F32, 0).unwrap();
    let (e, kv) = (32, 2 * 8);
    let per_layer = e * e + 2 * kv * e + e * e + 2 * 4 * e * e;
    assert_eq!(model.num_params(), 64 * e * 2 + 2 * per_layer);
    let flops = 6.0 * (2 * per_layer + 64 * e) as f64 + 12.0 * (2 * 4 * 8 * 16) as f64;
    assert_eq!(model.estimate_flops(), flops);
    assert_eq!(model.get_device(), &dev);
}

/// The config's own count equals the built model's, for v1 (with and without biases, GQA) and
/// HEAD (value embeddings on alternate layers, a padded vocabulary, the scalars); a model far
/// larger than the machine is refused before anything is allocated, naming its size.
#[test]
fn the_config_counts_its_parameters_and_too_large_a_model_is_refused() {
    let dev = Device::cpu().unwrap();
    let head = |n_layer: usize, vocab: usize| {
        GPTConfig::from_json(&format!(
            r#"{{"sequence_len": 64, "vocab_size": {vocab}, "n_layer": {n_layer}, "n_head": 4, "n_kv_head": 2, "n_embd": 64, "window_pattern": "SSSL"}}"#
        ))
        .unwrap()
    };
    for c in [
        small(64, 2),
        small(70, 4),
        two_layer_8(50, true),
        head(3, 330),
        head(4, 320),
    ] {
        let model = GPT::new(c.clone(), &dev, DType::F32, 0).unwrap();
        assert_eq!(c.num_params(), model.num_params() as u64, "{c:?}");
    }
    let huge = GPTConfig::from_depth(4, 1 << 31, 64);
    let t = std::time::Instant::now();
    let err = GPT::new(huge, &dev, DType::F32, 0).unwrap_err();
    assert!(
        t.elapsed().as_secs() < 5,
        "refused only after {:?}",
        t.elapsed()
    );
    assert!(matches!(err, CoreError::ModelTooLarge { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("vocab_size 2147483648"), "{msg}");
    assert!(msg.contains("GiB free"), "{msg}");
}

#[test]
fn bad_inputs_are_errors() {
    let dev = Device::cpu().unwrap();
    let model = GPT::new(small(20, 2), &dev, DType::F32, 0).unwrap();
    assert!(model
        .forward(&[1, 2, 30], (1, 3), ForwardOptions::new())
        .unwrap_err()
        .to_string()
        .contains("token id 30"));
    assert!(matches!(
        model
            .forward(&[0; 17], (1, 17), ForwardOptions::new())
            .unwrap_err(),
        CoreError::ContextFull {
            len: 17,
            limit: 16,
            ..
        }
    ));
    assert!(model
        .forward(&[0; 4], (1, 3), ForwardOptions::new())
        .is_err());
    assert!(GPT::new(
        GPTConfig {
            n_kv_head: 3,
            ..small(20, 2)
        },
        &dev,
        DType::F32,
        0
    )
    .is_err());
}

#[test]
fn bf16_mixed_precision_tracks_f32_and_trains() {
    let dev = Device::cpu().unwrap();
    let mut model = GPT::new(small(37, 2), &dev, DType::F32, 3).unwrap();
    model.lm_head.weight = model.transformer.wte.weight.clone();
    let ids = tokens(16, 37, 5);
    let f32_logits = model
        .forward(&ids, (2, 8), ForwardOptions::new())
        .unwrap()
        .to_vec_f32()
        .unwrap();
    model.set_compute_dtype(DType::BF16).unwrap();
    let bf16_logits = model.forward(&ids, (2, 8), ForwardOptions::new()).unwrap();
    assert_eq!(
        bf16_logits.dtype(),
        DType::F32,
        "logits are f32 whatever the compute dtype"
    );
    let err = max_rel(&bf16_logits.to_vec_f32().unwrap(), &f32_logits);
    assert!(err < 0.1, "bf16 logits deviate by {err}");
    // Gradients reach the f32 master weights, and training works.
    let params = model.parameters();
    let targets: Vec<i32> = tokens(16, 37, 6).into_iter().map(|t| t as i32).collect();
    let mut opt = AdamW::new(AdamWConfig {
        lr: 1e-2,
        ..AdamWConfig::default()
    });
    let mut first = None;
    let mut last = 0.0;
    for _ in 0..40 {
        let (tape, l) = recorded_loss(&model, &params, &ids, (2, 8), &targets);
        last = l.to_scalar().unwrap();
        first.get_or_insert(last);
        let grads = tape.backward(&l).unwrap();
        assert_eq!(grads.get(&params[1]).unwrap().dtype(), DType::F32);
        opt.step(&params, &grads).unwrap();
    }
    assert!(
        last < 0.5 * first.unwrap(),
        "bf16 training: loss {} -> {last}",
        first.unwrap()
    );
}

/// The prefill's last-position logits equal the last row of the full cached forward.
#[test]
fn last_position_prefill_equals_the_full_forward_last_row() {
    let dev = Device::cpu().unwrap();
    let model = lively(&dev, small(31, 2), 4, 4, true);
    for (batch, seq) in [(1usize, 1usize), (1, 9), (3, 5)] {
        let ids = tokens(batch * seq, 31, seq as u64);
        let mut c1 = KvCache::new(model.config(), &dev, DType::F32, batch, 16).unwrap();
        let full = model
            .forward(&ids, (batch, seq), ForwardOptions::new().kv_cache(&mut c1))
            .unwrap()
            .to_vec_f32()
            .unwrap();
        let mut c2 = KvCache::new(model.config(), &dev, DType::F32, batch, 16).unwrap();
        let last = model
            .forward(
                &ids,
                (batch, seq),
                ForwardOptions::new()
                    .kv_cache(&mut c2)
                    .positions(LogitPositions::Last),
            )
            .unwrap();
        assert_eq!(last.shape(), &[batch, 1, 31]);
        let last = last.to_vec_f32().unwrap();
        for b in 0..batch {
            let want = &full[((b + 1) * seq - 1) * 31..(b + 1) * seq * 31];
            assert!(
                max_rel(&last[b * 31..(b + 1) * 31], want) < 1e-5,
                "batch {batch} seq {seq} row {b}"
            );
        }
        assert_eq!(c2.len(), seq);
    }
}

/// The logit-position tests' setup: a [`lively`] model over 31 tokens (2 kv heads, init seed 4,
/// projections seeded `proj_seed`, the embedding as lm_head when `tied`), `batch * seq` tokens
/// drawn with `ids_seed`, and the full forward's logits of them.
fn positions_setup(
    proj_seed: u64,
    tied: bool,
    (batch, seq): (usize, usize),
    ids_seed: u64,
) -> (GPT, Vec<u32>, Vec<f32>) {
    let dev = Device::cpu().unwrap();
    let model = lively(&dev, small(31, 2), 4, proj_seed, tied);
    let ids = tokens(batch * seq, 31, ids_seed);
    let full = logits(&model, &ids, (batch, seq), ForwardOptions::new());
    (model, ids, full)
}

/// `LogitPositions::PerRow` picks row b's position p_b of the full forward, and right padding after it
/// changes nothing (the model is causal).
#[test]
fn per_row_positions_pick_one_position_per_row() {
    let (batch, seq) = (3usize, 7usize);
    let (model, ids, full) = positions_setup(5, true, (batch, seq), 11);
    let positions = [6usize, 0, 3];
    let at = model
        .forward(
            &ids,
            (batch, seq),
            ForwardOptions::new().positions(LogitPositions::PerRow(&positions)),
        )
        .unwrap();
    assert_eq!(at.shape(), &[batch, 1, 31]);
    let at = at.to_vec_f32().unwrap();
    for (b, &p) in positions.iter().enumerate() {
        let want = &full[(b * seq + p) * 31..(b * seq + p + 1) * 31];
        assert!(max_rel(&at[b * 31..(b + 1) * 31], want) < 1e-5, "row {b}");
    }
    // Row 2 alone, cut after its position 3, gives the same logits.
    let alone = logits(
        &model,
        &ids[2 * seq..2 * seq + 4],
        (1, 4),
        ForwardOptions::new().positions(LogitPositions::PerRow(&[3])),
    );
    assert!(max_rel(&alone, &at[2 * 31..3 * 31]) < 1e-5);
    assert!(model
        .forward(
            &ids,
            (batch, seq),
            ForwardOptions::new().positions(LogitPositions::PerRow(&[1, 2]))
        )
        .is_err());
    assert!(model
        .forward(
            &ids,
            (batch, seq),
            ForwardOptions::new().positions(LogitPositions::PerRow(&[1, 2, 7]))
        )
        .is_err());
}

/// `LogitPositions::Flat` gathers any (row, position) pairs, repeats included.
#[test]
fn flat_positions_gather_any_positions() {
    let (batch, seq) = (2usize, 5usize);
    let (model, ids, full) = positions_setup(6, false, (batch, seq), 12);
    let flat = [0usize, 4, 9, 4, 7];
    let got = logits(
        &model,
        &ids,
        (batch, seq),
        ForwardOptions::new().positions(LogitPositions::Flat(&flat)),
    );
    for (i, &r) in flat.iter().enumerate() {
        assert!(max_rel(&got[i * 31..(i + 1) * 31], &full[r * 31..(r + 1) * 31]) < 1e-5);
    }
    assert!(model
        .forward(
            &ids,
            (batch, seq),
            ForwardOptions::new().positions(LogitPositions::Flat(&[10]))
        )
        .is_err());
    assert!(model
        .forward(
            &ids,
            (batch, seq),
            ForwardOptions::new().positions(LogitPositions::Flat(&[]))
        )
        .is_err());
}
