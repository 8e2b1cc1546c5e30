//! nanochat's own base dirs, used unchanged (`NANOCHAT_BASE_DIR` pointing at them): the
//! fixtures `tests/fixtures/reference/head/native_{head,v1}` were made by nanochat's code
//! (92d63d4 and 16788ee) and hold `.pt` checkpoints, Python-JSON metas and `tokenizer.pkl`.

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;

/// A writable copy of a native base dir (`cp -r`).
pub fn native_copy(gen: &str, into: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/reference/head")
        .join(gen);
    let dst = into.join(gen);
    let ok = std::process::Command::new("cp")
        .arg("-r")
        .arg(&src)
        .arg(&dst)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let ok = std::process::Command::new("chmod")
        .args(["-R", "u+w"])
        .arg(&dst)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    dst
}

fn expected(base: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(base.join("expected.json")).unwrap()).unwrap()
}

/// `chat-cli -i base -t 0` answers as nanochat's Engine does, token for token, on both
/// generations.
#[test]
fn chat_cli_greedy_reproduces_nanochat_on_its_own_files() {
    let tmp = tempfile::tempdir().unwrap();
    for gen in ["native_head", "native_v1"] {
        let base = native_copy(gen, tmp.path());
        let c = &expected(&base)["greedy_chat"];
        let n = c["max_tokens"].as_u64().unwrap().to_string();
        let out = common::nanochat_in(&base)
            .args(["chat-cli", "-i", "base", "-t", "0", "-m", &n, "--json"])
            .args(["-p", "What is free software?"])
            .output()
            .unwrap();
        common::assert_success(&out);
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        let want = &c["generated_ids"];
        let n = want.as_array().unwrap().len();
        assert_eq!(
            &Value::Array(got["tokens"].as_array().unwrap()[..n].to_vec()),
            want,
            "{gen}"
        );
        assert!(
            got["reply"]
                .as_str()
                .unwrap()
                .starts_with(c["text"].as_str().unwrap()),
            "{gen}: {got}"
        );
    }
}
