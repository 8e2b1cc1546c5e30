//! The `nanochat` binary end to end: exit codes, JSON on stdout, clear errors.

use std::process::Command;

/// Runs `nanochat` with a fresh, empty HOME and base dir of its own (no test touches the
/// user's `~/.cache/nanochat`); every path the tests care about is given explicitly.
fn nanochat(args: &[&str]) -> (i32, String, String) {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nanochat"))
        .args(args)
        .env("HOME", home.path())
        .env("NANOCHAT_BASE_DIR", home.path().join("base"))
        .env_remove("NANOCHAT_MODEL_DIR")
        .env_remove("NANOCHAT_TOKENIZER_PATH")
        .env_remove("NANOCHAT_DATA_DIR")
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn fixture(name: &str) -> String {
    format!(
        "{}/../tests/fixtures/reference/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn verify_reference_passes_on_every_fixture() {
    for name in [
        "gqa_tiny.safetensors",
        "mha_small.safetensors",
        "head/head_tiny.safetensors",
        "head/head_small.safetensors",
    ] {
        let (code, stdout, stderr) = nanochat(&["verify-reference", &fixture(name)]);
        assert_eq!(code, 0, "{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
        assert!(v["max_rel_err"].as_f64().unwrap() < 1e-4);
        if name.starts_with("head/") {
            assert_eq!(v["config"]["architecture"], "head", "{name}");
            assert!(
                v["grads_rel_err"]["value_embeds.1.weight"]
                    .as_f64()
                    .is_some()
                    || v["grads_rel_err"]["value_embeds.0.weight"]
                        .as_f64()
                        .is_some()
            );
            assert!(v["grads_rel_err"]["smear_lambda"].as_f64().unwrap() < 1e-4);
        } else {
            assert!(v["muon_rel_err"].as_f64().unwrap() < 1e-4);
        }
        assert!(v["logits_rel_err"].as_f64().is_some() && v["loss_rel_err"].as_f64().is_some());
        assert!(v["grads_rel_err"]["transformer.h.0.attn.c_q.weight"]
            .as_f64()
            .is_some());
        assert_eq!(v["passed"], true);
    }
    // nanochat's snake_case name works too.
    assert_eq!(
        nanochat(&["verify_reference", &fixture("gqa_tiny.safetensors")]).0,
        0
    );
}

#[test]
fn bad_input_is_a_clear_error_not_a_crash() {
    let (code, _, stderr) = nanochat(&["verify-reference", "/nonexistent/x.safetensors"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("/nonexistent/x.safetensors"), "{stderr}");
    let (code, _, stderr) = nanochat(&["verify-reference", &fixture("README.md")]);
    assert_eq!(code, 1);
    assert!(stderr.contains("not a safetensors file"), "{stderr}");
    // A device name is checked as the flags are parsed (clap's usage error, exit 2).
    let (code, _, stderr) = nanochat(&["selftest", "--device", "quantum"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown device `quantum`"), "{stderr}");
}

#[test]
fn selftest_runs_kernels_and_fixtures() {
    let (code, stdout, stderr) = nanochat(&["selftest", "--json", "--filter", "rmsnorm"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(v["passed"].as_u64().unwrap() > 0);
    assert_eq!(v["failed"], 0);
    let (code, stdout, stderr) = nanochat(&["selftest", "--json", "--filter", "reference"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let fixtures = v["reference_fixtures"].as_array().unwrap();
    assert_eq!(fixtures.len(), 4);
    assert_eq!(fixtures[2]["config"]["architecture"], "head");
}

#[test]
fn a_trained_tokenizer_encodes_identically_in_a_fresh_process() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tok");
    let out_s = out.to_str().unwrap();
    let (code, stdout, stderr) = nanochat(&[
        "tok-train",
        "--output",
        out_s,
        "--vocab-size",
        "700",
        "--max-chars",
        "300000",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["vocab_size"], 700);
    assert!(summary["val_bytes_per_token"].as_f64().unwrap() > 1.0);
    let trained_ids: Vec<u32> = serde_json::from_value(summary["probe"]["ids"].clone()).unwrap();
    let text = summary["probe"]["text"].as_str().unwrap();
    // This process loads what the training process wrote.
    let tok = nanochat_core::tokenizer::Tokenizer::from_pretrained(&out).unwrap();
    assert_eq!(tok.encode(text), trained_ids);
    assert_eq!(tok.decode(&trained_ids).unwrap(), text);
    // tok-eval reads it too, in a third process.
    let (code, stdout, stderr) = nanochat(&["tok-eval", "--tokenizer", out_s, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let names: Vec<&str> = v["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["prose", "code", "numbers", "non-english", "corpus-val"]
    );
    assert!(v["texts"][0]["gpt2_tokens"].as_u64().unwrap() > 0);
    // The table form.
    let (code, stdout, _) = nanochat(&["tok-eval", "--tokenizer", out_s]);
    assert_eq!(code, 0);
    assert!(stdout.contains("corpus-val"));
}

#[test]
fn tokenizer_commands_report_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = nanochat(&["tok-eval", "--tokenizer", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("nanochat tok-train"), "{stderr}");
    let (code, _, stderr) = nanochat(&[
        "tok-train",
        "--output",
        dir.path().to_str().unwrap(),
        "--vocab-size",
        "100",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("too small"), "{stderr}");
    let bad = dir.path().join("x.jsonl");
    std::fs::write(&bad, "{\"no_text\": 1}\n").unwrap();
    let (code, _, stderr) = nanochat(&[
        "tok-train",
        "--input",
        bad.to_str().unwrap(),
        "--output",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("x.jsonl") && stderr.contains("line 1"),
        "{stderr}"
    );
    let (code, _, stderr) = nanochat(&[
        "tok-train",
        "--train-ratio",
        "0.9",
        "--val-ratio",
        "0.5",
        "--output",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("ratio"), "{stderr}");
}

/// Evaluation flags that make no sense are refused at parse time, naming the flag.
#[test]
fn eval_commands_refuse_meaningless_flags() {
    for args in [
        &["chat-eval", "-b", "0"][..],
        &["chat-eval", "-n", "0"],
        &["chat-eval", "--max-problems", "0"],
        &["base-eval", "--max-per-task", "0"],
    ] {
        let (code, _, stderr) = nanochat(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(args[1]), "{args:?}: {stderr}");
    }
    let (code, _, stderr) = nanochat(&["base-eval", "--hf-path", "/tmp", "-g", "d4"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--hf-path") && stderr.contains("cannot be used with"),
        "{stderr}"
    );
}

/// A model tag is a folder name, never a path: every tag flag of every command refuses an
/// empty one, `.`, `..` and any `/` at parse time (`--model-tag ../tokenizer` wrote outside the
/// model root, and a fresh run moved that folder aside), naming the flag.
#[test]
fn model_tags_that_are_paths_are_refused_by_every_command() {
    for bad in ["", ".", "..", "../tokenizer", "/tmp/victim"] {
        for args in [
            &["base-train", "--model-tag", bad][..],
            &["mid-train", "--model-tag", bad],
            &["chat-sft", "--base-model", bad],
            &["chat-rl", "-g", bad],
            &["chat-eval", "-g", bad],
            &["base-eval", "-g", bad],
            &["chat-cli", "-g", bad, "-p", "hi"],
        ] {
            let (code, _, stderr) = nanochat(args);
            assert_eq!(code, 2, "{args:?}: {stderr}");
            let flag = if args[1] == "-g" {
                "--model-tag"
            } else {
                args[1]
            };
            assert!(
                stderr.contains(flag) && stderr.contains("a folder name"),
                "{args:?}: {stderr}"
            );
        }
    }
}

/// The sampling flags of chat-cli, chat-web, chat-eval and chat-rl obey a chat request's ranges,
/// checked on the number as written when the flags are parsed, before any model is loaded: the
/// error names the setting and its range, and chat-cli prints no `Assistant:`.
#[test]
fn sampling_flags_are_range_checked_before_any_model_loads() {
    let home = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (
            &["chat-cli", "-p", "hi", "-k", "0"][..],
            "top_k: 0 is not an integer in 1-200",
        ),
        (
            &["chat-cli", "-p", "hi", "-t", "2.00000001"],
            "temperature: 2.00000001 is not a number in 0-2",
        ),
        (
            &["chat-cli", "-p", "hi", "--max-tokens=-1"],
            "max_tokens: -1 is not an integer in 1-4096",
        ),
        (
            &["chat-web", "-k", "201"],
            "top_k: 201 is not an integer in 1-200",
        ),
        (&["chat-web", "-m", "4097"], "max_tokens: 4097"),
        (
            &["chat-web", "-t", "inf"],
            "temperature: inf is not a number in 0-2",
        ),
        (&["chat-eval", "--temperature=-0.5"], "temperature: -0.5"),
        (
            &["chat-eval", "-n", "9"],
            "num_samples: 9 is not an integer in 1-8",
        ),
        (
            &["chat-eval", "-m", "0"],
            "max_new_tokens: 0 is not an integer in 1-4096",
        ),
        (
            &["chat-rl", "-n", "1"],
            "num_samples: 1 is not an integer in 2-8",
        ),
        (
            &["chat-rl", "-k", "2.5"],
            "top_k: 2.5 is not an integer in 1-200",
        ),
        // The flags scripts/gpu-check.sh relies on are checked at parse time too.
        (&["chat-cli", "--json"], "--prompt <PROMPT>"),
        (
            &["bench", "kernels", "--train-gemms", "12,0x"],
            "`0x` is not a depth from 1 to 64",
        ),
        (
            &["chat-web", "--device", "tpu"],
            "unknown device `tpu`: expected cpu, cuda or cuda:N",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_nanochat"))
            .env("HOME", home.path())
            .env("NANOCHAT_BASE_DIR", home.path())
            .env_remove("NANOCHAT_MODEL_DIR")
            .args(args)
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stdout.contains("Assistant:"), "{args:?}: {stdout}");
    }
}

/// `bench train --recipe head` times HEAD's model and optimizer (a depth-1 model is one 128-dim
/// head wide, with value embeddings); the JSON names the recipe and splits the step.
#[test]
fn bench_train_times_either_recipe() {
    for (recipe, n_embd) in [("v1", 64), ("head", 128)] {
        let out = Command::new(env!("CARGO_BIN_EXE_nanochat"))
            .args([
                "bench",
                "train",
                "--recipe",
                recipe,
                "--depth",
                "1",
                "--seq-len",
                "64",
            ])
            .args(["--vocab", "512", "--steps", "1", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (&r["recipe"], &r["n_embd"]),
            (&recipe.into(), &n_embd.into())
        );
        assert!(r["final_loss"].as_f64().unwrap().is_finite());
        let parts: f64 = ["forward_seconds", "backward_seconds", "optimizer_seconds"]
            .iter()
            .map(|k| r[k].as_f64().unwrap())
            .sum();
        assert!(parts > 0.0 && parts <= r["step_seconds"].as_f64().unwrap() * 1.001);
    }
}
