//! A nanochat run continued here against what nanochat's own `base_train` did when it resumed
//! the same folder (`tests/fixtures/reference/head/native_head/resume/`, section 9 of the HEAD
//! reference README): the batches, the schedules, the losses, the parameter updates and the
//! files written, which nanochat's loader must find as the latest step.

use std::collections::BTreeMap;

use serde_json::Value;

use super::run_tests::base_options;
use super::*;
use crate::checkpoint::nanochat::read_state_dict;
use crate::checkpoint::nanochat::tests::{copy_native, paths_for};
use crate::data::{nanochat_shard_paths, NanochatLoader, ResumePoint};
use crate::io::HostData;
use crate::model::Architecture;
use crate::torchfile::tests::native;
use crate::torchfile::TorchDType;

fn expected(gen: &str) -> Value {
    let p = native(&format!("{gen}/resume/resume_expected.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
        })
        .collect()
}

fn floats(v: &HostData) -> Vec<f64> {
    match v {
        HostData::Float(f) => f.clone(),
        HostData::F32(f) => f.iter().map(|&x| x as f64).collect(),
        HostData::Int(_) => panic!("an integer tensor"),
    }
}

/// The flags of the README's command for native_head (`--depth=3 --aspect-ratio=21
/// --head-dim=32 --max-seq-len=512 --device-batch-size=2 --total-batch-size=1024
/// --warmup-steps=10 --embedding-lr=3.0 --unembedding-lr=0.08 --matrix-lr=0.2 --scalar-lr=5.0
/// --eval-tokens=4096 --model-tag=d3 --resume-from-step=200 --num-iterations=203`).
fn head_resume_options() -> BaseTrainOptions {
    BaseTrainOptions {
        recipe: Architecture::Head,
        depth: Some(3),
        batch_size: 2,
        total_batch_size: Some(1024),
        total_steps: Some(203),
        seq_len: 512,
        model_tag: Some("d3".into()),
        eval_tokens: 4096,
        resume_from_step: Some(200),
        warmup_steps: Some(10),
        head: HeadTrainOptions {
            aspect_ratio: 21,
            head_dim: 32,
            window_pattern: "SSSL".into(),
            embedding_lr: 3.0,
            unembedding_lr: 0.08,
            matrix_lr: 0.2,
            scalar_lr: 5.0,
            weight_decay: 0.28,
        },
        ..base_options()
    }
}

#[test]
fn the_head_loader_resumes_at_the_next_row_group_with_nanochats_batches() {
    let (_tmp, base) = copy_native("native_head");
    let want = expected("native_head");
    let (train, val) = nanochat_shard_paths(&base, Architecture::Head).unwrap();
    assert_eq!(train.len(), 1);
    assert!(val.ends_with("base_data_climbmix/shard_00001.parquet"));
    let tok = crate::tokenizer::Tokenizer::from_pretrained(&base.join("tokenizer")).unwrap();
    let at = ResumePoint {
        pq_idx: 0,
        rg_idx: 3,
        epoch: 6,
    };
    let mut loader = NanochatLoader::new(train, Architecture::Head, tok, 2, 512, Some(at)).unwrap();
    let states = want["loader"]["state_dict_per_batch"].as_array().unwrap();
    for (i, full) in want["full_batches"].as_array().unwrap().iter().enumerate() {
        let batch = loader.next_batch().unwrap();
        assert_eq!(batch.inputs, ids(&full["inputs"]), "batch {i}: inputs");
        let targets: Vec<i32> = ids(&full["targets"])
            .into_iter()
            .map(|t| t as i32)
            .collect();
        assert_eq!(batch.targets, targets, "batch {i}: targets");
        // The state after a batch is the prefetched one's: nanochat's state of batch i + 1.
        let s = loader.state();
        let w = &states[i + 1];
        assert_eq!(
            (s.pq_idx, s.rg_idx, s.epoch),
            (
                w["pq_idx"].as_u64().unwrap() as usize,
                w["rg_idx"].as_u64().unwrap() as usize,
                w["epoch"].as_u64().unwrap() as usize
            ),
            "state after batch {i}"
        );
    }
    let pre = loader.next_batch().unwrap();
    let first8: Vec<u32> = ids(&want["prefetched_batch_not_trained"]["first8"]);
    let got8: Vec<u32> = pre
        .inputs
        .chunks(512)
        .flat_map(|r| r[..8].to_vec())
        .collect();
    assert_eq!(
        got8, first8,
        "the batch nanochat prefetched and never trained"
    );
}

#[test]
fn a_nanochat_head_run_continues_as_nanochats_base_train_continues_it() {
    let dev = Device::cpu().unwrap();
    let (_tmp, base) = copy_native("native_head");
    let paths = paths_for(&base);
    let want = expected("native_head");
    let opts = head_resume_options();
    let mut run = BaseRun::prepare(&opts, &paths, &dev, &mut |_| {}).unwrap();
    let t = &mut run.trainer;
    assert_eq!(t.step, 200);
    assert_eq!(
        t.nanochat_run().unwrap().bf16_params,
        [
            "transformer.wte.weight",
            "value_embeds.0.weight",
            "value_embeds.2.weight"
        ]
    );
    let before: BTreeMap<String, Vec<f64>> = t
        .model
        .named_parameters()
        .into_iter()
        .map(|(n, p)| (n, p.to_vec_f64().unwrap()))
        .collect();
    for s in want["steps"].as_array().unwrap() {
        let it = s["step"].as_u64().unwrap();
        assert_eq!(t.step, it);
        let sched = &t.cfg.schedule;
        let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-300);
        assert!(
            rel(
                sched.lr_multiplier(it as usize, 0.0),
                s["lrm"].as_f64().unwrap()
            ) < 1e-12
        );
        assert!(
            rel(
                sched.muon_momentum(it as usize),
                s["muon_momentum"].as_f64().unwrap()
            ) < 1e-12
        );
        assert!(
            rel(
                sched.muon_weight_decay(it as usize),
                s["muon_weight_decay"].as_f64().unwrap()
            ) < 1e-12
        );
        let out = t.train_step().unwrap();
        let loss = out.loss.unwrap();
        let want_loss = s["train_loss"].as_f64().unwrap();
        assert!(
            rel(loss, want_loss) < 1e-5,
            "step {it}: loss {loss} vs nanochat's {want_loss}"
        );
        let n = t.nanochat.as_mut().unwrap();
        let logged = n.record_step(it, Some(loss), 0.0);
        assert!(rel(logged, s["debiased_smooth_loss"].as_f64().unwrap()) < 1e-5);
    }
    assert_eq!(t.step, 203);
    let dir = t.save().unwrap();
    // nanochat's loader finds the latest step by its model files: 203 now.
    let last = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            n.strip_prefix("model_")?
                .strip_suffix(".pt")?
                .parse::<u64>()
                .ok()
        })
        .max();
    assert_eq!(last, Some(203));
    // The optimizer file's groups hold the last step's values, as nanochat's do.
    use crate::torchfile::Value as Py;
    let key_of = |d: &[(Py, Py)], k: &str| {
        d.iter()
            .find(|(kk, _)| matches!(kk, Py::Str(s) if s == k))
            .map(|(_, v)| v.clone())
    };
    let optim = crate::torchfile::TorchFile::open(&dir.join("optim_000203_rank0.pt")).unwrap();
    let Py::Dict(sd) = &optim.root else {
        panic!("a dict")
    };
    let Some(Py::List(groups)) = key_of(sd, "param_groups") else {
        panic!("param_groups")
    };
    let after = want["saved"]["optimizer_param_groups_after"]
        .as_array()
        .unwrap();
    assert_eq!(groups.len(), after.len());
    for (g, w) in groups.iter().zip(after) {
        let Py::Dict(g) = g else { panic!("a dict") };
        for key in ["lr", "momentum", "weight_decay"] {
            let Some(want) = w.get(key).and_then(Value::as_f64) else {
                continue;
            };
            let Some(Py::Float(got)) = key_of(g, key) else {
                panic!("{key}")
            };
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1e-12),
                "{key}: {got} vs {want}"
            );
        }
    }
    // The saved tensors: bf16 where nanochat keeps them, updates within 1e-3 of nanochat's.
    let saved = read_state_dict(&dir, 203).unwrap();
    let reference =
        crate::io::read_safetensors(&native("native_head/resume/resume_params.safetensors"))
            .unwrap();
    for (name, start) in &before {
        let got = &saved[name];
        let bf16 = name.contains("wte") || name.starts_with("value_embeds");
        assert_eq!(got.dtype == TorchDType::BF16, bf16, "{name}: stored dtype");
        let got = floats(&got.tensor.data);
        let nano = floats(&reference.tensors[&format!("param.{name}")].data);
        let (mut num, mut den) = (0.0, 0.0);
        for ((g, w), s) in got.iter().zip(&nano).zip(start) {
            num += ((g - s) - (w - s)).powi(2);
            den += (w - s).powi(2);
        }
        let r = (num / den.max(1e-300)).sqrt();
        assert!(
            r < 1e-3,
            "{name}: update {r:.2e} (relative L2) off nanochat's"
        );
        if bf16 {
            // Emulated bf16 storage lands on nanochat's bits here (f32 masters: 43-50% off).
            assert!(
                r < 1e-4,
                "{name}: a bf16-stored tensor off nanochat's bits: {r:.2e}"
            );
        }
    }
    // nanochat's meta of the new step.
    let meta: Value =
        json5::from_str(&std::fs::read_to_string(dir.join("meta_000203.json")).unwrap()).unwrap();
    let nano_meta: Value = serde_json::from_str(
        &std::fs::read_to_string(native("native_head/resume/meta_000203.json")).unwrap(),
    )
    .unwrap();
    for key in [
        "step",
        "model_config",
        "device_batch_size",
        "max_seq_len",
        "total_batch_size",
        "dataloader_state_dict",
    ] {
        assert_eq!(meta[key], nano_meta[key], "meta key `{key}`");
    }
    for key in [
        "num_iterations",
        "resume_from_step",
        "depth",
        "aspect_ratio",
        "head_dim",
        "matrix_lr",
        "warmup_steps",
        "run",
    ] {
        assert_eq!(
            meta["user_config"][key], nano_meta["user_config"][key],
            "user_config `{key}`"
        );
    }
    let smooth = meta["loop_state"]["smooth_train_loss"].as_f64().unwrap();
    let want_smooth = nano_meta["loop_state"]["smooth_train_loss"]
        .as_f64()
        .unwrap();
    assert!((smooth - want_smooth).abs() < 1e-5 * want_smooth);
    assert_eq!(
        meta["loop_state"]["min_val_bpb"],
        nano_meta["loop_state"]["min_val_bpb"]
    );
    assert_eq!(
        meta["val_bpb"], nano_meta["val_bpb"],
        "no evaluation ran: the restored val_bpb"
    );
    // Our own loader reads the new step back, the optimizer at 203 AdamW steps.
    let (model, _, m) =
        crate::checkpoint::load_model(&paths, Phase::Base, &dev, None, None, false).unwrap();
    assert_eq!(m.step, 203);
    let (_, steps, _) = crate::checkpoint::read_optimizer_state(&dir, &m, &model).unwrap();
    assert_eq!(steps, 203);
}

#[test]
fn a_nanochat_resume_with_other_flags_is_refused_naming_them() {
    let dev = Device::cpu().unwrap();
    let (_tmp, base) = copy_native("native_head");
    let paths = paths_for(&base);
    for (opts, needle) in [
        (
            BaseTrainOptions {
                head: HeadTrainOptions {
                    aspect_ratio: 64,
                    ..head_resume_options().head
                },
                ..head_resume_options()
            },
            "n_embd (--aspect-ratio)",
        ),
        (
            BaseTrainOptions {
                head: HeadTrainOptions {
                    matrix_lr: 0.02,
                    ..head_resume_options().head
                },
                ..head_resume_options()
            },
            "--matrix-lr",
        ),
        (
            BaseTrainOptions {
                total_steps: Some(200),
                ..head_resume_options()
            },
            "--num-iterations",
        ),
        (
            BaseTrainOptions {
                recipe: Architecture::V1,
                ..head_resume_options()
            },
            "--recipe",
        ),
    ] {
        let e = BaseRun::prepare(&opts, &paths, &dev, &mut |_| {})
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(needle), "{needle}: {e}");
        if needle == "--matrix-lr" {
            assert!(e.contains("--matrix-lr=0.2"), "the trained-with value: {e}");
        }
    }
    // A meta without loop_state or dataloader_state_dict (nanochat's resume would stop).
    let m = base.join("base_checkpoints/d3/meta_000200.json");
    let text = std::fs::read_to_string(&m).unwrap();
    for key in ["loop_state", "dataloader_state_dict"] {
        let mut v: Value = serde_json::from_str(&text).unwrap();
        v.as_object_mut().unwrap().remove(key);
        std::fs::write(&m, serde_json::to_string(&v).unwrap()).unwrap();
        let e = BaseRun::prepare(&head_resume_options(), &paths, &dev, &mut |_| {})
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(key) && e.contains("meta_000200.json"), "{e}");
    }
    std::fs::write(&m, text).unwrap();
    // Without --recipe, the checkpoint's is taken; a missing step is named first.
    let mut o = BaseTrainOptions {
        recipe: Architecture::V1,
        ..head_resume_options()
    };
    o.take_recipe_from_checkpoint(&paths).unwrap();
    assert_eq!(o.recipe, Architecture::Head);
    o.resume_from_step = Some(199);
    let e = o
        .take_recipe_from_checkpoint(&paths)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no step 199") && e.contains("[200]"), "{e}");
    // Nothing was written into nanochat's folder.
    let files: Vec<_> = std::fs::read_dir(base.join("base_checkpoints/d3"))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 3);
}

/// A copy of native_v1 with the shards its resume reads (`native_v1_data/base_data/`).
fn native_v1_with_data() -> (tempfile::TempDir, std::path::PathBuf) {
    let (tmp, base) = copy_native("native_v1");
    let data = base.join("base_data");
    std::fs::create_dir_all(&data).unwrap();
    for f in ["shard_00000.parquet", "shard_00001.parquet"] {
        std::fs::copy(
            native(&format!("native_v1_data/base_data/{f}")),
            data.join(f),
        )
        .unwrap();
    }
    (tmp, base)
}

/// The flags of the README's command for native_v1 (`--depth=3 --max_seq_len=128
/// --device_batch_size=8 --total_batch_size=1024 --eval_tokens=1024 --model_tag=d3
/// --resume_from_step=150 --num_iterations=153`; v1's default rates are `--lr 0.02`'s).
fn v1_resume_options() -> BaseTrainOptions {
    BaseTrainOptions {
        recipe: Architecture::V1,
        depth: Some(3),
        batch_size: 8,
        total_batch_size: Some(1024),
        total_steps: Some(153),
        seq_len: 128,
        model_tag: Some("d3".into()),
        eval_tokens: 1024,
        resume_from_step: Some(150),
        ..base_options()
    }
}

#[test]
fn the_v1_loader_resumes_at_the_next_row_group_with_nanochats_batches() {
    let (_tmp, base) = native_v1_with_data();
    let want = expected("native_v1");
    let (train, _) = nanochat_shard_paths(&base, Architecture::V1).unwrap();
    let tok = crate::tokenizer::Tokenizer::from_pretrained(&base.join("tokenizer")).unwrap();
    let at = ResumePoint {
        pq_idx: 0,
        rg_idx: 0,
        epoch: 1,
    };
    let mut loader = NanochatLoader::new(train, Architecture::V1, tok, 8, 128, Some(at)).unwrap();
    for (i, full) in want["full_batches"].as_array().unwrap().iter().enumerate() {
        let batch = loader.next_batch().unwrap();
        assert_eq!(batch.inputs, ids(&full["inputs"]), "batch {i}: inputs");
        let s = loader.state();
        assert_eq!((s.pq_idx, s.rg_idx), (0, 1), "state after batch {i}");
    }
    let pre = loader.next_batch().unwrap();
    let got8: Vec<u32> = pre
        .inputs
        .chunks(128)
        .flat_map(|r| r[..8].to_vec())
        .collect();
    assert_eq!(got8, ids(&want["prefetched_batch_not_trained"]["first8"]));
}

#[test]
fn a_nanochat_v1_run_continues_as_nanochats_base_train_continues_it() {
    let dev = Device::cpu().unwrap();
    let (_tmp, base) = native_v1_with_data();
    let paths = paths_for(&base);
    let want = expected("native_v1");
    let mut run = BaseRun::prepare(&v1_resume_options(), &paths, &dev, &mut |_| {}).unwrap();
    let t = &mut run.trainer;
    assert_eq!(t.step, 150);
    let before: BTreeMap<String, Vec<f64>> = t
        .model
        .named_parameters()
        .into_iter()
        .map(|(n, p)| (n, p.to_vec_f64().unwrap()))
        .collect();
    let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-300);
    for s in want["steps"].as_array().unwrap() {
        let it = s["step"].as_u64().unwrap();
        let sched = &t.cfg.schedule;
        assert!(
            rel(
                sched.lr_multiplier(it as usize, 0.0),
                s["lrm"].as_f64().unwrap()
            ) < 1e-12
        );
        assert!(
            rel(
                sched.muon_momentum(it as usize),
                s["muon_momentum"].as_f64().unwrap()
            ) < 1e-6
        );
        let loss = t.train_step().unwrap().loss.unwrap();
        let want_loss = s["train_loss"].as_f64().unwrap();
        assert!(
            rel(loss, want_loss) < 1e-5,
            "step {it}: loss {loss} vs nanochat's {want_loss}"
        );
    }
    let dir = t.save().unwrap();
    let saved = read_state_dict(&dir, 153).unwrap();
    let reference =
        crate::io::read_safetensors(&native("native_v1/resume/resume_params.safetensors")).unwrap();
    for (name, start) in &before {
        let got = floats(&saved[name].tensor.data);
        assert_eq!(saved[name].dtype, TorchDType::F32);
        let nano = floats(&reference.tensors[&format!("param.{name}")].data);
        let (mut num, mut den) = (0.0, 0.0);
        for ((g, w), s) in got.iter().zip(&nano).zip(start) {
            num += ((g - s) - (w - s)).powi(2);
            den += (w - s).powi(2);
        }
        let r = (num / den.max(1e-300)).sqrt();
        // v1's Newton-Schulz runs in bf16: nanochat's own Muon updates move 0.9-1.6% under
        // ulp noise, and 1.8-3.0% with it in f32 (README section 9): the bar is 5% there.
        let bar = if name.starts_with("transformer.h.") {
            5e-2
        } else {
            1e-3
        };
        assert!(
            r < bar,
            "{name}: update {r:.2e} (relative L2) off nanochat's (bar {bar})"
        );
    }
    let meta: Value =
        json5::from_str(&std::fs::read_to_string(dir.join("meta_000153.json")).unwrap()).unwrap();
    let nano_meta: Value = serde_json::from_str(
        &std::fs::read_to_string(native("native_v1/resume/meta_000153.json")).unwrap(),
    )
    .unwrap();
    for key in [
        "step",
        "model_config",
        "device_batch_size",
        "max_seq_len",
        "dataloader_state_dict",
    ] {
        assert_eq!(meta[key], nano_meta[key], "meta key `{key}`");
    }
    assert!(
        meta.get("total_batch_size").is_none(),
        "v1's meta has no total_batch_size"
    );
    // The optimizer file in v1's layout, read back at 153 AdamW steps; nanochat finds 153.
    let (model, _, m) =
        crate::checkpoint::load_model(&paths, Phase::Base, &dev, None, None, false).unwrap();
    assert_eq!(m.step, 153);
    let (_, steps, state) = crate::checkpoint::read_optimizer_state(&dir, &m, &model).unwrap();
    assert_eq!(steps, 153);
    let mine: Vec<(String, Vec<usize>, Vec<f32>)> =
        crate::optim::OptimizerState::state_tensors(&t.optim)
            .unwrap()
            .into_iter()
            .map(|(n, x)| (n, x.shape().to_vec(), x.to_vec_f32().unwrap()))
            .collect();
    assert_eq!(state.len(), mine.len());
    for (k, shape, v) in mine {
        assert_eq!(state[&k], (shape, v), "{k}");
    }
}

#[test]
fn a_v1_run_that_runs_out_of_shards_saves_its_last_step_and_says_so() {
    let dev = Device::cpu().unwrap();
    let (_tmp, base) = native_v1_with_data();
    let paths = paths_for(&base);
    let opts = BaseTrainOptions {
        total_steps: Some(400),
        eval_every: 0,
        ..v1_resume_options()
    };
    let mut run = BaseRun::prepare(&opts, &paths, &dev, &mut |_| {}).unwrap();
    let e = run.trainer.run(&mut |_| {}).unwrap_err().to_string();
    let step = run.trainer.step;
    assert!(step > 150 && step < 400, "{step}");
    assert!(
        e.contains("does not start over") && e.contains(&format!("step, {step}, was saved")),
        "{e}"
    );
    let dir = base.join("base_checkpoints/d3");
    assert!(dir.join(format!("meta_{step:06}.json")).exists());
    assert!(dir.join(format!("model_{step:06}.pt")).exists());
}
