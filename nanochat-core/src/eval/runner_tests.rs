//! The evaluation runners: tasks in the order given, events in order, ChatCORE only over all six
//! tasks, the result files' exact JSON, and errors naming the task.

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::eval::core::render_item;
use crate::eval::fake::{OracleModel, OracleScorer};
use crate::tokenizer::tests::small_tokenizer;

/// An oracle that knows every example of the named chat tasks' samples.
fn oracle(names: &[String]) -> OracleModel {
    let tasks: Vec<Arc<dyn Task>> = names
        .iter()
        .map(|n| chat_task(n, EvalData::Samples).unwrap())
        .collect();
    let refs: Vec<&dyn Task> = tasks.iter().map(|t| t.as_ref()).collect();
    OracleModel::new(small_tokenizer(), &refs).unwrap()
}

fn describe<R: std::fmt::Debug>(e: EvalEvent<'_, R>) -> String {
    match e {
        EvalEvent::Started { task } => format!("start {task}"),
        EvalEvent::Progress {
            task,
            done,
            total,
            correct,
        } => format!("{task} {done}/{total} {correct:?}"),
        EvalEvent::Finished(_) => "finished".into(),
    }
}

#[test]
fn task_names_are_split_trimmed_and_deduplicated() {
    assert_eq!(
        parse_chat_tasks(Some("GSM8K| ARC-Easy ||GSM8K")).unwrap(),
        ["GSM8K", "ARC-Easy"]
    );
    assert_eq!(parse_chat_tasks(None).unwrap(), CHAT_TASKS);
    let e = parse_chat_tasks(Some(" | ")).unwrap_err();
    assert!(
        matches!(
            &e,
            CoreError::InvalidArgument {
                name: "--task-name",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn a_chat_eval_writes_todays_result_file() {
    let names = parse_chat_tasks(Some("GSM8K|ARC-Easy")).unwrap();
    let opts = EvalOptions {
        max_problems: Some(3),
        batch_size: 2,
        ..EvalOptions::default()
    };
    let eval = ChatEval::load(names.clone(), EvalData::Samples, opts).unwrap();
    assert_eq!(eval.names(), names);
    let model = oracle(&names);
    let origin = ModelOrigin {
        source: Phase::Sft,
        step: 7,
        model_tag: None,
    };
    let mut events = Vec::new();
    let r = eval
        .run(
            &model,
            small_tokenizer(),
            &Device::cpu().unwrap(),
            origin,
            &mut |e| events.push(describe(e)),
        )
        .unwrap();
    assert_eq!(
        events,
        [
            "start GSM8K",
            "GSM8K 1/3 Some(1)",
            "GSM8K 2/3 Some(2)",
            "GSM8K 3/3 Some(3)",
            "finished",
            "start ARC-Easy",
            "ARC-Easy 2/3 Some(2)",
            "ARC-Easy 3/3 Some(3)",
            "finished",
        ]
    );
    let order: Vec<&str> = r.tasks.iter().map(|t| t.task.as_str()).collect();
    assert_eq!(order, ["GSM8K", "ARC-Easy"]);
    assert_eq!(r.chat_core, None, "ChatCORE needs all six tasks");
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({
            "source": "sft", "step": 7, "model_tag": null, "data": "samples",
            "options": {"temperature": 0.0, "top_k": 50, "num_samples": 1, "max_new_tokens": 512,
                "batch_size": 2, "max_problems": 3, "seed": 42},
            "tasks": {
                "GSM8K": {"accuracy": 1.0, "correct": 3, "total": 3, "baseline": 0.0, "centered": 1.0},
                "ARC-Easy": {"accuracy": 1.0, "correct": 3, "total": 3, "baseline": 0.25, "centered": 1.0},
            },
            "ChatCORE": null,
        })
    );
    let root = std::path::Path::new("/m");
    let file = chat_eval_path(root, Phase::Sft);
    assert_eq!(file, root.join("eval/chat-eval-sft.json"));
    assert_eq!(r.stage(), "chat-eval-sft");
    assert_eq!(
        r.report_settings(&file),
        json!({"source": "sft", "step": 7, "data": "samples",
            "options": serde_json::to_value(&r.options).unwrap(), "result_file": "/m/eval/chat-eval-sft.json"})
    );
    assert_eq!(r.report_summary(), json!({"GSM8K": 1.0, "ARC-Easy": 1.0}));
}

#[test]
fn chat_core_is_reported_over_all_six_tasks() {
    let names = parse_chat_tasks(None).unwrap();
    let opts = EvalOptions {
        max_problems: Some(2),
        ..EvalOptions::default()
    };
    let eval = ChatEval::load(names.clone(), EvalData::Samples, opts).unwrap();
    let origin = ModelOrigin {
        source: Phase::Rl,
        step: 1,
        model_tag: Some("d1".into()),
    };
    let r = eval
        .run(
            &oracle(&names),
            small_tokenizer(),
            &Device::cpu().unwrap(),
            origin,
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(r.chat_core, Some(1.0));
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["ChatCORE"], 1.0);
    assert_eq!(v["model_tag"], "d1");
    assert_eq!(r.report_summary()["ChatCORE"], 1.0);
    assert_eq!(r.report_summary().as_object().unwrap().len(), 7);
}

#[test]
fn a_failing_task_is_named() {
    let e = ChatEval::load(
        vec!["ARC-Easy".into(), "Trivia".into()],
        EvalData::Samples,
        EvalOptions::default(),
    )
    .err()
    .unwrap();
    assert!(
        matches!(&e, CoreError::Task { op: "loading task", task, error }
            if task == "Trivia" && matches!(**error, CoreError::Unknown { kind: "task", .. })),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with("loading task Trivia: unknown task"),
        "{e}"
    );
    // An oracle that was shown no task cannot answer: the task being evaluated is named.
    let eval = ChatEval::load(
        vec!["GSM8K".into()],
        EvalData::Samples,
        EvalOptions::default(),
    )
    .unwrap();
    let origin = ModelOrigin {
        source: Phase::Sft,
        step: 1,
        model_tag: None,
    };
    let e = eval
        .run(
            &oracle(&[]),
            small_tokenizer(),
            &Device::cpu().unwrap(),
            origin,
            &mut |_| {},
        )
        .unwrap_err();
    assert!(
        matches!(&e, CoreError::Task { op: "evaluating", task, error }
            if task == "GSM8K" && matches!(**error, CoreError::Internal { .. })),
        "{e:?}"
    );
}

#[test]
fn a_core_eval_writes_todays_result_file() {
    let tok = small_tokenizer();
    let eval = CoreEval::load(EvalData::Samples, Some(2)).unwrap();
    let gold: Vec<Vec<u32>> = eval
        .tasks
        .iter()
        .flat_map(|task| {
            (0..task.items.len()).map(move |i| {
                let r = render_item(task, i, tok, 4096).unwrap();
                r.seqs[r.gold].clone()
            })
        })
        .collect();
    let source = CoreModelSource::Checkpoint {
        model_tag: Some("d1".into()),
        step: 4,
    };
    let mut events = Vec::new();
    let r = eval
        .run(
            &OracleScorer::new(gold),
            tok,
            4096,
            &Device::cpu().unwrap(),
            source,
            &mut |e| events.push(describe(e)),
        )
        .unwrap();
    let labels: Vec<&str> = eval.tasks.iter().map(|t| t.meta.label.as_str()).collect();
    let expected_events: Vec<String> = labels
        .iter()
        .flat_map(|l| {
            [
                format!("start {l}"),
                format!("{l} 1/2 None"),
                format!("{l} 2/2 None"),
                "finished".into(),
            ]
        })
        .collect();
    assert_eq!(events, expected_events);
    let tasks: Vec<serde_json::Value> = labels
        .iter()
        .map(|l| json!({"label": l, "total": 2, "too_long": 0, "accuracy": 1.0, "centered": 1.0}))
        .collect();
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({"model": {"model_tag": "d1", "step": 4}, "data": "samples", "max_per_task": 2,
            "tasks": tasks, "CORE": 1.0})
    );
    let root = std::path::Path::new("/m");
    let file = core_eval_path(root);
    assert_eq!(file, root.join("eval/base-eval.json"));
    assert_eq!(
        r.report_settings(&file),
        json!({"model": {"model_tag": "d1", "step": 4}, "data": "samples", "max_per_task": 2,
            "result_file": "/m/eval/base-eval.json"})
    );
    assert_eq!(r.stage(), "base-eval");
    let summary = r.report_summary();
    assert_eq!(summary["CORE"], 1.0);
    assert_eq!(summary.as_object().unwrap().len(), labels.len() + 1);
    assert_eq!(
        serde_json::to_value(CoreModelSource::Folder {
            hf_path: "/x/hf".into()
        })
        .unwrap(),
        json!({"hf_path": "/x/hf"})
    );
}
