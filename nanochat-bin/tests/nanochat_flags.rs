//! nanochat's own command lines run (issue 15, "nanochat's flag names"): the base_train line of
//! nanochat's `runs/runcpu.sh` (92d63d4), with `python -m scripts.base_train` replaced by
//! `nanochat base_train` and tiny counts (`--num-iterations=1`, `--eval-tokens=16384`), trains a
//! `--recipe head` model of the shape those flags give, and its base_eval line (with
//! `--samples`: the CORE sets are not fetched in tests) evaluates it, and its chat_sft line
//! fine-tunes it with HEAD's SFT; nanochat's `-1`
//! sentinels, `--run`, `--device-type` and `--fp8` behave as documented.

mod common;

use std::path::Path;

fn run(root: &Path, args: &[&str]) -> (bool, String, String) {
    let out = common::nanochat_in(root)
        .env("HOME", root.join("home"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn runcpu_base_train_line_runs_as_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (ok, _, err) = run(root, common::TOK_500);
    assert!(ok, "{err}");
    // runs/runcpu.sh's line, counts made tiny (5000 steps -> 1, 524288 eval tokens -> 16384).
    let line = "base_train --depth=6 --head-dim=64 --window-pattern=L --max-seq-len=512 \
        --device-batch-size=32 --total-batch-size=16384 --eval-every=100 --eval-tokens=16384 \
        --core-metric-every=-1 --sample-every=100 --num-iterations=1 --run=dummy \
        --recipe=head --device-type=cpu --quiet";
    let args: Vec<&str> = line.split_whitespace().collect();
    let (ok, out, err) = run(root, &args);
    assert!(ok, "{err}");
    assert!(err.contains("--run dummy is accepted"), "{err}");
    assert!(err.contains("--sample-every is noted and ignored"), "{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["step"], 1);
    let dir = Path::new(summary["checkpoint_dir"].as_str().unwrap());
    assert!(dir.ends_with("base_checkpoints/d6"), "{dir:?}");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta_000001.json")).unwrap()).unwrap();
    let c = &meta["config"];
    // n_embd = ceil(6 * 64 / 64) * 64 = 384, six 64-dim heads, 512-token context, all long.
    assert_eq!(c["architecture"], "head");
    assert_eq!(c["window_pattern"], "L");
    assert_eq!(
        (c["n_layer"].as_u64(), c["n_embd"].as_u64()),
        (Some(6), Some(384))
    );
    assert_eq!(
        (c["n_head"].as_u64(), c["n_kv_head"].as_u64()),
        (Some(6), Some(6))
    );
    assert_eq!(meta["run"]["total_batch_size"], 16384);
    assert!(meta["data_buffer"]
        .as_array()
        .is_some_and(|b| !b.is_empty()));
    // runs/runcpu.sh's base_eval line, on the committed CORE samples (no fetched sets here).
    let line =
        "base_eval --device-batch-size=1 --split-tokens=16384 --max-per-task=16 --samples --quiet";
    let args: Vec<&str> = line.split_whitespace().collect();
    let (ok, out, err) = run(root, &args);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["max_per_task"], 16);
    // 16384 tokens = 32 batches of one 512-token row, per split.
    assert_eq!(r["bpb"]["split_tokens"], 16384);
    for k in ["train_bpb", "val_bpb"] {
        let v = r["bpb"][k].as_f64().unwrap();
        assert!(v > 0.5 && v < 20.0, "{k} {v}");
    }
    assert!(err.contains("train bpb"), "{err}");
    // runs/runcpu.sh's chat_sft line (1500 steps -> 2, 524288 eval tokens -> 16384): HEAD's SFT
    // of that model, its batch and rates inherited, its optimizer warm-started.
    let line = "chat_sft --eval-every=200 --eval-tokens=16384 --num-iterations=2 --run=dummy \
        --quiet";
    let args: Vec<&str> = line.split_whitespace().collect();
    let (ok, out, err) = run(root, &args);
    assert!(ok, "{err}");
    assert!(err.contains("inherited device_batch_size=32"), "{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["step"], 2);
    let dir = Path::new(summary["checkpoint_dir"].as_str().unwrap());
    assert!(dir.ends_with("sft_checkpoints/d6"), "{dir:?}");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta_000002.json")).unwrap()).unwrap();
    let r = &meta["run"];
    assert_eq!(
        (&r["recipe"], &r["warm_start"]),
        (&"head".into(), &true.into())
    );
    assert_eq!(
        (&r["batch_size"], &r["seq_len"], &r["total_batch_size"]),
        (&32.into(), &512.into(), &16384.into())
    );
    let (ok, _, err) = run(root, &["chat-sft", "--recipe=v1", "--num-iterations=1"]);
    assert!(!ok && err.contains("is a `head` model"), "{err}");
    let (ok, _, err) = run(root, &["base-eval", "--samples", "--split-tokens=100"]);
    assert!(!ok && err.contains("--split-tokens"), "{err}");
    // HEAD's horizon flags are refused under v1, by name.
    let (ok, _, err) = run(root, &["base-train", "--target-flops=1e12"]);
    assert!(
        !ok && err.contains("--target-flops") && err.contains("only with --recipe head"),
        "{err}"
    );
}

#[test]
fn nanochat_sentinels_and_gpu_only_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (ok, _, err) = run(root, &["base-train", "--recipe", "head", "--fp8"]);
    assert!(!ok && err.contains("FP8 training is GPU only"), "{err}");
    // -1 is "disabled" for --num-iterations: with no other horizon on the CPU, 200 steps;
    // 0 steps is refused by name before anything loads.
    let (ok, _, err) = run(root, &["base-train", "--num-iterations=0"]);
    assert!(!ok && err.contains("--total-steps 0"), "{err}");
    let (ok, _, err) = run(root, &["base-train", "--eval-every=-2"]);
    assert!(!ok && err.contains("--eval-every -2"), "{err}");
}
