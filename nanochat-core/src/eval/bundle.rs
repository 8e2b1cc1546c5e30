//! nanochat's CORE data, the DCLM eval bundle as nanochat places it in `<base dir>/eval_bundle/`
//! (`evaluate_core` in `scripts/base_eval.py` at 92d63d4, the same at 16788ee):
//!
//! - `core.yaml`: `icl_tasks`, each with `label`, `icl_task_type`, `dataset_uri`,
//!   `num_fewshot` (a list: the first is used) and `continuation_delimiter` (default a space);
//! - `eval_meta_data.csv`: the `Random baseline` (percent) of each `Eval Task`;
//! - `eval_data/<dataset_uri>`: JSONL items, `{"query", "choices", "gold"}` (multiple choice),
//!   `{"context_options", "continuation", "gold"}` (schema) or `{"context", "continuation"}`
//!   (language modelling), which [`super::core::CoreItem`] reads under those names too.
//!
//! The YAML is read with `yaml-rust2` and the CSV with `csv` (well-kept readers of formats
//! that are not this project's business).

use std::collections::HashMap;
use std::path::Path;

use super::core::{CoreTask, CoreTaskMeta, CoreTaskType};
use crate::tasks::eval_data::parse_jsonl;
use crate::{CoreError, Result};

/// The CORE tasks of an eval bundle folder. Errors ([`CoreError::File`] / [`CoreError::Io`]
/// naming the file and, where it applies, the task and key): a missing file, YAML or CSV that
/// does not parse, a task without a label, type, file or baseline, an unknown task type, and
/// the items' own checks ([`CoreTask::new`]).
pub fn load_eval_bundle(dir: &Path) -> Result<Vec<CoreTask>> {
    let yaml_path = dir.join("core.yaml");
    let text = std::fs::read_to_string(&yaml_path).map_err(|e| CoreError::io(&yaml_path, e))?;
    let docs = yaml_rust2::YamlLoader::load_from_str(&text)
        .map_err(|e| CoreError::file(&yaml_path, format!("not YAML: {e}")))?;
    let tasks = docs
        .first()
        .and_then(|d| d["icl_tasks"].as_vec())
        .ok_or_else(|| CoreError::file(&yaml_path, "no `icl_tasks` list"))?;
    let baselines = read_baselines(&dir.join("eval_meta_data.csv"))?;
    let mut out = Vec::new();
    for (i, t) in tasks.iter().enumerate() {
        let field = |key: &str| -> Result<&str> {
            t[key].as_str().ok_or_else(|| {
                CoreError::file(
                    &yaml_path,
                    format!("icl_tasks[{i}]: `{key}` is missing or not a string"),
                )
            })
        };
        let label = field("label")?.to_string();
        let task_type = match field("icl_task_type")? {
            "multiple_choice" => CoreTaskType::MultipleChoice,
            "schema" => CoreTaskType::Schema,
            "language_modeling" => CoreTaskType::LanguageModeling,
            other => {
                return Err(CoreError::file(
                    &yaml_path,
                    format!("task `{label}`: icl_task_type `{other}` (multiple_choice, schema or language_modeling)"),
                ))
            }
        };
        let file = field("dataset_uri")?.to_string();
        let num_fewshot = t["num_fewshot"]
            .as_vec()
            .and_then(|v| v.first())
            .and_then(|n| n.as_i64())
            .or_else(|| t["num_fewshot"].as_i64())
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                CoreError::file(
                    &yaml_path,
                    format!("task `{label}`: `num_fewshot` is not a list of counts"),
                )
            })?;
        let continuation_delimiter = t["continuation_delimiter"]
            .as_str()
            .unwrap_or(" ")
            .to_string();
        let random_baseline = *baselines.get(&label).ok_or_else(|| {
            CoreError::file(
                dir.join("eval_meta_data.csv"),
                format!("no `Random baseline` for task `{label}`"),
            )
        })?;
        let data = dir.join("eval_data").join(&file);
        let text = std::fs::read_to_string(&data).map_err(|e| CoreError::io(&data, e))?;
        let source = data.display().to_string();
        let items = parse_jsonl(&text, &source)?;
        let meta = CoreTaskMeta {
            label,
            file,
            task_type,
            num_fewshot,
            continuation_delimiter,
            random_baseline,
        };
        out.push(CoreTask::new(meta, items, &source)?);
    }
    if out.is_empty() {
        return Err(CoreError::file(&yaml_path, "lists no task"));
    }
    Ok(out)
}

/// `Eval Task` -> `Random baseline` of `eval_meta_data.csv`.
fn read_baselines(path: &Path) -> Result<HashMap<String, f64>> {
    let mut rdr = csv::Reader::from_path(path).map_err(|e| CoreError::file(path, e))?;
    let headers = rdr.headers().map_err(|e| CoreError::file(path, e))?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| CoreError::file(path, format!("no `{name}` column")))
    };
    let (task, base) = (col("Eval Task")?, col("Random baseline")?);
    let mut out = HashMap::new();
    for (i, row) in rdr.records().enumerate() {
        let row = row.map_err(|e| CoreError::file(path, e))?;
        let name = row.get(task).unwrap_or_default().trim().to_string();
        let v = row.get(base).unwrap_or_default().trim();
        let v: f64 = v.parse().map_err(|_| {
            CoreError::file(
                path,
                format!("row {}: `Random baseline` {v:?} is not a number", i + 2),
            )
        })?;
        out.insert(name, v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A two-task bundle in nanochat's layout and item names.
    fn bundle(dir: &Path) {
        std::fs::create_dir_all(dir.join("eval_data/lu")).unwrap();
        std::fs::write(
            dir.join("core.yaml"),
            "icl_tasks:\n-\n  label: piqa\n  dataset_uri: lu/piqa.jsonl\n  num_fewshot: [1]\n  icl_task_type: multiple_choice\n-\n  label: lambada_openai\n  dataset_uri: lu/lambada.jsonl\n  num_fewshot: [0]\n  icl_task_type: language_modeling\n  continuation_delimiter: ''\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("eval_meta_data.csv"),
            "Eval Task,Task Category,Random baseline\npiqa,commonsense,50\nlambada_openai,language,0\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("eval_data/lu/piqa.jsonl"),
            "{\"query\": \"To open a jar,\", \"choices\": [\"twist the lid\", \"eat it\"], \"gold\": 0}\n{\"query\": \"To dry hands,\", \"choices\": [\"use a towel\", \"use water\"], \"gold\": 0}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("eval_data/lu/lambada.jsonl"),
            "{\"context\": \"The cat sat on the\", \"continuation\": \" mat\"}\n",
        )
        .unwrap();
    }

    #[test]
    fn nanochats_eval_bundle_reads_with_its_names() {
        let dir = tempfile::tempdir().unwrap();
        bundle(dir.path());
        let tasks = load_eval_bundle(dir.path()).unwrap();
        assert_eq!(tasks.len(), 2);
        let m = &tasks[0].meta;
        assert_eq!(
            (m.label.as_str(), m.num_fewshot, m.random_baseline),
            ("piqa", 1, 50.0)
        );
        assert_eq!(m.task_type, CoreTaskType::MultipleChoice);
        assert_eq!(m.continuation_delimiter, " ");
        assert_eq!(tasks[0].items[0].context.as_deref(), Some("To open a jar,"));
        assert_eq!(
            tasks[0].items[0].continuations.as_ref().unwrap()[1],
            "eat it"
        );
        assert_eq!(tasks[1].meta.continuation_delimiter, "");
        assert_eq!(tasks[1].meta.task_type, CoreTaskType::LanguageModeling);
    }

    #[test]
    fn a_broken_bundle_is_an_error_naming_file_and_task() {
        let dir = tempfile::tempdir().unwrap();
        bundle(dir.path());
        std::fs::write(
            dir.path().join("eval_meta_data.csv"),
            "Eval Task,Random baseline\npiqa,50\n",
        )
        .unwrap();
        let e = load_eval_bundle(dir.path()).err().unwrap().to_string();
        assert!(
            e.contains("eval_meta_data.csv") && e.contains("lambada_openai"),
            "{e}"
        );
        bundle(dir.path());
        std::fs::write(
            dir.path().join("core.yaml"),
            "icl_tasks:\n- label: x\n  icl_task_type: ranking\n",
        )
        .unwrap();
        let e = load_eval_bundle(dir.path()).err().unwrap().to_string();
        assert!(e.contains("core.yaml") && e.contains("ranking"), "{e}");
    }
}
