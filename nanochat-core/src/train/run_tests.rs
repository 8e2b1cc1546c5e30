//! Base and fine-tuning runs set up from their options ([`BaseRun::prepare`],
//! [`ChatRun::prepare`]): the model config, the data, the input accounting, the summary and
//! report stage, and the errors of bad settings.

use std::path::Path;

use super::*;
use crate::checkpoint::save_checkpoint;
use crate::model::{Architecture, GPTConfig, ModelSize};
use crate::paths::Paths;

/// The small test tokenizer, saved as `root/tokenizer` (where [`Paths::under`] looks).
pub(super) fn tokenizer_under(root: &Path) -> Tokenizer {
    let tok = crate::tokenizer::tests::small_tokenizer().clone();
    tok.save(&root.join("tokenizer")).unwrap();
    tok
}

pub(super) fn base_options() -> BaseTrainOptions {
    BaseTrainOptions {
        model_size: None,
        recipe: Architecture::V1,
        depth: Some(1),
        batch_size: 2,
        total_batch_size: None,
        auto_total_batch_size: false,
        total_steps: Some(2),
        target_flops: None,
        target_param_data_ratio: None,
        lr: 0.02,
        seq_len: 32,
        dtype: DType::F32,
        model_tag: None,
        eval_every: 0,
        eval_tokens: 64,
        save_every: 0,
        resume_from_step: None,
        inputs: vec![],
        tokenizer: None,
        seed: 42,
        warmup_ratio: 0.0,
        warmup_steps: None,
        warmdown_ratio: None,
        final_lr_frac: None,
        head: HeadTrainOptions::default(),
    }
}

#[test]
fn base_model_config_takes_the_preset_then_the_depth_then_tiny() {
    let mut o = base_options();
    assert_eq!(o.model_config(1000).unwrap().n_layer, 1);
    o.model_size = Some(ModelSize::Small);
    assert_eq!(o.model_config(1000).unwrap().n_layer, 8, "the preset wins");
    o.model_size = None;
    o.depth = None;
    let c = o.model_config(1000).unwrap();
    assert_eq!(
        (c.n_layer, c.vocab_size, c.block_size),
        (ModelSize::Tiny.depth(), 1000, 32)
    );
    assert_eq!(o.tokens_per_step(), 64);
    o.seq_len = 0;
    assert!(
        matches!(o.model_config(1000), Err(CoreError::InvalidArgument { .. })),
        "a zero block_size is refused"
    );
}

#[test]
fn a_base_run_on_the_bundled_corpus_accounts_for_both_splits() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = Paths::under(tmp.path());
    tokenizer_under(tmp.path());
    let dev = Device::cpu().unwrap();
    let mut notes = Vec::new();
    let run = BaseRun::prepare(&base_options(), &paths, &dev, &mut |l| notes.push(l)).unwrap();
    assert_eq!((run.tag.as_str(), run.trainer.step), ("d1", 0));
    assert_eq!(run.trainer.cfg.total_batch_size, 64);
    assert_eq!(
        run.trainer.cfg.checkpoint_dir(),
        tmp.path().join("base_checkpoints/d1")
    );
    let rows = run.inputs.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["input"], "bundled corpus (its first 95%)");
    assert_eq!(rows[0]["role"], "training");
    assert_eq!(rows[1]["role"], "validation");
    // Notes: a line per input, then the warnings that two steps and 64 validation tokens leave
    // most of each split unread.
    assert_eq!(notes.len(), 4, "{notes:?}");
    assert!(notes[0].starts_with("base-train training input bundled corpus (its first 95%): "));
    assert!(notes[1].starts_with("base-train validation input bundled corpus (its last 5%): "));
    assert!(
        notes[2].starts_with("warning: --total-steps 2 of 64 tokens leaves ")
            && notes[2].ends_with("raise --total-steps to train on all of it"),
        "{notes:?}"
    );
    assert!(
        notes[3].starts_with("warning: --eval-tokens 64 leaves ")
            && notes[3].ends_with("raise --eval-tokens to measure on all of it"),
        "{notes:?}"
    );
    let d = run.describe();
    assert!(
        d.starts_with("base-train d1: ") && d.contains("2 steps of 64 tokens on cpu -> "),
        "{d}"
    );
    let outcome = RunOutcome {
        val_bpb: Some(2.5),
        mean_tokens_per_s: Some(100.0),
        masked_rows: 0,
        wall_s: 1.0,
    };
    let s = run.summary(&outcome);
    assert_eq!(
        (s["model_tag"].as_str(), s["step"].as_u64()),
        (Some("d1"), Some(0))
    );
    assert_eq!(s["val_bpb"], 2.5);
    assert_eq!(s["inputs"], run.inputs);
    assert!(s["metrics"].as_str().unwrap().ends_with("metrics.jsonl"));
    let (settings, results) = run.report(&outcome);
    assert_eq!(settings["run"]["command"], "base-train");
    assert_eq!(settings["run"]["depth"], 1);
    assert_eq!(results["tokens_per_s"], 100.0);
    assert_eq!(results["wall_s"], 1.0);
}

#[test]
fn a_base_run_refuses_a_single_input_file() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = Paths::under(tmp.path());
    tokenizer_under(tmp.path());
    let opts = BaseTrainOptions {
        inputs: vec![tmp.path().join("only.txt")],
        ..base_options()
    };
    let dev = Device::cpu().unwrap();
    let err = BaseRun::prepare(&opts, &paths, &dev, &mut |_| {})
        .err()
        .expect("one file is an error");
    assert!(
        matches!(
            &err,
            CoreError::InvalidArgument {
                name: "--input",
                ..
            }
        ),
        "{err:?}"
    );
}

pub(super) fn chat_options() -> ChatTrainOptions {
    ChatTrainOptions {
        tasks: vec!["arithmetic".into()],
        recipe: None,
        total_steps: Some(3),
        lr: 0.02,
        batch_size: Some(2),
        seq_len: None,
        total_batch_size: None,
        dtype: DType::F32,
        model_tag: Some("ft".into()),
        eval_every: 0,
        eval_tokens: None,
        save_every: 0,
        resume_from_step: None,
        seed: 42,
        head: HeadSftOptions::default(),
    }
}

/// A depth-1 base model with a block of 64 tokens, saved at step 7 under `root` as tag `src`.
fn chat_source(root: &Path, dev: &Device) -> ChatSource {
    chat_source_at(root, dev, Phase::Base, "src")
}

/// [`chat_source`] saved as a checkpoint of `phase` under `tag`.
fn chat_source_at(root: &Path, dev: &Device, phase: Phase, tag: &str) -> ChatSource {
    let tokenizer = tokenizer_under(root);
    let config = GPTConfig::from_depth(1, tokenizer.vocab_size(), 64);
    let model = GPT::new(config, dev, DType::F32, 1).unwrap();
    model.set_rng_state(5);
    let dir = checkpoint_dir(root, phase, tag);
    let info = SaveInfo {
        val_bpb: None,
        tokenizer_path: None,
        tokenizer_sha256: Some(tokenizer.fingerprint().unwrap()),
        data_position: None,
        data_buffer: None,
        rng_state: 5,
        run: serde_json::Value::Null,
        world_size: 1,
    };
    let meta = save_checkpoint(&dir, phase, 7, &model, None, info).unwrap();
    ChatSource {
        model,
        tokenizer,
        meta,
        phase,
        tag: tag.into(),
        dir,
    }
}

/// `chat-sft --source sft` into the tag it starts from: the source is read, its folder moved
/// aside whole, and the new run records the folder its source went to, not its own.
#[test]
fn an_sft_run_into_its_source_tag_records_where_the_source_went() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = Paths::under(tmp.path());
    let dev = Device::cpu().unwrap();
    let source = chat_source_at(tmp.path(), &dev, Phase::Sft, "ft");
    let run = ChatRun::prepare(
        &chat_options(),
        Phase::Sft,
        source,
        &paths,
        &dev,
        &mut |_| {},
    )
    .unwrap();
    let outcome = RunOutcome {
        val_bpb: None,
        mean_tokens_per_s: None,
        masked_rows: 0,
        wall_s: 1.0,
    };
    let (settings, _) = run.report(&outcome);
    let source = &settings["run"]["source"];
    let tag = source["tag"].as_str().unwrap();
    assert!(tag.starts_with("ft.earlier-20"), "{source}");
    assert_eq!(
        (source["phase"].as_str(), source["step"].as_u64()),
        (Some("sft"), Some(7))
    );
    let moved = checkpoint_dir(tmp.path(), Phase::Sft, tag);
    assert!(
        moved.join("meta_000007.json").exists(),
        "{}",
        moved.display()
    );
    drop(run);
    // An SFT run from a base model keeps its source's own tag.
    let base = chat_source(tmp.path(), &dev);
    let run =
        ChatRun::prepare(&chat_options(), Phase::Sft, base, &paths, &dev, &mut |_| {}).unwrap();
    let (settings, _) = run.report(&outcome);
    assert_eq!(settings["run"]["source"]["tag"], "src");
}

#[test]
fn a_mid_run_holds_out_five_percent_and_reads_the_source_model() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = Paths::under(tmp.path());
    let dev = Device::cpu().unwrap();
    let source = chat_source(tmp.path(), &dev);
    let mut notes = Vec::new();
    let run = ChatRun::prepare(
        &chat_options(),
        Phase::Mid,
        source,
        &paths,
        &dev,
        &mut |l| notes.push(l),
    )
    .unwrap();
    // Arithmetic has 2000 problems: 100 held out.
    assert_eq!(
        (run.train_conversations, run.val_conversations),
        (1900, 100)
    );
    assert_eq!(run.trainer.cfg.seq_len, 64, "the model's block_size");
    assert_eq!(
        run.trainer.model.rng_state(),
        0,
        "a fresh run resets the dropout RNG"
    );
    assert_eq!(
        run.trainer.cfg.checkpoint_dir(),
        tmp.path().join("mid_checkpoints/ft")
    );
    assert_eq!(
        run.describe(),
        "mid-train ft: from base model `src` step 7, 1900 conversations (100 held out), 3 steps of 128 tokens on cpu"
    );
    assert!(
        notes[0].starts_with("training conversations: 1900, "),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("validation conversations: 100, ")),
        "{notes:?}"
    );
    let outcome = RunOutcome {
        val_bpb: None,
        mean_tokens_per_s: None,
        masked_rows: 4,
        wall_s: 2.0,
    };
    let s = run.summary(&outcome);
    assert_eq!(
        (s["phase"].as_str(), s["masked_rows"].as_u64()),
        (Some("mid"), Some(4))
    );
    let (settings, results) = run.report(&outcome);
    assert_eq!(settings["run"]["command"], "mid-train");
    assert_eq!(
        settings["run"]["source"],
        serde_json::json!({"phase": "base", "tag": "src", "step": 7})
    );
    assert_eq!(
        (results["masked_rows"].as_u64(), results["wall_s"].as_f64()),
        (Some(4), Some(2.0))
    );
}

#[test]
fn a_chat_run_refuses_rows_longer_than_the_model_and_too_few_conversations() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = Paths::under(tmp.path());
    let dev = Device::cpu().unwrap();
    let long = ChatTrainOptions {
        seq_len: Some(65),
        ..chat_options()
    };
    let source = chat_source(tmp.path(), &dev);
    let err = ChatRun::prepare(&long, Phase::Sft, source, &paths, &dev, &mut |_| {})
        .err()
        .expect("a row over the block_size");
    assert!(
        matches!(&err, CoreError::InvalidArgument { name: "--seq-len", value, .. } if value == "65"),
        "{err:?}"
    );
    let one = tmp.path().join("one.jsonl");
    std::fs::write(
        &one,
        r#"[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]"#,
    )
    .unwrap();
    let few = ChatTrainOptions {
        tasks: vec![one.display().to_string()],
        ..chat_options()
    };
    let source = chat_source(tmp.path(), &dev);
    let err = ChatRun::prepare(&few, Phase::Sft, source, &paths, &dev, &mut |_| {})
        .err()
        .expect("one conversation");
    assert!(
        matches!(&err, CoreError::InvalidArgument { name: "tasks", .. }),
        "{err:?}"
    );
}

/// HEAD's base_train defaults off the CPU (`--depth D`, automatic horizon and batch) resolve
/// to `head_schedules.json`'s settings: the batch, the steps, setup_optimizer's rates and the
/// scaled weight decay; on the CPU the default horizon is 200 steps of one micro-batch.
#[test]
fn head_plans_match_base_train_at_every_depth() {
    for (name, a, depth, ratio) in crate::recipe::tests::auto_settings() {
        let (name, a) = (name.as_str(), &a);
        let opts = BaseTrainOptions {
            recipe: Architecture::Head,
            depth: Some(depth),
            batch_size: a["device_batch_size"].as_u64().unwrap() as usize,
            seq_len: 2048,
            total_steps: None,
            target_param_data_ratio: ratio,
            ..base_options()
        };
        let plan = opts.plan(32768, false).unwrap();
        let n = |k: &str| a[k].as_u64().unwrap();
        assert_eq!(plan.total_steps, n("num_iterations"), "{name}");
        assert_eq!(
            plan.total_batch_size as u64,
            n("total_batch_size"),
            "{name}"
        );
        let kw = &a["setup_optimizer_kwargs"];
        let OptimSettings::Head(c) = plan.optim else {
            panic!("{name}: HEAD's optimizer")
        };
        for (got, key) in [
            (c.unembedding_lr, "unembedding_lr"),
            (c.embedding_lr, "embedding_lr"),
            (c.scalar_lr, "scalar_lr"),
            (c.matrix_lr, "matrix_lr"),
            (c.weight_decay, "weight_decay"),
        ] {
            let want = kw[key].as_f64().unwrap();
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "{name} {key}: {got} vs {want}"
            );
        }
        let Schedules::Head(s) = plan.schedule else {
            panic!("{name}: HEAD's schedules")
        };
        assert_eq!(s.warmdown_iters() as u64, n("warmdown_iters"), "{name}");
        assert_eq!(plan.config.window_pattern, "SSSL");
        // The CPU's default, when no horizon is given: 200 steps of one micro-batch.
        let cpu = opts.plan(32768, true).unwrap();
        let steps = match opts.target_param_data_ratio {
            None => DEFAULT_TOTAL_STEPS,
            Some(_) => cpu.scaling.as_ref().unwrap().num_iterations as u64,
        };
        assert_eq!(
            (cpu.total_steps, cpu.total_batch_size),
            (steps, opts.batch_size * 2048)
        );
    }
}

#[test]
fn head_only_settings_are_refused_under_v1_and_a_zero_horizon_is_an_error() {
    let o = BaseTrainOptions {
        target_flops: Some(1e12),
        ..base_options()
    };
    assert!(matches!(
        o.plan(1000, true),
        Err(CoreError::InvalidArgument {
            name: "--target-flops",
            ..
        })
    ));
    let o = BaseTrainOptions {
        recipe: Architecture::Head,
        total_steps: None,
        target_flops: Some(1.0),
        ..base_options()
    };
    assert!(matches!(
        o.plan(1000, true),
        Err(CoreError::InvalidArgument { .. })
    ));
}

/// A `--recipe head` run saved at step 2 and resumed to step 4 ends bit-identical to an
/// uninterrupted one: weights, MuonAdamW's state and the best-fit packer's buffer; resuming
/// it as v1 is refused.
#[test]
fn a_head_run_resumes_bit_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = Paths::under(tmp.path());
    tokenizer_under(tmp.path());
    let dev = Device::cpu().unwrap();
    let opts = |tag: &str, resume: Option<u64>| BaseTrainOptions {
        recipe: Architecture::Head,
        total_steps: Some(4),
        save_every: 2,
        model_tag: Some(tag.into()),
        resume_from_step: resume,
        head: HeadTrainOptions {
            head_dim: 32,
            window_pattern: "SL".into(),
            ..HeadTrainOptions::default()
        },
        ..base_options()
    };
    let train = |o: &BaseTrainOptions| {
        let mut run = BaseRun::prepare(o, &paths, &dev, &mut |_| {}).unwrap();
        run.trainer.run(&mut |_| {}).unwrap();
        run
    };
    let whole = train(&opts("whole", None));
    assert_eq!(
        whole.trainer.model.config().architecture,
        Architecture::Head
    );
    let dir = whole.trainer.cfg.checkpoint_dir();
    let meta = crate::checkpoint::read_meta(&dir, 2).unwrap();
    assert!(
        meta.data_buffer.as_ref().is_some_and(|b| !b.is_empty()),
        "the packer's buffer is saved"
    );
    // The same run, cut after step 2: its step-4 files are removed and it is resumed.
    let cut = train(&opts("cut", None));
    let cut_dir = cut.trainer.cfg.checkpoint_dir();
    for f in [
        "model_000004.safetensors",
        "optim_000004.bin",
        "meta_000004.json",
    ] {
        std::fs::remove_file(cut_dir.join(f)).unwrap();
    }
    // One writer per folder: the cut run lets go of it before the resumed one takes it.
    drop(cut);
    train(&opts("cut", Some(2)));
    for f in ["model_000004.safetensors", "optim_000004.bin"] {
        assert_eq!(
            std::fs::read(dir.join(f)).unwrap(),
            std::fs::read(cut_dir.join(f)).unwrap(),
            "{f}"
        );
    }
    let v1 = BaseTrainOptions {
        recipe: Architecture::V1,
        ..opts("cut", Some(2))
    };
    let err = BaseRun::prepare(&v1, &paths, &dev, &mut |_| {})
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            CoreError::InvalidArgument {
                name: "--recipe",
                ..
            }
        ),
        "{err:?}"
    );
}
