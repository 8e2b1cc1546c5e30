//! The training loop end to end on the bundled corpus: the loss goes down, and a resumed run is
//! bit-identical to an uninterrupted one.

use std::sync::Arc;

use super::*;
use crate::data::{bundled_documents, split_train_val, Source};
use crate::model::GPTConfig;

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
        optim: OptimConfig::default(),
        schedule: LrSchedule::new(total_steps as usize),
        eval_every: 0,
        save_every,
        sample_prompts: vec!["Call me".into()],
        tokenizer_path: dir,
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
