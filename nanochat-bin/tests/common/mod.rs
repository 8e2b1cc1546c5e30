//! Shared by the integration tests that run whole pipelines.

use std::path::Path;
use std::process::Command;

/// `nanochat` with every model, tokenizer and data path under `root` (nothing fetched).
pub fn nanochat_in(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nanochat"));
    c.env("NANOCHAT_BASE_DIR", root)
        .env_remove("NANOCHAT_MODEL_DIR")
        .env_remove("NANOCHAT_TOKENIZER_PATH")
        .env("NANOCHAT_DATA_DIR", root.join("no-data"));
    c
}
