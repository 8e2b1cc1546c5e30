//! Fine-tuning on conversations with rows that have no supervised token (issue 12, item 3): 11
//! ordinary conversations and one whose user message (480 tokens) is longer than the row
//! (`--seq-len 256`), one row per micro-batch. chat-sft and mid-train both finish, count the
//! rows (`masked_rows` in metrics.jsonl) and warn.

mod common;

use std::path::Path;
use std::process::Command;

use nanochat_core::tokenizer::Tokenizer;

/// `nanochat` with its model dir and `HOME` in the test's temp dir.
fn nanochat(root: &Path) -> Command {
    let mut c = common::nanochat_in(root);
    c.env("HOME", root.join("home"));
    c
}

fn run(root: &Path, args: &[&str]) -> (serde_json::Value, String) {
    let out = nanochat(root).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?}: {stderr}");
    (
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null),
        stderr,
    )
}

/// A user message of exactly `n` tokens: the shortest prefix of a long text that has them.
fn long_message(tok: &Tokenizer, n: usize) -> String {
    let words = [
        "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog,",
    ];
    let mut text = String::from("Please read all of this:");
    let mut i = 0;
    while tok.encode(&text).len() < n + 8 {
        text.push(' ');
        text.push_str(words[i % words.len()]);
        i += 1;
    }
    (1..=text.len())
        .map(|k| &text[..k])
        .find(|p| tok.encode(p).len() == n)
        .expect("a prefix of n tokens")
        .to_string()
}

fn conversations(tok: &Tokenizer) -> String {
    let mut lines: Vec<String> = (0..11)
        .map(|i| {
            serde_json::json!({"messages": [
                {"role": "user", "content": format!("What is {i} plus one?")},
                {"role": "assistant", "content": format!("It is {}.", i + 1)},
            ]})
            .to_string()
        })
        .collect();
    let long = long_message(tok, 480);
    assert_eq!(tok.encode(&long).len(), 480);
    lines.push(
        serde_json::json!({"messages": [
            {"role": "user", "content": long},
            {"role": "assistant", "content": "Yes."},
        ]})
        .to_string(),
    );
    lines.join("\n") + "\n"
}

fn metrics(root: &Path, phase: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(root.join(format!("{phase}_checkpoints/d1/metrics.jsonl")))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn fine_tuning_with_a_prompt_longer_than_the_row_finishes_and_counts_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    run(root, common::TOK_500);
    run(
        root,
        &common::args(&[
            &["base-train", "--depth", "1", "--seq-len", "256"],
            common::ONE_STEP,
            &["--eval-tokens", "256", "--quiet"],
        ]),
    );
    let tok = Tokenizer::from_pretrained(&root.join("tokenizer")).unwrap();
    let file = root.join("that.jsonl");
    std::fs::write(&file, conversations(&tok)).unwrap();
    let file = file.display().to_string();
    // 24 steps of one row: two passes over the 11 training conversations (and more over the
    // packed stream of mid-training).
    for phase in ["chat-sft", "mid-train"] {
        let (summary, stderr) = run(
            root,
            &[
                phase,
                "--tasks",
                &file,
                "--source",
                "base",
                "--batch-size",
                "1",
                "--seq-len",
                "256",
                "--total-steps",
                "24",
                "--eval-every",
                "0",
                "--quiet",
            ],
        );
        assert_eq!(summary["step"], 24, "{phase}: {summary}");
        let lines = metrics(root, if phase == "chat-sft" { "sft" } else { "mid" });
        assert_eq!(lines.len(), 24, "{phase}");
        let masked: u64 = lines
            .iter()
            .map(|l| l["masked_rows"].as_u64().unwrap())
            .sum();
        assert!(masked > 0, "{phase}: {lines:?}");
        assert_eq!(summary["masked_rows"], masked, "{phase}: {summary}");
        // One row per step: a masked row is a skipped step, with its warning.
        for l in &lines {
            let skipped = l["masked_rows"] == 1;
            assert_eq!(l["skipped"] == true, skipped, "{phase}: {l}");
            assert_eq!(l["loss"].is_null(), skipped, "{phase}: {l}");
        }
        assert!(
            stderr.contains("skipped: no supervised token in its 1 row(s)"),
            "{phase}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("warning: {masked} row(s) in {masked} step(s)")),
            "{phase}: {stderr}"
        );
    }
}
