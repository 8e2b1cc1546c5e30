//! Data safety: a training process killed with SIGKILL at random moments (it saves a checkpoint
//! every step, so most kills land in a save) always leaves a latest checkpoint that loads and
//! resumes; a fresh run into a tag of an earlier run moves that run aside whole.

use std::process::{Command, Stdio};
use std::time::Duration;

use nanochat_core::checkpoint::{checkpoint_dir, list_steps, load_model, Phase};
use nanochat_core::Device;

mod common;

fn base_train(
    root: &std::path::Path,
    tok: &std::path::Path,
    resume: Option<u64>,
    steps: u64,
) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nanochat"));
    c.env("NANOCHAT_MODEL_DIR", root)
        .env("NANOCHAT_BASE_DIR", root)
        .env_remove("NANOCHAT_TOKENIZER_PATH")
        .arg("base-train")
        .args(common::TINY)
        .args([
            "--save-every",
            "1",
            "--eval-every",
            "0",
            "--eval-tokens",
            "64",
            "--quiet",
            "--model-tag",
            "crash",
        ]);
    c.args([
        "--total-steps",
        &steps.to_string(),
        "--tokenizer",
        tok.to_str().unwrap(),
    ]);
    if let Some(s) = resume {
        c.args(["--resume-from-step", &s.to_string()]);
    }
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// A 400-token tokenizer at `tok`, trained with models under `root`.
fn train_tokenizer(root: &std::path::Path, tok: &std::path::Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_nanochat"))
        .env("NANOCHAT_BASE_DIR", root)
        .env_remove("NANOCHAT_MODEL_DIR")
        .env_remove("NANOCHAT_TOKENIZER_PATH")
        .args([
            "tok-train",
            "--output",
            tok.to_str().unwrap(),
            "--vocab-size",
            "400",
            "--max-chars",
            "100000",
        ])
        .output()
        .unwrap();
    common::assert_success(&out);
}

/// Running base-train again into a tag that holds a run (nanochat overwrites it in place,
/// mixing steps; this project truncated its `metrics.jsonl`) moves the earlier run whole to
/// `<tag>.earlier-<time>`, says so, and writes the new run into an empty folder.
#[test]
fn a_fresh_run_into_a_used_tag_keeps_the_earlier_run() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("models");
    let tok = tmp.path().join("tok");
    train_tokenizer(&root, &tok);
    let dir = checkpoint_dir(&root, Phase::Base, "crash");
    common::assert_success(&base_train(&root, &tok, None, 3).output().unwrap());
    let first_metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    assert_eq!(first_metrics.lines().count(), 3);
    let out = base_train(&root, &tok, None, 1).output().unwrap();
    common::assert_success(&out);
    let earlier: Vec<_> = std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("crash.earlier-"))
        .collect();
    assert_eq!(earlier.len(), 1, "{earlier:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("moved, whole, to {}", earlier[0].display())),
        "{stderr}"
    );
    assert_eq!(list_steps(&earlier[0]), vec![1, 2, 3]);
    assert_eq!(
        std::fs::read_to_string(earlier[0].join("metrics.jsonl")).unwrap(),
        first_metrics
    );
    assert_eq!(list_steps(&dir), vec![1]);
    assert_eq!(
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        1
    );
    // Continuing a run moves nothing.
    let out = base_train(&root, &tok, Some(1), 2).output().unwrap();
    common::assert_success(&out);
    assert_eq!(list_steps(&dir), vec![1, 2]);
}

#[test]
fn sigkill_during_saves_never_loses_the_latest_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("models");
    let tok = tmp.path().join("tok");
    train_tokenizer(&root, &tok);
    let dev = Device::cpu().unwrap();
    let dir = checkpoint_dir(&root, Phase::Base, "crash");
    // Start-up (JIT compilation of the kernels) takes a machine-dependent while: time it until
    // the first checkpoint commits, then kill at random moments around and after that point.
    let start = std::time::Instant::now();
    let mut child = base_train(&root, &tok, None, 100_000).spawn().unwrap();
    while list_steps(&dir).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no checkpoint within 300 s"
        );
        if let Ok(Some(status)) = child.try_wait() {
            panic!("training exited early ({status})");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let startup = start.elapsed().as_millis() as u64;
    child.kill().unwrap();
    child.wait().unwrap();
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut latest: Option<u64> = list_steps(&dir).last().copied();
    let mut kills = 0;
    while kills < 20 {
        let mut child = base_train(&root, &tok, latest, 100_000).spawn().unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(startup * 3 / 4 + seed % 1500));
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("training exited early ({status}): {err}");
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        let steps = list_steps(&dir);
        if let Some(&step) = steps.last() {
            let (model, tokenizer, meta) = load_model(
                &nanochat_core::paths::Paths::under(&root),
                Phase::Base,
                &dev,
                Some("crash"),
                None,
                false,
            )
            .unwrap_or_else(|e| {
                panic!("after kill {kills}: the latest checkpoint does not load: {e}")
            });
            assert_eq!(meta.step, step);
            assert_eq!(model.config().n_layer, 1);
            assert!(tokenizer.vocab_size() > 0);
            assert!(latest.is_none_or(|l| step >= l), "steps went backwards");
            latest = Some(step);
        }
    }
    let latest = latest.expect("some checkpoint was committed in 20 runs");
    // And the run resumes to completion from there.
    let out = base_train(&root, &tok, Some(latest), latest + 2)
        .output()
        .unwrap();
    common::assert_success(&out);
    assert_eq!(*list_steps(&dir).last().unwrap(), latest + 2);
}
