//! HEAD's SFT (`chat-sft` on a HEAD model, [`super::chat_head`]): the settings inherited from
//! the base run, the optimizer warm-started from its state with the base run's last Muon weight
//! decay, the schedules, one pass over the conversations as the horizon, a bit-identical
//! resume, and the recipe checks (`--recipe` follows the checkpoint; no mid-training).

use std::path::Path;

use super::run_tests::{base_options, chat_options, tokenizer_under};
use super::*;
use crate::checkpoint::{load_source, read_meta, CheckpointQuery};
use crate::model::Architecture;
use crate::optim::{MuonAdamW, MuonAdamWConfig, OptimizerState, SftSchedules};
use crate::paths::Paths;
use crate::recipe::{HeadSchedule, SftSchedule};

/// A 3-step HEAD base run (rows of 64 tokens, batch 2, embedding rate 0.25) under `root`, tag
/// `d1`.
fn head_base(paths: &Paths, dev: &Device) {
    let opts = BaseTrainOptions {
        recipe: Architecture::Head,
        total_steps: Some(3),
        seq_len: 64,
        head: HeadTrainOptions {
            head_dim: 32,
            window_pattern: "SL".into(),
            embedding_lr: 0.25,
            ..HeadTrainOptions::default()
        },
        ..base_options()
    };
    let mut run = BaseRun::prepare(&opts, paths, dev, &mut |_| {}).unwrap();
    run.trainer.run(&mut |_| {}).unwrap();
}

/// A temporary model root with the test tokenizer and a 3-step HEAD base run ([`head_base`]).
fn head_root() -> (tempfile::TempDir, Paths, Device) {
    let tmp = tempfile::tempdir().unwrap();
    let paths = Paths::under(tmp.path());
    tokenizer_under(tmp.path());
    let dev = Device::cpu().unwrap();
    head_base(&paths, &dev);
    (tmp, paths, dev)
}

/// The newest base model under `paths`, as chat-sft loads it.
fn source(paths: &Paths, dev: &Device) -> ChatSource {
    let query = CheckpointQuery {
        model_tag: None,
        step: None,
        force_tokenizer: false,
    };
    let (l, tag) = load_source(paths, Phase::Sft, None, dev, &query).unwrap();
    ChatSource::from_loaded(l, tag)
}

/// A `.jsonl` task of `n` short conversations under `root`.
fn short_task(root: &Path, n: usize) -> String {
    let path = root.join("short.jsonl");
    let lines: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"[{{"role": "user", "content": "q{i}"}}, {{"role": "assistant", "content": "a {}"}}]"#,
                "x ".repeat(i % 5)
            )
        })
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path.display().to_string()
}

fn sft_options(task: String) -> ChatTrainOptions {
    ChatTrainOptions {
        tasks: vec![task],
        batch_size: None,
        model_tag: Some("sft".into()),
        ..chat_options()
    }
}

#[test]
fn head_sft_inherits_the_base_run_and_warm_starts_its_optimizer() {
    let (tmp, paths, dev) = head_root();
    let opts = ChatTrainOptions {
        total_steps: Some(2),
        ..sft_options(short_task(tmp.path(), 40))
    };
    let mut notes = Vec::new();
    let src = source(&paths, &dev);
    let base_dir = src.dir.clone();
    let base_meta = src.meta.clone();
    let mut run =
        ChatRun::prepare(&opts, Phase::Sft, src, &paths, &dev, &mut |l| notes.push(l)).unwrap();
    let notes = notes.join("\n");
    assert!(notes.contains("inherited device_batch_size=2"), "{notes}");
    assert!(notes.contains("inherited embedding_lr=0.25"), "{notes}");
    let cfg = &run.trainer.cfg;
    assert_eq!(
        (cfg.batch_size, cfg.seq_len, cfg.total_batch_size),
        (2, 64, 128)
    );
    // The base run's flag values, unscaled; the scalar rate 0.5; no weight decay of its own.
    assert_eq!(
        cfg.optim,
        OptimSettings::Head(MuonAdamWConfig {
            embedding_lr: 0.25,
            unembedding_lr: 0.008,
            matrix_lr: 0.02,
            scalar_lr: 0.5,
            weight_decay: 0.0,
        })
    );
    // Muon's weight decay: the base optimizer's last, at its step 2 of 3.
    let base: HeadSchedule = serde_json::from_value(base_meta.run["schedule"].clone()).unwrap();
    let Schedules::Sft(s) = cfg.schedule else {
        panic!("{:?}", cfg.schedule)
    };
    assert_eq!(s.weight_decay, base.muon_weight_decay(2));
    assert!(s.weight_decay > 0.0);
    assert_eq!((s.num_iterations, s.total_steps), (Some(2), 2));
    // The optimizer state is the base run's: its step count and every moment.
    let mut want = MuonAdamW::new(&run.trainer.model, &MuonAdamWConfig::default()).unwrap();
    crate::checkpoint::load_optimizer_state(
        &base_dir,
        &base_meta,
        &run.trainer.model,
        &mut want,
        &dev,
    )
    .unwrap();
    assert_eq!(run.trainer.optim.steps(), 3);
    let got = run.trainer.optim.state_tensors().unwrap();
    let want = want.state_tensors().unwrap();
    assert_eq!(got.len(), want.len());
    for ((gn, g), (wn, w)) in got.iter().zip(&want) {
        assert_eq!(gn, wn);
        assert_eq!(g.to_vec_f32().unwrap(), w.to_vec_f32().unwrap(), "{gn}");
    }
    // Two steps at 0.8 x lrm(step / 2): 1 up to half-way, so both at 0.8.
    let mut lrm = Vec::new();
    run.trainer
        .run(&mut |e| {
            if let Event::Step(m) = e {
                lrm.push(m.lr_multiplier)
            }
        })
        .unwrap();
    assert_eq!(lrm, vec![0.8, 0.8]);
    let meta = read_meta(&run.trainer.cfg.checkpoint_dir(), 2).unwrap();
    assert_eq!(meta.run["recipe"], "head");
    assert_eq!(meta.run["warm_start"], true);
    assert_eq!(super::last_muon_weight_decay(&meta), Some(s.weight_decay));

    // A flag overrides an inherited value, with a note; --load-optimizer 0 starts fresh (into
    // the same folder: the first run lets go of it).
    drop(run);
    let fresh = ChatTrainOptions {
        batch_size: Some(1),
        total_batch_size: Some(64),
        head: HeadSftOptions {
            load_optimizer: false,
            ..HeadSftOptions::default()
        },
        ..opts
    };
    let mut notes = Vec::new();
    let src = source(&paths, &dev);
    let run = ChatRun::prepare(&fresh, Phase::Sft, src, &paths, &dev, &mut |l| {
        notes.push(l)
    })
    .unwrap();
    assert!(
        notes
            .iter()
            .any(|l| l.contains("--device-batch-size 1 overrides the base run's 2")),
        "{notes:?}"
    );
    assert_eq!(run.trainer.optim.steps(), 0);
    let Schedules::Sft(s) = run.trainer.cfg.schedule else {
        panic!()
    };
    assert_eq!(s.weight_decay, 0.0);
}

#[test]
fn head_sft_trains_one_pass_and_resumes_bit_identically() {
    let (tmp, paths, dev) = head_root();
    let task = short_task(tmp.path(), 30);
    let opts = |tag: &str, resume: Option<u64>| ChatTrainOptions {
        total_steps: None,
        model_tag: Some(tag.into()),
        save_every: 2,
        resume_from_step: resume,
        ..sft_options(task.clone())
    };
    let prepare = |o: &ChatTrainOptions| {
        ChatRun::prepare(
            o,
            Phase::Sft,
            source(&paths, &dev),
            &paths,
            &dev,
            &mut |_| {},
        )
        .unwrap()
    };
    let mut whole = prepare(&opts("whole", None));
    let total = whole.trainer.cfg.total_steps;
    assert!(total >= 3, "{total} steps");
    let mut last_lrm = None;
    whole
        .trainer
        .run(&mut |e| {
            if let Event::Step(m) = e {
                last_lrm = Some(m.lr_multiplier)
            }
        })
        .unwrap();
    // The last step runs at the rate of the progress before it: past half-way, still > 0.
    let last = last_lrm.unwrap();
    assert!(
        last > 0.0 && last < 0.8,
        "the last step still updates: {last}"
    );
    // One pass: the last step consumes the last training conversation, the one before not.
    assert!(whole.trainer.train.progress().unwrap() >= 1.0);
    let mut short = prepare(&opts("short", None)).trainer;
    for _ in 1..total {
        short.train_step().unwrap();
    }
    assert!(short.train.progress().unwrap() < 1.0);
    // Cut after step 2 and resumed: the last step's files are the same bytes.
    let cut = prepare(&opts("cut", None));
    let mut cut_trainer = cut.trainer;
    while cut_trainer.step < 2 {
        cut_trainer.train_step().unwrap();
    }
    cut_trainer.save().unwrap();
    // One writer per folder: the cut run lets go of it before the resumed one takes it.
    drop(cut_trainer);
    let mut resumed = prepare(&opts("cut", Some(2)));
    resumed.trainer.run(&mut |_| {}).unwrap();
    let (a, b) = (
        whole.trainer.cfg.checkpoint_dir(),
        resumed.trainer.cfg.checkpoint_dir(),
    );
    for f in [
        format!("model_{total:06}.safetensors"),
        format!("optim_{total:06}.bin"),
    ] {
        let same = std::fs::read(a.join(&f)).unwrap() == std::fs::read(b.join(&f)).unwrap();
        assert!(same, "{f} differs after the resume");
    }
}

#[test]
fn the_recipe_follows_the_checkpoint_and_head_has_no_mid_training() {
    let (tmp, paths, dev) = head_root();
    let task = short_task(tmp.path(), 10);
    let v1 = ChatTrainOptions {
        recipe: Some(Architecture::V1),
        ..sft_options(task.clone())
    };
    let prepare = |o: &ChatTrainOptions, phase| {
        ChatRun::prepare(o, phase, source(&paths, &dev), &paths, &dev, &mut |_| {})
            .err()
            .unwrap()
    };
    let e = prepare(&v1, Phase::Sft);
    assert!(
        matches!(
            &e,
            CoreError::InvalidArgument {
                name: "--recipe",
                ..
            }
        ) && e.to_string().contains("is a `head` model"),
        "{e}"
    );
    let e = prepare(&sft_options(task), Phase::Mid);
    assert!(
        matches!(
            &e,
            CoreError::Unsupported {
                op: "mid-train",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(crate::recipe::check_recipe("chat-rl", None, Architecture::Head, "m").is_ok());
    assert!(crate::recipe::check_recipe(
        "chat-rl",
        Some(Architecture::Head),
        Architecture::V1,
        "m"
    )
    .is_err());
}

#[test]
fn sft_schedules_follow_the_progress_or_the_given_steps() {
    let by_progress = Schedules::Sft(SftSchedules {
        schedule: SftSchedule::default(),
        num_iterations: None,
        total_steps: 10,
        weight_decay: 0.01,
    });
    // init_lr_frac 0.8 x (1 until half-way, then down to 0), clamped past the pass.
    assert_eq!(by_progress.lr_multiplier(0, 0.3), 0.8);
    assert!((by_progress.lr_multiplier(0, 0.75) - 0.4).abs() < 1e-15);
    assert_eq!(by_progress.lr_multiplier(9, 1.02), 0.0);
    assert_eq!(by_progress.muon_weight_decay(7), 0.01);
    assert!((by_progress.muon_momentum(150) - 0.90).abs() < 1e-15);
    let by_steps = Schedules::Sft(SftSchedules {
        num_iterations: Some(4),
        ..match by_progress {
            Schedules::Sft(s) => s,
            _ => unreachable!(),
        }
    });
    // step / 4: 0, 0.25, 0.5, 0.75 (the last step still updates).
    let lrm: Vec<f64> = (0..4).map(|i| by_steps.lr_multiplier(i, 0.0)).collect();
    assert_eq!(lrm[..3], [0.8, 0.8, 0.8]);
    assert!((lrm[3] - 0.4).abs() < 1e-15, "{lrm:?}");
}

#[test]
fn bad_sft_settings_are_refused_before_anything_is_touched() {
    let (tmp, paths, dev) = head_root();
    let task = short_task(tmp.path(), 20);
    let prepare = |o: &ChatTrainOptions| {
        ChatRun::prepare(
            o,
            Phase::Sft,
            source(&paths, &dev),
            &paths,
            &dev,
            &mut |_| {},
        )
    };
    let nan = ChatTrainOptions {
        head: HeadSftOptions {
            schedule: SftSchedule {
                init_lr_frac: f64::NAN,
                ..SftSchedule::default()
            },
            ..HeadSftOptions::default()
        },
        ..sft_options(task.clone())
    };
    let e = prepare(&nan).err().unwrap();
    assert!(
        matches!(
            &e,
            CoreError::InvalidArgument {
                name: "--init-lr-frac",
                ..
            }
        ),
        "{e:?}"
    );
    // A missing step is named with the steps there are, before any data is read.
    let missing = ChatTrainOptions {
        resume_from_step: Some(99),
        ..sft_options(task.clone())
    };
    let e = prepare(&missing).err().unwrap();
    assert!(e.to_string().contains("99"), "{e}");
    // Resuming at or past the end trains nothing and keeps metrics.jsonl whole.
    let mut run = prepare(&ChatTrainOptions {
        total_steps: Some(2),
        ..sft_options(task.clone())
    })
    .unwrap();
    run.trainer.run(&mut |_| {}).unwrap();
    let metrics = run.trainer.cfg.checkpoint_dir().join("metrics.jsonl");
    let before = std::fs::read(&metrics).unwrap();
    let past = ChatTrainOptions {
        total_steps: Some(1),
        resume_from_step: Some(2),
        ..sft_options(task)
    };
    let e = prepare(&past).err().unwrap();
    assert!(
        matches!(&e, CoreError::InvalidArgument { name, .. } if name.starts_with("--total-steps")),
        "{e:?}"
    );
    assert_eq!(std::fs::read(&metrics).unwrap(), before);
}

/// `export --to nanochat` of a HEAD base model of ours writes its `MuonAdamW` state in
/// nanochat's layout, with the run's rates as the groups' `initial_lr`: reading the export
/// back gives the same state.
#[test]
fn exporting_a_head_model_of_ours_writes_its_optimizer_in_nanochats_layout() {
    let (tmp, paths, dev) = head_root();
    let q = CheckpointQuery::default();
    let l = crate::checkpoint::load_phase(&paths, Phase::Base, &dev, &q).unwrap();
    assert!(
        l.meta.run["optim_rates"]["matrix_lr"].is_f64(),
        "{}",
        l.meta.run
    );
    let tag = crate::checkpoint::root_tag(&l.root, Phase::Base, None, &l.meta);
    let src = crate::checkpoint::checkpoint_dir(&l.root, Phase::Base, &tag);
    let (_, step, want) = crate::checkpoint::read_optimizer_state(&src, &l.meta, &l.model).unwrap();
    let out = tmp.path().join("export");
    let r = crate::checkpoint::export::export_nanochat(&l, &tag, &out).unwrap();
    assert_eq!(r.optim.len(), 1, "{:?}", r.optim_note);
    assert!(r.optim_note.is_none());
    let dir = out.join("base_checkpoints").join(&tag);
    let (step2, got) =
        crate::checkpoint::nanochat_optim::read_nanochat_optimizer(&dir, l.meta.step, &l.model)
            .unwrap();
    assert_eq!(step2, step);
    assert_eq!(got, want);
    // initial_lr of the lm_head group: the recorded unembedding rate times (n_embd/768)^-0.5.
    let f = crate::torchfile::TorchFile::open(&r.optim[0]).unwrap();
    let crate::torchfile::Value::Dict(top) = &f.root else {
        panic!()
    };
    let crate::torchfile::Value::List(groups) = &top[1].1 else {
        panic!()
    };
    let crate::torchfile::Value::Dict(g0) = &groups[0] else {
        panic!()
    };
    let lr = g0
        .iter()
        .find(|(k, _)| *k == crate::torchfile::Value::Str("initial_lr".into()))
        .unwrap();
    let s = (l.model.config().n_embd as f64 / 768.0).powf(-0.5);
    let want_lr = l.meta.run["optim_rates"]["unembedding_lr"]
        .as_f64()
        .unwrap()
        * s;
    assert_eq!(lr.1, crate::torchfile::Value::Float(want_lr));
}
