//! Where the binary reads and writes (issue 12, items 4, 6, 8 and 9): a base dir moves as a
//! whole, a model never runs with another tokenizer, identical runs write identical bytes,
//! scratch runs leave the base dir alone and empty variables count as unset.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

/// `nanochat` in `cwd` with HOME `home` and exactly the NANOCHAT_* variables given (every
/// other one removed).
fn nanochat(home: &Path, cwd: &Path, vars: &[(&str, &Path)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nanochat"));
    c.current_dir(cwd).env("HOME", home);
    for v in [
        "NANOCHAT_BASE_DIR",
        "NANOCHAT_MODEL_DIR",
        "NANOCHAT_TOKENIZER_PATH",
        "NANOCHAT_DATA_DIR",
    ] {
        c.env_remove(v);
    }
    for (k, v) in vars {
        c.env(k, v);
    }
    c.args(args).output().expect("nanochat runs")
}

fn ok(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{what}: {stderr}");
    stderr
}

/// A fresh temporary directory and its (created) `home` folder.
fn temp_home() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    (tmp, home)
}

const TOK: &[&str] = &["tok-train", "--vocab-size", "400", "--max-chars", "60000"];

/// base-train of the tiny model for two steps, tagged d1.
fn base_train() -> Vec<&'static str> {
    let run = [
        "--total-steps",
        "2",
        "--eval-every",
        "0",
        "--eval-tokens",
        "64",
    ];
    common::args(&[
        &["base-train"],
        common::TINY,
        &run,
        &["--quiet", "--model-tag", "d1"],
    ])
}

/// Trains a tokenizer and a two-step base model under base dir `base`.
fn train(home: &Path, base: &Path) {
    let vars = [("NANOCHAT_BASE_DIR", base)];
    ok(&nanochat(home, home, &vars, TOK), "tok-train");
    ok(&nanochat(home, home, &vars, &base_train()), "base-train");
}

/// 12.8 (and 12.4's absolute paths): two identical runs in two base dirs write byte-identical
/// model, optimizer and meta files.
#[test]
fn identical_runs_in_two_base_dirs_write_identical_bytes() {
    let (tmp, home) = temp_home();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("elsewhere/b"));
    train(&home, &a);
    train(&home, &b);
    let dir = |root: &Path| root.join("base_checkpoints/d1");
    for f in [
        "model_000002.safetensors",
        "optim_000002.bin",
        "meta_000002.json",
    ] {
        let (x, y) = (
            std::fs::read(dir(&a).join(f)).unwrap(),
            std::fs::read(dir(&b).join(f)).unwrap(),
        );
        assert!(x == y, "{f} differs between the two runs");
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir(&a).join("meta_000002.json")).unwrap()).unwrap();
    // The default tokenizer (<base dir>/tokenizer) needs no record: loading looks there.
    assert_eq!(meta["tokenizer_path"], serde_json::Value::Null);
    assert_eq!(meta["tokenizer_sha256"].as_str().unwrap().len(), 64);
    assert!(!home.join(".cache").exists(), "HOME was written");
}

/// 12.4: a base dir moved as a whole still serves; a different tokenizer in its place is
/// refused (naming both files and fingerprints) unless `--force-tokenizer`.
#[test]
fn a_moved_base_dir_serves_and_a_swapped_tokenizer_is_refused() {
    let (tmp, home) = temp_home();
    let a = tmp.path().join("a");
    train(&home, &a);
    let b = tmp.path().join("b");
    std::fs::rename(&a, &b).unwrap();
    let chat = ["chat-cli", "-i", "base", "-p", "hi", "-m", "4"];
    let vars = [("NANOCHAT_BASE_DIR", b.as_path())];

    // A different 300-token tokenizer at the old path: the moved dir's own one is used.
    let other = tmp.path().join("other");
    let text = tmp.path().join("other.txt");
    std::fs::write(
        &text,
        "a different text about 42 cats and dogs.\n\n".repeat(400),
    )
    .unwrap();
    ok(
        &nanochat(
            &home,
            &home,
            &[],
            &[
                "tok-train",
                "--input",
                text.to_str().unwrap(),
                "--vocab-size",
                "300",
                "--output",
                other.to_str().unwrap(),
            ],
        ),
        "tok-train of the other tokenizer",
    );
    let have = nanochat_core::tokenizer::Tokenizer::from_pretrained(&other)
        .unwrap()
        .fingerprint()
        .unwrap();
    copy_dir(&other, &a.join("tokenizer"));
    ok(
        &nanochat(&home, &home, &vars, &chat),
        "chat-cli after the move",
    );

    // The same tokenizer in the moved dir's place is refused.
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(b.join("base_checkpoints/d1/meta_000002.json")).unwrap(),
    )
    .unwrap();
    let want = meta["tokenizer_sha256"].as_str().unwrap().to_string();
    std::fs::remove_dir_all(b.join("tokenizer")).unwrap();
    std::fs::rename(&other, b.join("tokenizer")).unwrap();
    let out = nanochat(&home, &home, &vars, &chat);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a swapped tokenizer was accepted");
    assert!(
        stderr.contains(&want)
            && stderr.contains(&have)
            && stderr.contains("meta_000002.json")
            && stderr.contains(&b.join("tokenizer").display().to_string())
            && stderr.contains("--force-tokenizer"),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("Assistant"),
        "it answered before refusing"
    );
    let mut forced = chat.to_vec();
    forced.push("--force-tokenizer");
    let stderr = ok(&nanochat(&home, &home, &vars, &forced), "--force-tokenizer");
    assert!(stderr.contains("warning"), "{stderr}");
}

/// 12.9: empty variables are unset: nothing lands in the current directory, everything in
/// the default base dir under HOME, and the next command finds it there.
#[test]
fn empty_variables_mean_the_default_base_dir() {
    let (tmp, home) = temp_home();
    let cwd = tmp.path().join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let empty = Path::new("");
    let vars = [
        ("NANOCHAT_BASE_DIR", empty),
        ("NANOCHAT_MODEL_DIR", empty),
        ("NANOCHAT_TOKENIZER_PATH", empty),
        ("NANOCHAT_DATA_DIR", empty),
    ];
    ok(&nanochat(&home, &cwd, &vars, TOK), "tok-train");
    ok(&nanochat(&home, &cwd, &vars, &base_train()), "base-train");
    let left: Vec<_> = std::fs::read_dir(&cwd).unwrap().collect();
    assert!(
        left.is_empty(),
        "written into the current directory: {left:?}"
    );
    let base = home.join(".cache/nanochat");
    assert!(base.join("tokenizer/tokenizer.json").is_file());
    assert!(base.join("base_checkpoints/d1/meta_000002.json").is_file());
    assert!(base.join("report").is_dir());
    let chat = ["chat-cli", "-i", "base", "-p", "hi", "-m", "4"];
    ok(&nanochat(&home, &cwd, &vars, &chat), "chat-cli");
}

/// 12.6: a stage writing to an explicit path outside the base dir does not touch the base
/// dir's report card (here the default one under HOME, which must not even be created).
#[test]
fn scratch_outputs_leave_the_base_dir_alone() {
    let (tmp, home) = temp_home();
    let out = tmp.path().join("some/other/dir");
    let mut args = TOK.to_vec();
    args.extend(["--output", out.to_str().unwrap()]);
    ok(
        &nanochat(&home, tmp.path(), &[], &args),
        "tok-train --output",
    );
    assert!(out.join("tokenizer.json").is_file());
    ok(
        &nanochat(
            &home,
            tmp.path(),
            &[],
            &["tok-eval", "--tokenizer", out.to_str().unwrap(), "--json"],
        ),
        "tok-eval --tokenizer",
    );
    let entries: Vec<_> = std::fs::read_dir(&home).unwrap().collect();
    assert!(entries.is_empty(), "HOME was written: {entries:?}");
    // With a base dir of its own, the same: its report card is not written, while a run into
    // the base dir itself is recorded.
    let base = tmp.path().join("base");
    let vars = [("NANOCHAT_BASE_DIR", base.as_path())];
    ok(
        &nanochat(&home, tmp.path(), &vars, &args),
        "tok-train --output",
    );
    assert!(
        !base.join("report").exists(),
        "the base dir's report was written"
    );
    ok(&nanochat(&home, tmp.path(), &vars, TOK), "tok-train");
    assert!(base.join("report/tokenizer.json").is_file());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}
