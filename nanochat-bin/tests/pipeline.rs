//! The training commands chained on a tiny model: tok-train, base-train, mid-train, chat-sft,
//! each writing checkpoints the next one loads.

mod common;

use nanochat_core::checkpoint::{load_model, Phase};
use nanochat_core::Device;

fn run(root: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = common::nanochat_in(root).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

#[test]
fn base_mid_and_sft_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    run(root, common::TOK_500);
    let common = [
        "--depth",
        "1",
        "--seq-len",
        "64",
        "--batch-size",
        "2",
        "--quiet",
    ];
    let base = run(
        root,
        &[
            &[
                "base-train",
                "--total-steps",
                "4",
                "--eval-every",
                "2",
                "--eval-tokens",
                "256",
            ][..],
            &common,
        ]
        .concat(),
    );
    assert_eq!(base["step"], 4);
    assert!(base["val_bpb"].as_f64().unwrap() > 0.0);
    let fine = [
        "--batch-size",
        "2",
        "--seq-len",
        "64",
        "--total-steps",
        "3",
        "--eval-every",
        "0",
        "--quiet",
    ];
    let mid = run(root, &[&["mid-train"][..], &fine].concat());
    assert_eq!(
        (mid["phase"].as_str(), mid["step"].as_u64()),
        (Some("mid"), Some(3))
    );
    let sft = run(
        root,
        &[&["chat-sft", "--tasks", "identity,arithmetic"][..], &fine].concat(),
    );
    assert_eq!(
        (sft["phase"].as_str(), sft["step"].as_u64()),
        (Some("sft"), Some(3))
    );
    // Each phase's checkpoint loads, with the tokenizer it was trained with.
    let dev = Device::cpu().unwrap();
    for phase in [Phase::Base, Phase::Mid, Phase::Sft] {
        let (model, tok, meta) = load_model(
            &nanochat_core::paths::Paths::under(root),
            phase,
            &dev,
            Some("d1"),
            None,
            false,
        )
        .unwrap();
        assert_eq!(model.config().n_layer, 1);
        assert_eq!(tok.vocab_size(), 500);
        assert_eq!(meta.phase, phase);
    }
    // The metrics log of the base run has one line per step.
    let metrics = std::fs::read_to_string(root.join("base_checkpoints/d1/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 4);
    chat_cli_answers_and_chats(root);
}

fn chat_cli(root: &std::path::Path, args: &[&str], stdin: &str) -> (String, String) {
    use std::io::Write;
    let mut child = common::nanochat_in(root)
        .args([&["chat-cli"][..], args].concat())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "chat-cli {args:?}: {stderr}");
    (stdout, stderr)
}

/// `chat-cli -p` answers one prompt and exits; the interactive loop takes turns, `clear` and
/// `quit`; the same seed answers the same; a missing tag is a clear error.
fn chat_cli_answers_and_chats(root: &std::path::Path) {
    let one = ["-p", "What is 2 + 3?", "-m", "8", "--seed", "3"];
    let (a, _) = chat_cli(root, &one, "");
    assert!(a.starts_with("Assistant: "), "{a}");
    assert!(
        a.ends_with('\n') && !a.contains("User: "),
        "one answer, no prompt for more: {a}"
    );
    let (b, _) = chat_cli(
        root,
        &[&one[..], &["-i", "sft", "-g", "d1", "-s", "3"]].concat(),
        "",
    );
    assert_eq!(a, b, "the same model, prompt and seed answer the same");
    // --json: the reply, its token ids (what gpu-check compares across devices) and why it
    // stopped; greedy, so twice the same.
    let greedy = ["-p", "What is 2 + 3?", "-m", "8", "-t", "0", "--json"];
    let (j, _) = chat_cli(root, &greedy, "");
    let v: serde_json::Value = serde_json::from_str(j.trim()).unwrap();
    let ids = v["tokens"].as_array().unwrap();
    assert!(!ids.is_empty() && ids.len() <= 8, "{v}");
    assert!(
        ["stop", "length"].contains(&v["finish_reason"].as_str().unwrap()),
        "{v}"
    );
    assert!(v["reply"].is_string(), "{v}");
    assert_eq!(chat_cli(root, &greedy, "").0, j);
    let (chat, stderr) = chat_cli(
        root,
        &["-m", "6", "-t", "0"],
        "Hello\n\nWho are you?\nclear\nHi again\nquit\nnever read\n",
    );
    assert_eq!(chat.matches("Assistant: ").count(), 3, "{chat}");
    assert!(chat.contains("(conversation cleared)"), "{chat}");
    assert!(stderr.contains("sft model, step 3"), "{stderr}");
    let out = common::nanochat_in(root)
        .args(["chat-cli", "-g", "nope", "-p", "hi"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("nope") && err.contains("d1"),
        "{err}"
    );
}

#[test]
fn training_refuses_bad_requests_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let fail = |args: &[&str]| -> String {
        let out = common::nanochat_in(root).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(fail(&["base-train", "--total-steps", "1"]).contains("nanochat tok-train"));
    assert!(fail(&["mid-train"]).contains("no base checkpoints"));
    run(
        root,
        &["tok-train", "--vocab-size", "300", "--max-chars", "50000"],
    );
    let odd_batch = common::args(&[
        &["base-train"],
        common::TINY,
        &["--total-batch-size", "100"],
    ]);
    assert!(fail(&odd_batch).contains("multiple"));
    assert!(fail(&["base-train", "--depth", "1", "--dtype", "float16"]).contains("float16"));
}
