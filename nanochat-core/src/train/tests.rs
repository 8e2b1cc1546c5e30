//! The training loop end to end on the bundled corpus: the loss goes down, and a resumed run is
//! bit-identical to an uninterrupted one.

use std::sync::Arc;

use super::*;
use crate::data::{bundled_documents, split_train_val, Source};
use crate::model::GPTConfig;
use crate::optim::{LrSchedule, OptimConfig};

fn tokenizer() -> Tokenizer {
    crate::tokenizer::tests::small_tokenizer().clone()
}

fn setup(
    root: &std::path::Path,
    total_steps: u64,
    save_every: u64,
) -> (Box<dyn BatchSource>, Vec<Batch>, TrainConfig, GPTConfig) {
    let tok = tokenizer();
    let (train, val) = split_train_val(bundled_documents().unwrap(), 0.95, 0.05).unwrap();
    let (b, t) = (4, 64);
    let loader = DataLoader::new(vec![Source::Docs(Arc::new(train))], tok.clone(), b, t).unwrap();
    let mut val_loader =
        DataLoader::new(vec![Source::Docs(Arc::new(val))], tok.clone(), b, t).unwrap();
    let val = (0..4).map(|_| val_loader.next_batch().unwrap()).collect();
    let dir = root.join("tok");
    tok.save(&dir).unwrap();
    let cfg = TrainConfig {
        phase: Phase::Base,
        root: root.to_path_buf(),
        model_tag: "t".into(),
        batch_size: b,
        seq_len: t,
        total_batch_size: 2 * b * t,
        total_steps,
        optim: OptimSettings::V1(OptimConfig::default()),
        schedule: Schedules::V1(LrSchedule::new(total_steps as usize)),
        eval_every: 0,
        save_every,
        sample_prompts: vec!["Call me".into()],
        tokenizer_path: dir,
        tokenizer_record: None,
        compute_dtype: DType::F32,
        run: serde_json::Value::Null,
    };
    let model = GPTConfig {
        vocab_size: tok.vocab_size(),
        n_layer: 2,
        n_head: 2,
        n_kv_head: 1,
        n_embd: 64,
        block_size: t,
        dropout: 0.1,
        ..GPTConfig::default()
    };
    (Box::new(loader), val, cfg, model)
}

#[test]
fn a_tiny_run_on_the_bundled_corpus_cuts_val_bpb_by_a_quarter() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, val, cfg, mc) = setup(tmp.path(), 60, 0);
    let dev = Device::cpu().unwrap();
    let mut trainer = Trainer::new(
        GPT::new(mc, &dev, DType::F32, 1).unwrap(),
        tokenizer(),
        train,
        val,
        cfg,
    )
    .unwrap();
    let start = trainer.evaluate().unwrap();
    let mut events = Vec::new();
    let end = trainer
        .run(&mut |e| events.push(e.clone()))
        .unwrap()
        .unwrap();
    assert!(end < 0.75 * start, "val bpb {start:.3} -> {end:.3}");
    // One metrics line per step, the last with the val bpb.
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(trainer.cfg.checkpoint_dir().join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(lines.len(), 60);
    assert_eq!(lines[59]["step"], 60);
    assert!(lines[59]["val_bpb"].as_f64().is_some());
    assert!(events.iter().any(|e| matches!(e, Event::Sample { .. })));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Saved { step: 60, .. })));
}

fn weights(model: &GPT) -> Vec<Vec<u32>> {
    model
        .named_parameters()
        .iter()
        .map(|(_, p)| {
            p.to_vec_f32()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        })
        .collect()
}

#[test]
fn resuming_gives_bit_identical_weights() {
    let dev = Device::cpu().unwrap();
    // 2N steps in one go.
    let full = tempfile::tempdir().unwrap();
    let (train, val, cfg, mc) = setup(full.path(), 6, 3);
    let mut a = Trainer::new(
        GPT::new(mc.clone(), &dev, DType::F32, 7).unwrap(),
        tokenizer(),
        train,
        val,
        cfg,
    )
    .unwrap();
    a.run(&mut |_| {}).unwrap();
    // N steps, then a fresh process-like resume from the checkpoint at N.
    let split = tempfile::tempdir().unwrap();
    let (train, val, cfg, _) = setup(split.path(), 6, 3);
    let mut b = Trainer::new(
        GPT::new(mc, &dev, DType::F32, 7).unwrap(),
        tokenizer(),
        train,
        val,
        cfg.clone(),
    )
    .unwrap();
    for _ in 0..3 {
        b.train_step().unwrap();
    }
    b.save().unwrap();
    drop(b);
    let (train, val, _, _) = setup(split.path(), 6, 3);
    let mut c = Trainer::resume(3, &dev, tokenizer(), train, val, cfg).unwrap();
    assert_eq!(c.step, 3);
    c.run(&mut |_| {}).unwrap();
    assert_eq!(c.step, 6);
    assert!(
        weights(&a.model) == weights(&c.model),
        "weights differ after resuming"
    );
    assert_eq!(a.model.rng_state(), c.model.rng_state());
}

/// Batches in a loop (position = index of the next one).
struct Batches {
    batches: Vec<Batch>,
    next: usize,
}

impl BatchSource for Batches {
    fn next_batch(&mut self) -> Result<Batch> {
        let b = self.batches[self.next % self.batches.len()].clone();
        self.next += 1;
        Ok(b)
    }
    fn position(&self) -> LoaderState {
        LoaderState {
            offset: self.next,
            ..LoaderState::default()
        }
    }
    fn restore(&mut self, state: LoaderState) -> Result<()> {
        self.next = state.offset;
        Ok(())
    }
}

/// Two micro-batches of the bundled corpus (A with its row 0 masked), and an empty one.
fn masked_fixture() -> (Batch, Batch, Batch, GPTConfig) {
    let (mut train, _, _, mc) = setup(tempfile::tempdir().unwrap().path(), 1, 0);
    let mut a = train.next_batch().unwrap();
    let b = train.next_batch().unwrap();
    a.targets[..a.seq].fill(-1);
    let mut e = train.next_batch().unwrap();
    e.targets.fill(-1);
    (a, b, e, mc)
}

fn grads_of(model: &GPT, acc: &Accumulated) -> Vec<Vec<f32>> {
    model
        .named_parameters()
        .iter()
        .map(|(n, p)| acc.grads.require(p, n).unwrap().to_vec_f32().unwrap())
        .collect()
}

fn assert_close(a: &[Vec<f32>], b: &[Vec<f32>], what: &str) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.len(), y.len());
        for (u, v) in x.iter().zip(y) {
            assert!((u - v).abs() <= 1e-6, "{what}: {u} vs {v}");
        }
    }
}

#[test]
fn empty_micro_batches_and_rows_add_no_loss_and_no_gradient() {
    let (a, b, e, mc) = masked_fixture();
    let dev = Device::cpu().unwrap();
    let mut model = GPT::new(mc, &dev, DType::F32, 3).unwrap();
    model.train();
    let run = |batches: &[Batch]| {
        model.set_rng_state(11);
        accumulate_gradients(&model, batches).unwrap()
    };
    let without = run(&[a.clone(), b.clone()]);
    let with = run(&[e.clone(), a.clone(), e.clone(), b.clone()]);
    assert_eq!(
        (with.masked_rows, with.empty_micro_batches),
        (2 * e.batch + 1, 2)
    );
    assert_eq!((without.masked_rows, without.empty_micro_batches), (1, 0));
    let (lw, lo) = (with.loss.unwrap(), without.loss.unwrap());
    assert!(lw.is_finite() && (lw - lo).abs() <= 1e-6, "{lw} vs {lo}");
    assert_close(
        &grads_of(&model, &with),
        &grads_of(&model, &without),
        "with empty micro-batches",
    );
    // A masked row inside a micro-batch: the same as the micro-batch without that row (dropout
    // off, so that the rows draw no masks).
    let mut plain = GPT::new(
        GPTConfig {
            dropout: 0.0,
            ..model.config().clone()
        },
        &dev,
        DType::F32,
        3,
    )
    .unwrap();
    plain.train();
    let rows = |x: &Batch, from: usize| Batch {
        inputs: x.inputs[from * x.seq..].to_vec(),
        targets: x.targets[from * x.seq..].to_vec(),
        batch: x.batch - from,
        seq: x.seq,
    };
    let full = accumulate_gradients(&plain, std::slice::from_ref(&a)).unwrap();
    let cut = accumulate_gradients(&plain, &[rows(&a, 1)]).unwrap();
    assert_eq!((full.masked_rows, cut.masked_rows), (1, 0));
    assert!((full.loss.unwrap() - cut.loss.unwrap()).abs() <= 1e-6);
    assert_close(
        &grads_of(&plain, &full),
        &grads_of(&plain, &cut),
        "with a masked row",
    );
    // Only empty micro-batches: nothing to step on.
    let none = run(&[e.clone(), e]);
    assert!(none.is_empty() && none.grads.is_empty());
    assert_eq!(none.masked_rows, 2 * b.batch);
}

/// A trainer over `batches` (looped), one micro-batch each of `accum` per step, validated on
/// `val`.
fn masked_trainer(
    root: &std::path::Path,
    mc: &GPTConfig,
    batches: Vec<Batch>,
    accum: usize,
    val: Vec<Batch>,
    total_steps: u64,
) -> Trainer {
    let (_, _, mut cfg, _) = setup(root, total_steps, 0);
    cfg.total_batch_size = accum * cfg.batch_size * cfg.seq_len;
    cfg.sample_prompts.clear();
    let dev = Device::cpu().unwrap();
    let source = Box::new(Batches { batches, next: 0 });
    Trainer::new(
        GPT::new(mc.clone(), &dev, DType::F32, 5).unwrap(),
        tokenizer(),
        source,
        val,
        cfg,
    )
    .unwrap()
}

fn metrics_lines(t: &Trainer) -> Vec<serde_json::Value> {
    std::fs::read_to_string(t.cfg.checkpoint_dir().join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_step_with_empty_micro_batches_equals_the_step_without_them() {
    let (a, b, e, mc) = masked_fixture();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Validation on an empty row too: measured over the others, no error.
    let val = vec![e.clone(), b.clone()];
    let mut with = masked_trainer(
        d1.path(),
        &mc,
        vec![a.clone(), e.clone(), b.clone()],
        3,
        val.clone(),
        2,
    );
    let mut without = masked_trainer(d2.path(), &mc, vec![a, b], 2, val, 2);
    with.run(&mut |_| {}).unwrap();
    without.run(&mut |_| {}).unwrap();
    let (w1, w2) = (weights(&with.model), weights(&without.model));
    let floats = |w: Vec<Vec<u32>>| -> Vec<Vec<f32>> {
        w.into_iter()
            .map(|v| v.into_iter().map(f32::from_bits).collect())
            .collect()
    };
    assert_close(&floats(w1), &floats(w2), "weights after 2 steps");
    let (m1, m2) = (metrics_lines(&with), metrics_lines(&without));
    assert_eq!(m1.len(), 2);
    for (x, y) in m1.iter().zip(&m2) {
        assert_eq!(x["masked_rows"], 4 + 1, "{x}");
        assert_eq!(y["masked_rows"], 1, "{y}");
        assert!((x["loss"].as_f64().unwrap() - y["loss"].as_f64().unwrap()).abs() <= 1e-6);
        assert!(x.get("skipped").is_none(), "{x}");
    }
    let bpb = m1[1]["val_bpb"].as_f64().unwrap();
    assert!(bpb.is_finite() && bpb == m2[1]["val_bpb"].as_f64().unwrap());
}

#[test]
fn a_step_of_empty_micro_batches_is_skipped() {
    let (_, _, e, mc) = masked_fixture();
    let dir = tempfile::tempdir().unwrap();
    // The validation rows are all empty too: no bpb to measure, no error either.
    let mut t = masked_trainer(dir.path(), &mc, vec![e.clone()], 2, vec![e.clone()], 1);
    let before = weights(&t.model);
    let out = t.train_step().unwrap();
    assert_eq!(
        out,
        StepOutcome {
            loss: None,
            masked_rows: 2 * e.batch,
            empty_micro_batches: 2,
            micro_batches: 2,
            progress: 0.0,
            grad_norm: None,
        }
    );
    assert!(out.skipped());
    assert_eq!(t.step, 1);
    assert!(
        weights(&t.model) == before,
        "a skipped step changed the weights"
    );
    // Through the loop: the metrics line says so.
    let dir = tempfile::tempdir().unwrap();
    let mut t = masked_trainer(dir.path(), &mc, vec![e.clone()], 2, vec![e], 1);
    let mut steps = Vec::new();
    t.run(&mut |ev| {
        if let Event::Step(m) = ev {
            steps.push(m.clone())
        }
    })
    .unwrap();
    assert_eq!(steps.len(), 1);
    assert!(steps[0].skipped && steps[0].loss.is_none());
    let m = metrics_lines(&t);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["skipped"], true);
    assert_eq!(m[0]["masked_rows"], 8);
    assert!(m[0]["loss"].is_null(), "{}", m[0]);
    assert!(weights(&t.model) == before);
}

/// A total batch size that is not a positive multiple of one micro-batch is refused, naming
/// the setting, its value and the micro-batch.
#[test]
fn a_total_batch_size_off_the_micro_batch_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, _, mut cfg, _) = setup(tmp.path(), 1, 0);
    cfg.total_batch_size = 100;
    let e = cfg.grad_accum_steps().unwrap_err();
    assert!(
        matches!(&e, CoreError::InvalidArgument { name: "total batch size", value, .. } if value == "100"),
        "{e:?}"
    );
    let e = e.to_string();
    assert!(e.contains("multiple") && e.contains("= 256"), "{e}");
    cfg.total_batch_size = 512;
    assert_eq!(cfg.grad_accum_steps().unwrap(), 2);
}

#[test]
fn the_shares_of_a_step_sum_to_the_step() {
    let (a, b, e, mc) = masked_fixture();
    let dev = Device::cpu().unwrap();
    let model = GPT::new(GPTConfig { dropout: 0.0, ..mc }, &dev, DType::F32, 3).unwrap();
    let batches = [a.clone(), e, b, a];
    let whole = accumulate_share(&model, &batches, 0..4).unwrap();
    let plain = accumulate_gradients(&model, &batches).unwrap();
    // The whole step as one share is accumulate_gradients bit for bit.
    assert_eq!(whole.acc.loss, plain.loss);
    assert_eq!(grads_of(&model, &whole.acc), grads_of(&model, &plain));
    assert_eq!((whole.used, whole.acc.empty_micro_batches), (3, 1));
    // Two ranks' shares: the losses add up exactly (each slot is one rank's), so the step's
    // loss is the same number; the gradients add up to the step's.
    let (p0, p1) = (
        accumulate_share(&model, &batches, 0..2).unwrap(),
        accumulate_share(&model, &batches, 2..4).unwrap(),
    );
    let summed: Vec<f64> = p0
        .losses
        .iter()
        .zip(&p1.losses)
        .map(|(x, y)| x + y)
        .collect();
    assert_eq!(summed, whole.losses);
    assert_eq!(Some(step_loss(&summed, p0.used)), plain.loss);
    assert_eq!((p0.used, p1.used), (3, 3));
    let (g0, g1) = (grads_of(&model, &p0.acc), grads_of(&model, &p1.acc));
    let added: Vec<Vec<f32>> = g0
        .iter()
        .zip(&g1)
        .map(|(x, y)| x.iter().zip(y).map(|(u, v)| u + v).collect())
        .collect();
    assert_close(&added, &grads_of(&model, &plain), "two shares");
    assert!(accumulate_share(&model, &batches, 3..5).is_err());
    // The logged gradient norm is clip_grad_norm's (which computes it on the host in f64).
    let params = model.parameters();
    let norm =
        crate::dist::sync::grad_norm(&crate::dist::SingleProcess, None, &params, &plain.grads)
            .unwrap();
    let mut grads = plain.grads;
    let host = clip_grad_norm(&mut grads, &params, f64::INFINITY).unwrap();
    assert!((norm - host).abs() <= 1e-5 * host, "{norm} vs {host}");
}
