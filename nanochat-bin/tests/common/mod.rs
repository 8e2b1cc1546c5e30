//! Shared by the integration tests that run whole pipelines. Each test crate uses a part.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// The smallest model the tests train: one layer, 32-token rows, two rows a step.
pub const TINY: &[&str] = &["--depth", "1", "--seq-len", "32", "--batch-size", "2"];

/// tok-train of a 500-token vocabulary on the first 200,000 characters of the bundled corpus.
pub const TOK_500: &[&str] = &["tok-train", "--vocab-size", "500", "--max-chars", "200000"];

/// One base-train step of one-row batches without evaluation (the run adds its own shape).
pub const ONE_STEP: &[&str] = &[
    "--batch-size",
    "1",
    "--total-steps",
    "1",
    "--eval-every",
    "0",
];

/// `args` joined: e.g. `["base-train"]`, [`TINY`] and the run's own flags.
pub fn args<'a>(parts: &[&[&'a str]]) -> Vec<&'a str> {
    parts.concat()
}

/// Panics with the command's stderr unless it succeeded.
pub fn assert_success(out: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
}

/// `nanochat` with every model, tokenizer and data path under `root` (nothing fetched).
pub fn nanochat_in(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nanochat"));
    c.env("NANOCHAT_BASE_DIR", root)
        .env_remove("NANOCHAT_MODEL_DIR")
        .env_remove("NANOCHAT_TOKENIZER_PATH")
        .env("NANOCHAT_DATA_DIR", root.join("no-data"));
    c
}
