//! The speedrun in CI size (depth 1, a few steps, two problems per task, RL included) writes
//! every stage's checkpoints, the evaluation result files and the report card; then the
//! evaluation commands on their own: task selection, `--hf-path`, and clear errors for missing
//! data and unknown tasks.

mod common;

use std::path::Path;

fn nanochat(root: &Path, args: &[&str]) -> (bool, String, String) {
    let out = common::nanochat_in(root).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Runs an evaluation command (`args`' parts joined) on the committed samples, quietly, with
/// its result file `name` under `root`; asserts it succeeds and returns its stdout and the file.
fn eval_to(root: &Path, name: &str, args: &[&[&str]]) -> (String, serde_json::Value) {
    let out = root.join(name);
    let mut all = args.concat();
    all.extend(["--samples", "--quiet", "-o", out.to_str().unwrap()]);
    let (ok, stdout, err) = nanochat(root, &all);
    assert!(ok, "{err}");
    (stdout, json(&out))
}

#[test]
fn ci_sized_speedrun_then_the_eval_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (ok, _, err) = nanochat(
        root,
        &[
            "speedrun",
            "--depth",
            "1",
            "--base-steps",
            "4",
            "--chat-steps",
            "3",
            "--max-problems",
            "2",
            "--vocab-size",
            "500",
            "--rl",
            "--rl-steps",
            "2",
            "--quiet",
        ],
    );
    assert!(ok, "{err}");
    for phase in ["base", "mid", "sft", "rl"] {
        let dir = root.join(format!("{phase}_checkpoints/d1"));
        assert!(dir.join("metrics.jsonl").exists(), "{phase}");
    }
    for source in ["mid", "sft", "rl"] {
        let r = json(&root.join(format!("eval/chat-eval-{source}.json")));
        assert_eq!(r["tasks"].as_object().unwrap().len(), 6, "{source}: {r}");
        assert_eq!(r["tasks"]["GSM8K"]["total"], 2);
        assert!(r["ChatCORE"].as_f64().is_some());
    }
    let core = json(&root.join("eval/base-eval.json"));
    assert!(core["CORE"].as_f64().is_some());
    assert!(core["tasks"].as_array().unwrap().len() >= 8);
    let md = std::fs::read_to_string(root.join("report/report.md")).unwrap();
    for section in [
        "## Tokenizer training",
        "## Base model training",
        "## Base model evaluation",
        "## Midtraining",
        "## Chat SFT",
        "## Chat evaluation (SFT)",
        "## Summary",
        "Total wall clock time",
    ] {
        assert!(md.contains(section), "report lacks {section}:\n{md}");
    }
    let summary = md.split("## Summary").nth(1).unwrap();
    assert!(summary.contains("| ChatCORE"), "{summary}");
    for svg in [
        "base-train-loss.svg",
        "mid-train-loss.svg",
        "chat-sft-loss.svg",
        "chat-rl-loss.svg",
    ] {
        assert!(root.join("report").join(svg).exists(), "{svg}");
    }

    // chat-eval: pipe-separated tasks, a result file where asked.
    let chat_eval = ["chat-eval", "-i", "sft", "-a", "ARC-Easy|GSM8K"];
    let (stdout, r) = eval_to(
        root,
        "two.json",
        &[&chat_eval, &["--max-problems", "3", "-b", "2"]],
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap(),
        r
    );
    let tasks: Vec<&String> = r["tasks"].as_object().unwrap().keys().collect();
    assert_eq!(tasks, ["ARC-Easy", "GSM8K"]);
    assert_eq!(r["tasks"]["ARC-Easy"]["total"], 3);
    assert_eq!(r["tasks"]["ARC-Easy"]["baseline"], 0.25);
    assert!(r["ChatCORE"].is_null(), "ChatCORE needs all six tasks");

    // Missing fetched data names the fetch command; an unknown task lists the known ones.
    let (ok, _, err) = nanochat(root, &["chat-eval", "-a", "MMLU", "--quiet"]);
    assert!(
        !ok && err.contains("scripts/fetch_data.sh") && err.contains("--samples"),
        "{err}"
    );
    let (ok, _, err) = nanochat(root, &["chat-eval", "-a", "Trivia", "--samples"]);
    assert!(
        !ok && err.contains("ARC-Easy|ARC-Challenge|MMLU|GSM8K|HumanEval|SpellingBee"),
        "{err}"
    );
    let (ok, _, err) = nanochat(root, &["base-eval", "--quiet"]);
    assert!(!ok && err.contains("scripts/fetch_data.sh"), "{err}");

    // base-eval --hf-path: a model file and tokenizer in any folder.
    let hf = root.join("hf");
    std::fs::create_dir_all(&hf).unwrap();
    std::fs::copy(
        root.join("base_checkpoints/d1/model_000004.safetensors"),
        hf.join("model.safetensors"),
    )
    .unwrap();
    std::fs::copy(
        root.join("tokenizer/tokenizer.json"),
        hf.join("tokenizer.json"),
    )
    .unwrap();
    let hf_path = ["base-eval", "--hf-path", hf.to_str().unwrap()];
    let (_, r) = eval_to(root, "hf.json", &[&hf_path, &["--max-per-task", "1"]]);
    assert_eq!(r["model"]["hf_path"], hf.to_str().unwrap());
    assert!(r["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["total"] == 1));
    let (ok, _, err) = nanochat(
        root,
        &[
            "base-eval",
            "--hf-path",
            root.join("nowhere").to_str().unwrap(),
            "--samples",
        ],
    );
    assert!(!ok && err.contains("nowhere"), "{err}");
}

/// `speedrun --recipe head` in CI size: HEAD's pipeline (base model, CORE, SFT from the base
/// model with HEAD's recipe, chat evaluation, RL), no mid-training, and the report card.
#[test]
fn ci_sized_head_speedrun() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let args = "speedrun --recipe head --depth 1 --base-steps 4 --chat-steps 3 --max-problems 2 \
        --vocab-size 500 --rl --rl-steps 2 --quiet";
    let args: Vec<&str> = args.split_whitespace().collect();
    let (ok, _, err) = nanochat(root, &args);
    assert!(ok, "{err}");
    assert!(
        !root.join("mid_checkpoints").exists(),
        "HEAD has no mid-training"
    );
    for phase in ["base", "sft", "rl"] {
        let dir = root.join(format!("{phase}_checkpoints/d1"));
        assert!(dir.join("metrics.jsonl").exists(), "{phase}");
    }
    let meta = json(&root.join("sft_checkpoints/d1/meta_000003.json"));
    assert_eq!(meta["config"]["architecture"], "head");
    assert_eq!(meta["run"]["recipe"], "head");
    assert_eq!(meta["run"]["warm_start"], true);
    for source in ["sft", "rl"] {
        let r = json(&root.join(format!("eval/chat-eval-{source}.json")));
        assert!(r["ChatCORE"].as_f64().is_some(), "{source}: {r}");
    }
    let md = std::fs::read_to_string(root.join("report/report.md")).unwrap();
    for section in ["## Base model training", "## Chat SFT", "## Summary"] {
        assert!(md.contains(section), "report lacks {section}:\n{md}");
    }
    assert!(!md.contains("## Midtraining"), "{md}");
}
