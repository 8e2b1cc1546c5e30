//! Helpers of the integration tests.

use std::path::PathBuf;

/// Path of a reference fixture made by nanochat's PyTorch model (see fixtures/reference/README.md).
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/reference")
        .join(name)
}
