//! nanochat's own base dirs (`tests/fixtures/reference/head/native_{v1,head}`, made by nanochat's
//! code at 16788ee and 92d63d4) read in place: logits against the float64 reference, the
//! refusals, and the discovery of nanochat's folder names.

use std::path::{Path, PathBuf};

use super::*;
use crate::checkpoint::{
    checkpoint_dir, export, list_tags, load_model, load_phase, nanochat, nanochat_optim,
    nanochat_optim_write, CheckpointQuery,
};
use crate::model::ForwardOptions;
use crate::paths::Paths;
use crate::torchfile::tests::native;
use crate::torchfile::{PtWriteValue, TorchDType};

/// A writable copy of a native base dir (the fixtures are read-only in CI checkouts).
pub(crate) fn copy_native(gen: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join(gen);
    copy_dir(&native(gen), &dst);
    (tmp, dst)
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
            let mut perm = std::fs::metadata(&to).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perm.set_readonly(false);
            std::fs::set_permissions(&to, perm).unwrap();
        }
    }
}

pub(crate) fn paths_for(base: &Path) -> Paths {
    let b = base.as_os_str().to_owned();
    Paths::from_vars(|name| (name == "NANOCHAT_BASE_DIR").then(|| b.clone())).unwrap()
}

fn rel_l2(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).powi(2))
        .sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    (num / den).sqrt()
}

#[test]
fn nanochat_base_dirs_of_both_generations_load_and_match_the_float64_logits() {
    let dev = Device::cpu().unwrap();
    for (gen, step, arch) in [
        ("native_head", 200, crate::model::Architecture::Head),
        ("native_v1", 150, crate::model::Architecture::V1),
    ] {
        let (_tmp, base) = copy_native(gen);
        let paths = paths_for(&base);
        let (model, tok, meta) = load_model(&paths, Phase::Base, &dev, None, None, false).unwrap();
        assert_eq!(meta.step, step);
        assert_eq!(meta.format, nanochat::NANOCHAT_FORMAT);
        assert_eq!(meta.config.architecture, arch);
        assert!(meta.optim_file.is_some());
        assert!(meta.run["user_config"].is_object(), "{gen}");
        assert!(
            meta.run["dataloader_state_dict"]["pq_idx"].is_u64(),
            "{gen}"
        );
        let f = crate::io::read_safetensors(&native(&format!("{gen}/expected_logits.safetensors")))
            .unwrap();
        let idx: Vec<u32> = f.tensors["input.idx"]
            .ints("x", "input.idx")
            .unwrap()
            .iter()
            .map(|&v| v as u32)
            .collect();
        let want = f.tensors["output.logits_f64"].floats("x", "y").unwrap();
        let logits = model
            .forward(&idx, (1, idx.len()), ForwardOptions::new())
            .unwrap()
            .to_vec_f32()
            .unwrap();
        let err = rel_l2(&logits, &want);
        assert!(err < 1e-4, "{gen}: logits rel L2 {err:.2e}");
        assert_eq!(tok.get_bos_token_id(), idx[0], "{gen}");
    }
}

#[test]
fn nanochats_meta_with_infinity_and_chat_sft_layout_reads() {
    let (_tmp, base) = copy_native("native_head");
    let d3 = base.join("base_checkpoints/d3");
    // chat_sft's meta: step, val_bpb, model_config, user_config only; Infinity and NaN
    // as Python writes them; the folder is chatsft_checkpoints.
    let sft = base.join("chatsft_checkpoints/d3");
    std::fs::create_dir_all(&sft).unwrap();
    std::fs::copy(d3.join("model_000200.pt"), sft.join("model_000700.pt")).unwrap();
    std::fs::write(
        sft.join("meta_000700.json"),
        r#"{"step": 700, "val_bpb": NaN, "model_config": {"sequence_len": 512, "vocab_size": 330,
        "n_layer": 3, "n_head": 2, "n_kv_head": 2, "n_embd": 64, "window_pattern": "SSSL"},
        "user_config": {"x": Infinity, "y": -Infinity}}"#,
    )
    .unwrap();
    let dev = Device::cpu().unwrap();
    let l = load_phase(
        &paths_for(&base),
        Phase::Sft,
        &dev,
        &CheckpointQuery::default(),
    )
    .unwrap();
    assert_eq!(l.meta.step, 700);
    assert_eq!(l.meta.val_bpb, None);
    assert_eq!(l.meta.phase, Phase::Sft);
    assert!(l.meta.optim_file.is_none());
    assert_eq!(list_tags(&base, Phase::Sft), vec!["d3".to_string()]);
    assert_eq!(checkpoint_dir(&base, Phase::Sft, "d3"), sft);
    // A new tag is made in our folder.
    assert_eq!(
        checkpoint_dir(&base, Phase::Sft, "new"),
        base.join("sft_checkpoints/new")
    );
}

/// Rewrites `model_000200.pt` of a HEAD copy with `edit` applied to its state dict.
fn edit_head(base: &Path, edit: impl FnOnce(&mut Vec<(String, PtWriteValue)>)) {
    let d3 = base.join("base_checkpoints/d3");
    let sd = nanochat::read_state_dict(&d3, 200).unwrap();
    let mut items: Vec<(String, PtWriteValue)> = sd
        .into_iter()
        .map(|(k, t)| {
            let v = t.tensor.floats("model_000200.pt", &k).unwrap();
            let w = PtWriteValue::tensor(t.dtype, &t.tensor.shape, &v);
            (k, w)
        })
        .collect();
    edit(&mut items);
    crate::torchfile::write_pt(
        &d3.join("model_000200.pt"),
        &PtWriteValue::OrderedDict(items),
    )
    .unwrap();
}

fn load_err(base: &Path) -> String {
    let dev = Device::cpu().unwrap();
    match load_model(&paths_for(base), Phase::Base, &dev, None, None, false) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn an_intermediate_era_or_contradicting_checkpoint_is_refused_naming_file_and_key() {
    // Value embeddings dropped (as the months between v1 and HEAD had): refused.
    let (_t1, base) = copy_native("native_head");
    edit_head(&base, |items| {
        items.retain(|(k, _)| !k.starts_with("value_embeds"))
    });
    let e = load_err(&base);
    assert!(
        e.contains("model_000200.pt")
            && e.contains("value_embeds.0.weight")
            && e.contains("missing"),
        "{e}"
    );
    // A key HEAD does not have.
    let (_t2, base) = copy_native("native_head");
    edit_head(&base, |items| {
        items.push((
            "transformer.h.0.attn.rotary.inv_freq".into(),
            PtWriteValue::tensor(TorchDType::F32, &[4], &[1.0; 4]),
        ))
    });
    let e = load_err(&base);
    assert!(
        e.contains("rotary.inv_freq") && e.contains("not a parameter"),
        "{e}"
    );
    // A shape that contradicts model_config.
    let (_t3, base) = copy_native("native_head");
    edit_head(&base, |items| {
        for (k, v) in items.iter_mut() {
            if k == "lm_head.weight" {
                *v = PtWriteValue::tensor(TorchDType::F32, &[330, 64], &vec![0.0; 330 * 64]);
            }
        }
    });
    let e = load_err(&base);
    assert!(
        e.contains("lm_head.weight") && e.contains("[330, 64]"),
        "{e}"
    );
    // A HEAD state dict under a v1 model_config (window_pattern removed from the meta).
    let (_t4, base) = copy_native("native_head");
    let m = base.join("base_checkpoints/d3/meta_000200.json");
    let text = std::fs::read_to_string(&m).unwrap();
    std::fs::write(
        &m,
        text.replace(",\n    \"window_pattern\": \"SSSL\"\n", "\n"),
    )
    .unwrap();
    let e = load_err(&base);
    assert!(
        e.contains("model_000200.pt") && e.contains("says v1"),
        "{e}"
    );
    // An unknown model_config key.
    let (_t5, base) = copy_native("native_v1");
    let m = base.join("base_checkpoints/d3/meta_000150.json");
    let text = std::fs::read_to_string(&m).unwrap();
    std::fs::write(
        &m,
        text.replacen("\"n_embd\"", "\"n_mlp\": 4, \"n_embd\"", 1),
    )
    .unwrap();
    let e = load_err(&base);
    assert!(e.contains("meta_000150.json") && e.contains("n_mlp"), "{e}");
}

/// nanochat's Engine at temperature 0 (`expected.json`'s `greedy`, `greedy_long` (past HEAD's
/// 128-token window, so decode-time windowing and smear are exercised) and `greedy_chat`):
/// our engine on the same files gives the same ids.
#[test]
fn greedy_decoding_reproduces_nanochats_engine_token_for_token() {
    let dev = Device::cpu().unwrap();
    for gen in ["native_head", "native_v1"] {
        let (_tmp, base) = copy_native(gen);
        let (model, tok, _) =
            load_model(&paths_for(&base), Phase::Base, &dev, None, None, false).unwrap();
        let engine = crate::engine::Engine::new(model, tok).unwrap();
        let e: serde_json::Value = serde_json::from_slice(
            &std::fs::read(native(&format!("{gen}/expected.json"))).unwrap(),
        )
        .unwrap();
        for case in ["greedy", "greedy_long", "greedy_chat"] {
            let c = &e[case];
            let ids = |k: &str| -> Vec<u32> {
                c[k].as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as u32)
                    .collect()
            };
            let params = crate::engine::GenerateParams {
                max_tokens: c["max_tokens"].as_u64().unwrap() as usize,
                temperature: 0.0,
                seed: Some(0),
                ..Default::default()
            };
            let (got, _) = engine.generate_ids(&ids("prompt_ids"), &params).unwrap();
            let want = ids("generated_ids");
            // Our stream includes the terminal token nanochat's stops before.
            let got = &got[..want.len().min(got.len())];
            assert_eq!(got, want.as_slice(), "{gen} {case}");
            let text = engine.tokenizer().decode(&want).unwrap();
            assert_eq!(text, c["text"].as_str().unwrap(), "{gen} {case}");
        }
    }
}

/// `export --to nanochat` then reading the export back is the identity: every parameter bit
/// for bit, the tokenizer's fingerprint, the meta's step, val_bpb, config and user_config.
#[test]
fn export_then_import_is_the_identity_for_both_generations() {
    let dev = Device::cpu().unwrap();
    for gen in ["native_head", "native_v1"] {
        let (_tmp, base) = copy_native(gen);
        let q = CheckpointQuery::default();
        let a = load_phase(&paths_for(&base), Phase::Base, &dev, &q).unwrap();
        let out = base.parent().unwrap().join("export");
        let r = export::export_nanochat(&a, "d3", &out).unwrap();
        assert!(r.model.ends_with(
            "base_checkpoints/d3/model_000".to_string() + &a.meta.step.to_string() + ".pt"
        ));
        // nanochat's own optimizer file goes along unchanged.
        assert_eq!(r.optim.len(), 1);
        assert_eq!(
            std::fs::read(&r.optim[0]).unwrap(),
            std::fs::read(base.join(format!(
                "base_checkpoints/d3/optim_{:06}_rank0.pt",
                a.meta.step
            )))
            .unwrap()
        );
        let b = load_phase(&paths_for(&out), Phase::Base, &dev, &q).unwrap();
        let pa = a.model.named_parameters();
        let pb = b.model.named_parameters();
        assert_eq!(pa.len(), pb.len());
        for ((na, ta), (nb, tb)) in pa.iter().zip(&pb) {
            assert_eq!(na, nb);
            assert_eq!(
                ta.to_vec_f32().unwrap(),
                tb.to_vec_f32().unwrap(),
                "{gen} {na}"
            );
        }
        assert_eq!(
            a.tokenizer.fingerprint().unwrap(),
            b.tokenizer.fingerprint().unwrap()
        );
        assert_eq!(a.meta.config, b.meta.config);
        assert_eq!(a.meta.val_bpb, b.meta.val_bpb);
        assert_eq!(a.meta.run["user_config"], b.meta.run["user_config"]);
        // token_bytes.pt as the generation writes it (v1's quirk for v1).
        let tb = crate::tokenizer::pkl::read_token_bytes_pt(&r.token_bytes).unwrap();
        let orig = crate::tokenizer::pkl::read_token_bytes_pt(&native(&format!(
            "{gen}/tokenizer/token_bytes.pt"
        )))
        .unwrap();
        assert_eq!(tb, orig, "{gen}");
        // Only globals torch.load(weights_only=True) allows (checked by Python's pickletools
        // where python3 exists: scripts/check_pt_globals.py).
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/check_pt_globals.py");
        if let Ok(o) = std::process::Command::new("python3")
            .arg(&script)
            .arg(&r.model)
            .arg(&r.token_bytes)
            .output()
        {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
    }
}

#[test]
fn a_model_nanochat_cannot_represent_is_refused_with_a_reason() {
    let dev = Device::cpu().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (_t, base) = copy_native("native_v1");
    let mut a = load_phase(
        &paths_for(&base),
        Phase::Base,
        &dev,
        &CheckpointQuery::default(),
    )
    .unwrap();
    let mut c = a.meta.config.clone();
    c.bias = true;
    a.model = crate::model::GPT::new(c, &dev, DType::F32, 1).unwrap();
    let e = export::export_nanochat(&a, "d3", tmp.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("bias"), "{e}");
}

/// nanochat's optimizer files of both generations land on the right parameters: sums of
/// tensors as torch itself reads them (`torch.load`, 2.15) for a tensor of each kind, and the
/// whole state loads into our optimizer for the model.
#[test]
fn nanochats_optimizer_state_of_both_generations_maps_onto_our_names() {
    let dev = Device::cpu().unwrap();
    let sum = |m: &nanochat_optim::StateMap, k: &str| -> f64 {
        m.get(k)
            .unwrap_or_else(|| panic!("{k}"))
            .1
            .iter()
            .map(|&x| x as f64)
            .sum()
    };
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1e-3);
    for gen in ["native_head", "native_v1"] {
        let (_tmp, base) = copy_native(gen);
        let l = load_phase(
            &paths_for(&base),
            Phase::Base,
            &dev,
            &CheckpointQuery::default(),
        )
        .unwrap();
        let dir = base.join("base_checkpoints/d3");
        let (step, m) =
            nanochat_optim::read_nanochat_optimizer(&dir, l.meta.step, &l.model).unwrap();
        let want: &[(&str, f64)] = if gen == "native_head" {
            assert_eq!(step, 200);
            assert_eq!(m.len(), 9 * 2 + (2 + 12 + 3 + 3) * 2);
            &[
                ("transformer.wte.weight.exp_avg_sq", 2.9298357399287767e-05),
                (
                    "transformer.h.2.mlp.c_fc.weight.momentum_buffer",
                    0.014446500488951908,
                ),
                (
                    "transformer.h.0.attn.c_q.weight.second_momentum_buffer",
                    1.0000008791685104,
                ),
                (
                    "transformer.h.2.attn.ve_gate.weight.second_momentum_buffer",
                    0.9999999590218067,
                ),
            ]
        } else {
            assert_eq!(step, 150);
            assert_eq!(m.len(), 2 * 2 + 18);
            &[
                ("lm_head.weight.exp_avg", 0.007308667732891294),
                (
                    "transformer.h.2.mlp.c_proj.weight.momentum_buffer",
                    0.04255457153793962,
                ),
                (
                    "transformer.h.0.attn.c_v.weight.momentum_buffer",
                    -0.019681190305877116,
                ),
            ]
        };
        for (k, v) in want {
            assert!(close(sum(&m, k), *v), "{gen} {k}: {} vs {v}", sum(&m, k));
        }
        let settings = match l.meta.config.architecture {
            crate::model::Architecture::Head => {
                crate::optim::OptimSettings::Head(crate::optim::MuonAdamWConfig::default())
            }
            crate::model::Architecture::V1 => {
                crate::optim::OptimSettings::V1(crate::optim::OptimConfig::default())
            }
        };
        let mut optim = crate::optim::TrainOptimizer::new(&l.model, &settings).unwrap();
        crate::checkpoint::load_optimizer_state(&dir, &l.meta, &l.model, &mut optim, &dev).unwrap();
        assert_eq!(crate::optim::OptimizerState::steps(&optim), step);
    }
}

/// Splits HEAD's rank-0 optimizer file into two ranks' shards by `MuonAdamW`'s rule (AdamW
/// moments of >= 1024 elements by rows, Muon buffers in chunks of ceil(K/2), padded) and
/// reads them back: the same state as the single file.
#[test]
fn a_two_rank_head_optimizer_reassembles_to_the_single_rank_state() {
    use crate::torchfile::TorchFile;
    let dev = Device::cpu().unwrap();
    let (_tmp, base) = copy_native("native_head");
    let l = load_phase(
        &paths_for(&base),
        Phase::Base,
        &dev,
        &CheckpointQuery::default(),
    )
    .unwrap();
    let dir = base.join("base_checkpoints/d3");
    let (step, whole) = nanochat_optim::read_nanochat_optimizer(&dir, 200, &l.model).unwrap();
    let file = TorchFile::open(&dir.join("optim_000200_rank0.pt")).unwrap();
    let root = file.to_write_value(&file.root).unwrap();
    let shard = |rank: usize| -> PtWriteValue {
        let PtWriteValue::Dict(top) = root.clone() else {
            panic!()
        };
        let top = top
            .into_iter()
            .map(|(k, v)| {
                if k != PtWriteValue::str("state") {
                    return (k, v);
                }
                let PtWriteValue::Dict(params) = v else {
                    panic!()
                };
                let params = params
                    .into_iter()
                    .map(|(id, st)| {
                        let PtWriteValue::Dict(st) = st else { panic!() };
                        let st = st
                            .into_iter()
                            .map(|(name, t)| {
                                let PtWriteValue::Tensor {
                                    dtype,
                                    shape,
                                    bytes,
                                } = t
                                else {
                                    return (name, t);
                                };
                                let numel: usize = shape.iter().product();
                                let row = bytes.len() / shape[0];
                                let muon = name == PtWriteValue::str("momentum_buffer")
                                    || name == PtWriteValue::str("second_momentum_buffer");
                                let (rows, mut shape) = (shape[0], shape.clone());
                                let t = if muon {
                                    let chunk = rows.div_ceil(2);
                                    let lo = (rank * chunk).min(rows);
                                    let hi = ((rank + 1) * chunk).min(rows);
                                    let mut b = bytes[lo * row..hi * row].to_vec();
                                    b.resize(chunk * row, 0);
                                    shape[0] = chunk;
                                    PtWriteValue::Tensor {
                                        dtype,
                                        shape,
                                        bytes: b,
                                    }
                                } else if numel >= 1024 {
                                    let half = rows / 2;
                                    shape[0] = half;
                                    let b =
                                        bytes[rank * half * row..(rank + 1) * half * row].to_vec();
                                    PtWriteValue::Tensor {
                                        dtype,
                                        shape,
                                        bytes: b,
                                    }
                                } else {
                                    PtWriteValue::Tensor {
                                        dtype,
                                        shape,
                                        bytes,
                                    }
                                };
                                (name, t)
                            })
                            .collect();
                        (id, PtWriteValue::Dict(st))
                    })
                    .collect();
                (k, PtWriteValue::Dict(params))
            })
            .collect();
        PtWriteValue::Dict(top)
    };
    for rank in 0..2 {
        crate::torchfile::write_pt(
            &dir.join(format!("optim_000200_rank{rank}.pt")),
            &shard(rank),
        )
        .unwrap();
    }
    let (step2, merged) = nanochat_optim::read_nanochat_optimizer(&dir, 200, &l.model).unwrap();
    assert_eq!(step2, step);
    assert_eq!(merged.len(), whole.len());
    for (k, v) in &whole {
        assert_eq!(merged.get(k), Some(v), "{k}");
    }
    // A rank whose slice has the wrong shape is named.
    std::fs::copy(
        dir.join("optim_000200_rank0.pt"),
        dir.join("optim_000200_rank2.pt"),
    )
    .unwrap();
    let e = nanochat_optim::read_nanochat_optimizer(&dir, 200, &l.model)
        .unwrap_err()
        .to_string();
    assert!(e.contains("rank") && e.contains("optim_000200"), "{e}");
}

/// HEAD's optimizer file written from our `MuonAdamW` (after loading nanochat's) reads back
/// to the same state, bf16 moments included (they were bf16 to begin with, so exact).
#[test]
fn heads_optimizer_file_written_from_ours_reads_back_identically() {
    use crate::optim::{MuonAdamW, MuonAdamWConfig, OptimizerState};
    let dev = Device::cpu().unwrap();
    let (_tmp, base) = copy_native("native_head");
    let l = load_phase(
        &paths_for(&base),
        Phase::Base,
        &dev,
        &CheckpointQuery::default(),
    )
    .unwrap();
    let dir = base.join("base_checkpoints/d3");
    let (step, want) = nanochat_optim::read_nanochat_optimizer(&dir, 200, &l.model).unwrap();
    let mut optim = MuonAdamW::new(&l.model, &MuonAdamWConfig::default()).unwrap();
    crate::checkpoint::load_optimizer_state(&dir, &l.meta, &l.model, &mut optim, &dev).unwrap();
    let state: nanochat_optim::StateMap = OptimizerState::state_tensors(&optim)
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n, (t.shape().to_vec(), t.to_vec_f32().unwrap())))
        .collect();
    let bf16 = vec![
        "transformer.wte.weight".to_string(),
        "value_embeds.0.weight".into(),
        "value_embeds.2.weight".into(),
    ];
    let out = dir.join("optim_000200_rank0.pt");
    nanochat_optim_write::write_head_optimizer(
        &out,
        optim.groups(),
        optim.steps(),
        &state,
        &bf16,
        None,
    )
    .unwrap();
    let (step2, got) = nanochat_optim::read_nanochat_optimizer(&dir, 200, &l.model).unwrap();
    assert_eq!(step2, step);
    assert_eq!(got.len(), want.len());
    for (k, v) in &want {
        assert_eq!(got.get(k), Some(v), "{k}");
    }
    let f = crate::torchfile::TorchFile::open(&out).unwrap();
    let crate::torchfile::Value::Dict(top) = &f.root else {
        panic!()
    };
    assert_eq!(
        top[1].0,
        crate::torchfile::Value::Str("param_groups".into())
    );
}

/// Bad input found by trying to break the reader: each is an error naming the file, never an
/// abort, a stack overflow, lost data or a model paired with the wrong tokenizer.
#[test]
fn hostile_metas_exports_and_tokenizer_pairs_are_refused_by_name() {
    let dev = Device::cpu().unwrap();
    let q = CheckpointQuery::default();
    // A context of 10^12 tokens (the rotary tables would abort the process).
    let (_t1, base) = copy_native("native_head");
    let m = base.join("base_checkpoints/d3/meta_000200.json");
    let text = std::fs::read_to_string(&m).unwrap();
    std::fs::write(
        &m,
        text.replace("\"sequence_len\": 512", "\"sequence_len\": 1000000000000"),
    )
    .unwrap();
    let e = load_err(&base);
    assert!(
        e.contains("meta_000200.json") && e.contains("block_size"),
        "{e}"
    );
    // JSON nested 50,000 deep (a recursive parser would overflow the stack).
    std::fs::write(
        &m,
        format!(
            "{{\"junk\": {}{}, {}",
            "[".repeat(50_000),
            "]".repeat(50_000),
            &text[1..]
        ),
    )
    .unwrap();
    let e = load_err(&base);
    assert!(e.contains("meta_000200.json") && e.contains("deep"), "{e}");
    // A null window_pattern is neither generation's: refused, not read as v1.
    std::fs::write(
        &m,
        text.replace("\"window_pattern\": \"SSSL\"", "\"window_pattern\": null"),
    )
    .unwrap();
    let e = load_err(&base);
    assert!(
        e.contains("meta_000200.json") && e.contains("model_config.window_pattern"),
        "{e}"
    );
    // Export into a folder that holds a model (here: the source itself) writes nothing.
    let (_t2, base) = copy_native("native_head");
    let a = load_phase(&paths_for(&base), Phase::Base, &dev, &q).unwrap();
    let before = std::fs::read(base.join("base_checkpoints/d3/model_000200.pt")).unwrap();
    let e = export::export_nanochat(&a, "d3", &base)
        .unwrap_err()
        .to_string();
    assert!(e.contains("already holds files"), "{e}");
    assert_eq!(
        std::fs::read(base.join("base_checkpoints/d3/model_000200.pt")).unwrap(),
        before
    );
    // ... and into a base dir whose tokenizer is another one (v1's model into HEAD's dir).
    let (_t3, v1) = copy_native("native_v1");
    let b = load_phase(&paths_for(&v1), Phase::Base, &dev, &q).unwrap();
    let pkl = std::fs::read(base.join("tokenizer/tokenizer.pkl")).unwrap();
    let e = export::export_nanochat(&b, "v1tag", &base)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tokenizer.pkl") && e.contains("another tokenizer"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(base.join("tokenizer/tokenizer.pkl")).unwrap(),
        pkl
    );
    assert!(!base.join("base_checkpoints/v1tag").exists());
    // A tokenizer.json of another tokenizer beside nanochat's tokenizer.pkl.
    b.tokenizer.save(&base.join("tokenizer")).unwrap();
    let e = load_err(&base);
    assert!(
        e.contains("tokenizer.pkl") && e.contains("another tokenizer"),
        "{e}"
    );
}

/// A two-GPU v1 run's optimizer files (`DistAdamW`: every moment split by rows; `DistMuon`:
/// groups by sorted shape with a `zero_buffer`, each buffer in its owner's file, rank `i % 2`),
/// made from native_v1's single file, read back to the same state.
#[test]
fn a_two_rank_v1_optimizer_reassembles_to_the_single_rank_state() {
    let dev = Device::cpu().unwrap();
    let (_tmp, base) = copy_native("native_v1");
    let l = load_phase(
        &paths_for(&base),
        Phase::Base,
        &dev,
        &CheckpointQuery::default(),
    )
    .unwrap();
    let dir = base.join("base_checkpoints/d3");
    let (step, whole) = nanochat_optim::read_nanochat_optimizer(&dir, 150, &l.model).unwrap();
    let s = PtWriteValue::str;
    let f32s = |shape: &[usize], v: &[f32]| {
        let v: Vec<f64> = v.iter().map(|&x| x as f64).collect();
        PtWriteValue::tensor(TorchDType::F32, shape, &v)
    };
    let matrices: Vec<(String, Vec<usize>)> = l
        .model
        .named_parameters()
        .into_iter()
        .filter(|(n, _)| n.starts_with("transformer.h."))
        .map(|(n, t)| (n, t.shape().to_vec()))
        .collect();
    let mut shapes: Vec<Vec<usize>> = matrices.iter().map(|(_, s)| s.clone()).collect();
    shapes.sort();
    shapes.dedup();
    let shard = |rank: usize| -> PtWriteValue {
        let mut adam_state = vec![];
        let mut adam_groups = vec![];
        for (id, name) in ["lm_head.weight", "transformer.wte.weight"]
            .iter()
            .enumerate()
        {
            let mut st = vec![(
                s("step"),
                PtWriteValue::tensor(TorchDType::I64, &[], &[step as f64]),
            )];
            for k in ["exp_avg", "exp_avg_sq"] {
                let (shape, v) = &whole[&format!("{name}.{k}")];
                let rows = shape[0] / 2;
                let row = v.len() / shape[0];
                let mut sh = shape.clone();
                sh[0] = rows;
                st.push((
                    s(k),
                    f32s(&sh, &v[rank * rows * row..(rank + 1) * rows * row]),
                ));
            }
            adam_state.push((PtWriteValue::Int(id as i64), PtWriteValue::Dict(st)));
            adam_groups.push(PtWriteValue::Dict(vec![
                (s("lr"), PtWriteValue::Float(0.01)),
                (s("initial_lr"), PtWriteValue::Float(0.01)),
                (
                    s("params"),
                    PtWriteValue::List(vec![PtWriteValue::Int(id as i64)]),
                ),
            ]));
        }
        let (mut muon_state, mut muon_groups, mut id) = (vec![], vec![], 0i64);
        for shape in &shapes {
            let members: Vec<&String> = matrices
                .iter()
                .filter(|(_, s)| s == shape)
                .map(|(n, _)| n)
                .collect();
            let mut ids = vec![];
            for (i, name) in members.iter().enumerate() {
                if i % 2 == rank {
                    let (sh, v) = &whole[&format!("{name}.momentum_buffer")];
                    muon_state.push((
                        PtWriteValue::Int(id),
                        PtWriteValue::Dict(vec![(s("momentum_buffer"), f32s(sh, v))]),
                    ));
                }
                ids.push(PtWriteValue::Int(id));
                id += 1;
            }
            let zeros = vec![0.0; shape.iter().product()];
            muon_groups.push(PtWriteValue::Dict(vec![
                (s("lr"), PtWriteValue::Float(0.02)),
                (s("zero_buffer"), f32s(shape, &zeros)),
                (s("initial_lr"), PtWriteValue::Float(0.02)),
                (s("params"), PtWriteValue::List(ids)),
            ]));
        }
        let sd = |st, gr| {
            PtWriteValue::Dict(vec![
                (s("state"), PtWriteValue::Dict(st)),
                (s("param_groups"), PtWriteValue::List(gr)),
            ])
        };
        PtWriteValue::List(vec![
            sd(adam_state, adam_groups),
            sd(muon_state, muon_groups),
        ])
    };
    for rank in 0..2 {
        crate::torchfile::write_pt(
            &dir.join(format!("optim_000150_rank{rank}.pt")),
            &shard(rank),
        )
        .unwrap();
    }
    let (step2, merged) = nanochat_optim::read_nanochat_optimizer(&dir, 150, &l.model).unwrap();
    assert_eq!(step2, step);
    assert_eq!(merged.len(), whole.len());
    for (k, v) in &whole {
        assert_eq!(merged.get(k), Some(v), "{k}");
    }
    // Such a run is not continued by one process (its layout cannot be written back).
    let e = crate::checkpoint::nanochat_optim_v1::V1OptimLayout::from_file(
        &dir.join("optim_000150_rank0.pt"),
        &l.model,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("zero_buffer") && e.contains("DistMuon"), "{e}");
    // A rank file missing (rank 1 of 2 gone, a third present) is named.
    std::fs::remove_file(dir.join("optim_000150_rank1.pt")).unwrap();
    std::fs::copy(
        dir.join("optim_000150_rank0.pt"),
        dir.join("optim_000150_rank2.pt"),
    )
    .unwrap();
    let e = nanochat_optim::read_nanochat_optimizer(&dir, 150, &l.model)
        .unwrap_err()
        .to_string();
    assert!(e.contains("optim_000150_rank0.pt"), "{e}");
}
