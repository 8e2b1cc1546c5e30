//! Where evaluation sets come from: the full files `scripts/fetch_data.sh` writes under
//! `$NANOCHAT_DATA_DIR/eval/` (and `core/`), or the small samples committed in
//! `data/samples/eval/` (and `core/`), compiled into the binary so the tests and the default
//! speedrun need no download. Which one is always explicit ([`EvalData`]): a run that asked for
//! the fetched data and finds none is an error naming the fetch command, never a silent
//! fallback to a 40-item sample.

use std::path::{Path, PathBuf};

use crate::{CoreError, Result};

/// Which copy of an evaluation set to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EvalData {
    /// The full sets fetched by `scripts/fetch_data.sh` (`$NANOCHAT_DATA_DIR`).
    #[default]
    Fetched,
    /// The committed samples (a few dozen items per set).
    Samples,
}

/// `(folder, file, contents)` of every committed sample.
const SAMPLES: &[(&str, &str, &str)] = &[
    (
        "eval",
        "arc_easy.jsonl",
        include_str!("../../../data/samples/eval/arc_easy.jsonl"),
    ),
    (
        "eval",
        "arc_challenge.jsonl",
        include_str!("../../../data/samples/eval/arc_challenge.jsonl"),
    ),
    (
        "eval",
        "mmlu.jsonl",
        include_str!("../../../data/samples/eval/mmlu.jsonl"),
    ),
    (
        "eval",
        "gsm8k.jsonl",
        include_str!("../../../data/samples/eval/gsm8k.jsonl"),
    ),
    (
        "eval",
        "humaneval.jsonl",
        include_str!("../../../data/samples/eval/humaneval.jsonl"),
    ),
    (
        "core",
        "tasks.json",
        include_str!("../../../data/samples/core/tasks.json"),
    ),
    (
        "core",
        "arc_challenge.jsonl",
        include_str!("../../../data/samples/core/arc_challenge.jsonl"),
    ),
    (
        "core",
        "arc_easy.jsonl",
        include_str!("../../../data/samples/core/arc_easy.jsonl"),
    ),
    (
        "core",
        "bigbench_cs_algorithms.jsonl",
        include_str!("../../../data/samples/core/bigbench_cs_algorithms.jsonl"),
    ),
    (
        "core",
        "bigbench_dyck_languages.jsonl",
        include_str!("../../../data/samples/core/bigbench_dyck_languages.jsonl"),
    ),
    (
        "core",
        "bigbench_language_identification.jsonl",
        include_str!("../../../data/samples/core/bigbench_language_identification.jsonl"),
    ),
    (
        "core",
        "bigbench_operators.jsonl",
        include_str!("../../../data/samples/core/bigbench_operators.jsonl"),
    ),
    (
        "core",
        "bigbench_qa_wikidata.jsonl",
        include_str!("../../../data/samples/core/bigbench_qa_wikidata.jsonl"),
    ),
    (
        "core",
        "bigbench_repeat_copy_logic.jsonl",
        include_str!("../../../data/samples/core/bigbench_repeat_copy_logic.jsonl"),
    ),
    (
        "core",
        "boolq.jsonl",
        include_str!("../../../data/samples/core/boolq.jsonl"),
    ),
    (
        "core",
        "commonsense_qa.jsonl",
        include_str!("../../../data/samples/core/commonsense_qa.jsonl"),
    ),
    (
        "core",
        "copa.jsonl",
        include_str!("../../../data/samples/core/copa.jsonl"),
    ),
    (
        "core",
        "coqa.jsonl",
        include_str!("../../../data/samples/core/coqa.jsonl"),
    ),
    (
        "core",
        "hellaswag.jsonl",
        include_str!("../../../data/samples/core/hellaswag.jsonl"),
    ),
    (
        "core",
        "jeopardy.jsonl",
        include_str!("../../../data/samples/core/jeopardy.jsonl"),
    ),
    (
        "core",
        "lambada_openai.jsonl",
        include_str!("../../../data/samples/core/lambada_openai.jsonl"),
    ),
    (
        "core",
        "openbook_qa.jsonl",
        include_str!("../../../data/samples/core/openbook_qa.jsonl"),
    ),
    (
        "core",
        "piqa.jsonl",
        include_str!("../../../data/samples/core/piqa.jsonl"),
    ),
    (
        "core",
        "squad.jsonl",
        include_str!("../../../data/samples/core/squad.jsonl"),
    ),
    (
        "core",
        "winogrande.jsonl",
        include_str!("../../../data/samples/core/winogrande.jsonl"),
    ),
];

/// The fetched copy's path: `$NANOCHAT_DATA_DIR/<folder>/<file>`.
pub fn fetched_path(folder: &str, file: &str) -> Result<PathBuf> {
    Ok(super::data_dir()?.join(folder).join(file))
}

/// The text of an evaluation file and the name to cite in errors (its path, or
/// `data/samples/<folder>/<file>`). A file that is not there is [`CoreError::Missing`], its
/// hint naming `scripts/fetch_data.sh` and `--samples`.
pub fn read_eval_file(folder: &str, file: &str, source: EvalData) -> Result<(String, String)> {
    match source {
        EvalData::Fetched => {
            let path = fetched_path(folder, file)?;
            let text = std::fs::read_to_string(&path).map_err(|e| {
                CoreError::io_or_missing(&path, e, "run `scripts/fetch_data.sh` to fetch the evaluation sets (or pass --samples to use the small committed samples)")
            })?;
            Ok((text, path.display().to_string()))
        }
        EvalData::Samples => SAMPLES
            .iter()
            .find(|(d, f, _)| *d == folder && *f == file)
            .map(|(d, f, text)| (text.to_string(), format!("data/samples/{d}/{f}")))
            .ok_or_else(|| CoreError::Missing {
                path: Path::new("data/samples").join(folder).join(file),
                hint: "no committed sample has this name".into(),
            }),
    }
}

/// Parses each non-empty line of a JSONL text as `T`; a bad line is an error naming the
/// source, the line and serde's reason (which names the field).
pub fn parse_jsonl<T: serde::de::DeserializeOwned>(text: &str, source: &str) -> Result<Vec<T>> {
    let items = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| CoreError::File {
                path: source.to_string(),
                why: format!("line {}: {e}", i + 1),
            })
        })
        .collect::<Result<Vec<T>>>()?;
    if items.is_empty() {
        return Err(CoreError::File {
            path: source.to_string(),
            why: "no items".into(),
        });
    }
    Ok(items)
}
