//! No input is dropped without the user being told: tok-train and base-train count what they
//! read and use, and warn naming the flag when a cap or ratio leaves more than 1% unused.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod common;

/// `nanochat` with HOME and every nanochat path under `root`, so nothing reaches ~/.cache.
fn nanochat(root: &Path, args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nanochat"))
        .env("HOME", root.join("home"))
        .env("NANOCHAT_BASE_DIR", root.join("base"))
        .env("NANOCHAT_DATA_DIR", root.join("no-data"))
        .env_remove("NANOCHAT_MODEL_DIR")
        .env_remove("NANOCHAT_TOKENIZER_PATH")
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Writes the book ([`write_book`]) as `book.txt` in `root` and returns its path.
fn book_in(root: &Path) -> PathBuf {
    let book = root.join("book.txt");
    write_book(&book);
    book
}

/// A 300 KB book: 300 paragraphs of 999 characters (ten 99-character lines of varied words),
/// one blank line between them. Its documents: 60 of five paragraphs, 5003 characters each.
fn write_book(path: &Path) {
    const WORDS: [&str; 12] = [
        "whale", "sea", "ship", "captain", "harpoon", "storm", "deck", "sail", "crew", "wind",
        "ocean", "night",
    ];
    let paragraphs: Vec<String> = (0..300usize)
        .map(|p| {
            (0..10usize)
                .map(|l| {
                    let words: Vec<&str> = (0..30)
                        .map(|w| WORDS[(p * 7 + l * 5 + w * w) % 12])
                        .collect();
                    format!("{:<99.99}", words.join(" "))
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    std::fs::write(path, paragraphs.join("\n\n") + "\n").unwrap();
}

const READ_CHARS: u64 = 300_180;
const DOC_CHARS: u64 = 5003;

#[test]
fn tok_train_uses_a_whole_book_and_warns_about_caps() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let book = book_in(root);
    let book_s = book.to_str().unwrap();
    let out = root.join("tok");
    let out_s = out.to_str().unwrap();
    let tok_train = |extra: &[&str]| {
        let args = [
            &[
                "tok-train",
                "--input",
                book_s,
                "--output",
                out_s,
                "--vocab-size",
                "300",
            ][..],
            extra,
        ]
        .concat();
        let (code, summary, stderr) = nanochat(root, &args);
        assert_eq!(code, 0, "{stderr}");
        (summary, stderr)
    };
    // Default flags: every character is trained on or held out, and nothing is warned about.
    let (s, stderr) = tok_train(&[]);
    assert!(
        stderr.contains(&format!(
            "read {book_s}: 60 documents, {READ_CHARS} characters"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_eq!(s["read_documents"], 60);
    assert_eq!(s["read_chars"], READ_CHARS);
    assert_eq!(
        (s["train_documents"].as_u64(), s["val_documents"].as_u64()),
        (Some(57), Some(3))
    );
    assert_eq!(s["train_chars"], 57 * DOC_CHARS);
    assert_eq!(s["val_chars"], 3 * DOC_CHARS);
    assert_eq!(
        s["unused_chars"],
        serde_json::json!({"ratios": 0, "doc_cap": 0, "max_chars": 0})
    );
    // --doc-cap keeps 1000 characters of each document: the rest is counted and warned about.
    let (s, stderr) = tok_train(&["--doc-cap", "1000"]);
    assert_eq!(s["train_chars"], 57 * 1000);
    assert_eq!(s["unused_chars"]["doc_cap"], 57 * (DOC_CHARS - 1000));
    assert!(
        stderr.contains(&format!(
            "warning: --doc-cap 1000 leaves {} of the {READ_CHARS} characters read unused",
            57 * (DOC_CHARS - 1000)
        )) && stderr.contains("raise --doc-cap"),
        "{stderr}"
    );
    assert!(!stderr.contains("--max-chars"), "{stderr}");
    // --max-chars stops after 100,000 characters.
    let (s, stderr) = tok_train(&["--max-chars", "100000"]);
    assert_eq!(s["train_chars"], 100_000);
    assert!(
        stderr.contains(&format!(
            "warning: --max-chars 100000 leaves {} of the {READ_CHARS} characters read unused",
            57 * DOC_CHARS - 100_000
        )) && stderr.contains("raise --max-chars"),
        "{stderr}"
    );
    assert!(!stderr.contains("--doc-cap"), "{stderr}");
    // Ratios that leave documents in neither split.
    let (s, stderr) = tok_train(&["--train-ratio", "0.5"]);
    assert_eq!(s["unused_chars"]["ratios"], 27 * DOC_CHARS);
    assert!(
        stderr.contains("warning: --train-ratio 0.5 and --val-ratio 0.05 leaves"),
        "{stderr}"
    );
}

#[test]
fn base_train_reports_each_input_and_warns_about_unused_text() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let book = book_in(root);
    let val = root.join("val.txt");
    std::fs::write(&val, "Call me Ishmael.\n\nThe whale.\n").unwrap();
    let tok = root.join("tok");
    let (code, _, stderr) = nanochat(
        root,
        &[
            "tok-train",
            "--input",
            book.to_str().unwrap(),
            "--output",
            tok.to_str().unwrap(),
            "--vocab-size",
            "300",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let (tok_s, book_s, val_s) = (
        tok.to_str().unwrap(),
        book.to_str().unwrap(),
        val.to_str().unwrap(),
    );
    let files = ["base-train", "--tokenizer", tok_s, "--input", book_s, val_s];
    let run = [
        "--total-steps",
        "2",
        "--eval-tokens",
        "64",
        "--eval-every",
        "0",
        "--model-tag",
        "acct",
        "--quiet",
    ];
    let (code, s, stderr) = nanochat(root, &common::args(&[&files, common::TINY, &run]));
    assert_eq!(code, 0, "{stderr}");
    // Two steps of 64 tokens read 129 tokens of the book's stream.
    let tokenizer = nanochat_core::tokenizer::Tokenizer::from_pretrained(&tok).unwrap();
    let docs = nanochat_core::data::read_documents(&book).unwrap();
    let book_tokens = nanochat_core::data::tokenize_documents(&tokenizer, &docs).len();
    let share = 129.0 / book_tokens as f64;
    let book_s = book.display().to_string();
    assert!(
        stderr.contains(&format!(
            "base-train training input {book_s}: 60 documents, {READ_CHARS} characters, {:.1}% used",
            100.0 * share
        )),
        "{stderr}"
    );
    // The validation file: one document of 28 characters, read whole (it is under 65 tokens).
    assert!(
        stderr.contains(&format!(
            "base-train validation input {}: 1 documents, 28 characters, 100.0% used",
            val.display()
        )),
        "{stderr}"
    );
    let unused = READ_CHARS - (share * READ_CHARS as f64).round() as u64;
    assert!(
        stderr.contains(&format!(
            "warning: --total-steps 2 of 64 tokens leaves {unused} of the {READ_CHARS} training characters unused"
        )) && stderr.contains("raise --total-steps"),
        "{stderr}"
    );
    assert!(!stderr.contains("--eval-tokens"), "{stderr}");
    let inputs = s["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 2);
    assert_eq!(inputs[0]["input"], book_s);
    assert_eq!(inputs[0]["role"], "training");
    assert_eq!(inputs[0]["documents"], 60);
    assert_eq!(inputs[0]["chars"], READ_CHARS);
    assert_eq!(inputs[0]["used_chars"], READ_CHARS - unused);
    assert_eq!(inputs[1]["role"], "validation");
    assert_eq!(inputs[1]["share_used"], 1.0);
}
