//! nanochat's own base dirs, used unchanged (`NANOCHAT_BASE_DIR` pointing at them): the
//! fixtures `tests/fixtures/reference/head/native_{head,v1}` were made by nanochat's code
//! (92d63d4 and 16788ee) and hold `.pt` checkpoints, Python-JSON metas and `tokenizer.pkl`.

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;

/// A writable copy of a native base dir (`cp -r`).
pub fn native_copy(gen: &str, into: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/reference/head")
        .join(gen);
    let dst = into.join(gen);
    let ok = std::process::Command::new("cp")
        .arg("-r")
        .arg(&src)
        .arg(&dst)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let ok = std::process::Command::new("chmod")
        .args(["-R", "u+w"])
        .arg(&dst)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    dst
}

fn expected(base: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(base.join("expected.json")).unwrap()).unwrap()
}

/// `chat-cli -i base -t 0` answers as nanochat's Engine does, token for token, on both
/// generations.
#[test]
fn chat_cli_greedy_reproduces_nanochat_on_its_own_files() {
    let tmp = tempfile::tempdir().unwrap();
    for gen in ["native_head", "native_v1"] {
        let base = native_copy(gen, tmp.path());
        let c = &expected(&base)["greedy_chat"];
        let n = c["max_tokens"].as_u64().unwrap().to_string();
        let out = common::nanochat_in(&base)
            .args(["chat-cli", "-i", "base", "-t", "0", "-m", &n, "--json"])
            .args(["-p", "What is free software?"])
            .output()
            .unwrap();
        common::assert_success(&out);
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        let want = &c["generated_ids"];
        let n = want.as_array().unwrap().len();
        assert_eq!(
            &Value::Array(got["tokens"].as_array().unwrap()[..n].to_vec()),
            want,
            "{gen}"
        );
        assert!(
            got["reply"]
                .as_str()
                .unwrap()
                .starts_with(c["text"].as_str().unwrap()),
            "{gen}: {got}"
        );
    }
}

/// `base-eval` on a nanochat base dir uses its `eval_bundle/` (nanochat's CORE data:
/// core.yaml, eval_meta_data.csv, eval_data/), here a two-task bundle in nanochat's layout.
#[test]
fn base_eval_reads_nanochats_eval_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let base = native_copy("native_head", tmp.path());
    let b = base.join("eval_bundle");
    std::fs::create_dir_all(b.join("eval_data/lu")).unwrap();
    std::fs::write(
        b.join("core.yaml"),
        "icl_tasks:\n-\n  label: piqa\n  dataset_uri: lu/piqa.jsonl\n  num_fewshot: [1]\n  icl_task_type: multiple_choice\n-\n  label: winograd\n  dataset_uri: lu/wino.jsonl\n  num_fewshot: [0]\n  icl_task_type: schema\n",
    )
    .unwrap();
    std::fs::write(
        b.join("eval_meta_data.csv"),
        "Eval Task,Task Category,Random baseline\npiqa,commonsense,50\nwinograd,commonsense,50\n",
    )
    .unwrap();
    std::fs::write(
        b.join("eval_data/lu/piqa.jsonl"),
        "{\"query\": \"The license\", \"choices\": [\" is free\", \" a cat\"], \"gold\": 0}\n{\"query\": \"Software\", \"choices\": [\" is free\", \" dog\"], \"gold\": 0}\n{\"query\": \"Copy\", \"choices\": [\"right\", \"left\"], \"gold\": 0}\n",
    )
    .unwrap();
    std::fs::write(
        b.join("eval_data/lu/wino.jsonl"),
        "{\"context_options\": [\"The program\", \"The cat\"], \"continuation\": \" is free software.\", \"gold\": 0}\n",
    )
    .unwrap();
    let out_file = tmp.path().join("core.json");
    // With --split-tokens, nanochat's own shards (its val bpb: 4 best-fit batches of 2 x 512
    // tokens, as base_train measured it; nanochat computed in bf16, here f32).
    let out = common::nanochat_in(&base)
        .args(["base-eval", "--quiet", "--split-tokens", "4096"])
        .args(["--device-batch-size", "2", "-o"])
        .arg(&out_file)
        .output()
        .unwrap();
    common::assert_success(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("eval_bundle"));
    let r: Value = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    assert_eq!(r["data"], "eval_bundle", "{r}");
    // The tag chosen without -g is named.
    assert_eq!(r["model"]["model_tag"], "d3", "{r}");
    let bpb = &r["bpb"];
    assert!(
        bpb["data"]
            .as_str()
            .unwrap()
            .ends_with("base_data_climbmix"),
        "{bpb}"
    );
    let val = bpb["val_bpb"].as_f64().unwrap();
    assert!((val - 5.086624167057834).abs() < 2e-3, "{bpb}");
    let labels: Vec<&str> = r["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["piqa", "winograd"], "{r}");
}

/// The file names in a folder, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// The reference README's commands (section 9), as nanochat's `base_train` was given them,
/// continue nanochat's own runs in their folders: HEAD's with HEAD's dashed flags, v1's with
/// v1's underscored ones, and no `--recipe` (the checkpoint says which).
#[test]
fn nanochats_own_resume_command_lines_continue_its_runs_in_its_format() {
    let tmp = tempfile::tempdir().unwrap();
    let head = native_copy("native_head", tmp.path());
    let out = common::nanochat_in(&head)
        .args([
            "base-train",
            "--run=dummy",
            "--device-type=cpu",
            "--depth=3",
        ])
        .args(["--aspect-ratio=21", "--head-dim=32", "--max-seq-len=512"])
        .args([
            "--device-batch-size=2",
            "--total-batch-size=1024",
            "--warmup-steps=10",
        ])
        .args([
            "--embedding-lr=3.0",
            "--unembedding-lr=0.08",
            "--matrix-lr=0.2",
        ])
        .args(["--scalar-lr=5.0", "--eval-tokens=4096", "--model-tag=d3"])
        .args([
            "--resume-from-step=200",
            "--num-iterations=203",
            "--eval-every=-1",
        ])
        .args([
            "--core-metric-every=-1",
            "--sample-every=-1",
            "--save-every=-1",
            "--quiet",
        ])
        .output()
        .unwrap();
    common::assert_success(&out);
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["step"], 203, "{summary}");
    let d3 = head.join("base_checkpoints/d3");
    let files = listing(&d3);
    for f in [
        "meta_000203.json",
        "model_000203.pt",
        "optim_000203_rank0.pt",
    ] {
        assert!(files.contains(&f.to_string()), "{files:?}");
    }

    let v1 = native_copy("native_v1", tmp.path());
    let ok = std::process::Command::new("cp")
        .arg("-r")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/reference/head/native_v1_data/base_data"),
        )
        .arg(v1.join("base_data"))
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let out = common::nanochat_in(&v1)
        .args([
            "base-train",
            "--run=dummy",
            "--device_type=cpu",
            "--depth=3",
        ])
        .args([
            "--max_seq_len=128",
            "--device_batch_size=8",
            "--total_batch_size=1024",
        ])
        .args([
            "--eval_tokens=1024",
            "--model_tag=d3",
            "--resume_from_step=150",
        ])
        .args([
            "--num_iterations=153",
            "--eval_every=1000000",
            "--core_metric_every=-1",
        ])
        .args(["--sample_every=1000000", "--save_every=-1", "--quiet"])
        .output()
        .unwrap();
    common::assert_success(&out);
    let meta: Value = serde_json::from_slice(
        &std::fs::read(v1.join("base_checkpoints/d3/meta_000153.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        meta["dataloader_state_dict"],
        serde_json::json!({"pq_idx": 0, "rg_idx": 1})
    );
    // v1 evaluates at the last step: nanochat measured 2.765660688558899 on the same batch.
    let bpb = meta["val_bpb"].as_f64().unwrap();
    assert!((bpb - 2.765660688558899).abs() < 1e-3, "val bpb {bpb}");
}

/// A nanochat resume given flags that contradict the checkpoint is refused before anything is
/// written, naming the flag.
#[test]
fn a_nanochat_resume_with_the_wrong_flags_is_refused_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let base = native_copy("native_head", tmp.path());
    let d3 = base.join("base_checkpoints/d3");
    let before = listing(&d3);
    // Without --aspect-ratio=21 the flags describe a 192-wide model.
    let out = common::nanochat_in(&base)
        .args([
            "base-train",
            "--depth",
            "3",
            "--head-dim",
            "32",
            "--max-seq-len",
            "512",
        ])
        .args(["--device-batch-size", "2", "--total-batch-size", "1024"])
        .args(["--model-tag", "d3", "--resume-from-step", "200"])
        .args(["--num-iterations", "203", "--quiet"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--aspect-ratio") && err.contains("64"),
        "{err}"
    );
    assert_eq!(listing(&d3), before);
}
