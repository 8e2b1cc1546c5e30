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
    let out = common::nanochat_in(&base)
        .args(["base-eval", "--quiet", "-o"])
        .arg(&out_file)
        .output()
        .unwrap();
    common::assert_success(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("eval_bundle"));
    let r: Value = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    assert_eq!(r["data"], "eval_bundle", "{r}");
    let labels: Vec<&str> = r["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["piqa", "winograd"], "{r}");
}

/// `--resume-from-step` on nanochat's own checkpoint is refused before anything is written
/// (this version cannot continue a nanochat run in nanochat's format).
#[test]
fn resuming_a_nanochat_checkpoint_is_refused_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let base = native_copy("native_head", tmp.path());
    let d3 = base.join("base_checkpoints/d3");
    let before: Vec<_> = std::fs::read_dir(&d3)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let out = common::nanochat_in(&base)
        .args([
            "base-train",
            "--recipe",
            "head",
            "--depth",
            "3",
            "--aspect-ratio",
            "21",
        ])
        .args([
            "--head-dim",
            "32",
            "--max-seq-len",
            "512",
            "--device-batch-size",
            "2",
        ])
        .args([
            "--total-batch-size",
            "1024",
            "--model-tag",
            "d3",
            "--resume-from-step",
            "200",
        ])
        .args(["--num-iterations", "203", "--quiet"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("model_000200.pt") && err.contains("nanochat"),
        "{err}"
    );
    let after: Vec<_> = std::fs::read_dir(&d3)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before.len(), after.len(), "{after:?}");
}
