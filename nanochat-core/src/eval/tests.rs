//! Evaluation tests: every task's rendering and scoring on the committed samples; an oracle
//! scores 1.0 everywhere (ChatCORE and CORE 1.0) and a guesser about its baseline (about 0
//! centred); the real model's scores agree with its full forward.

use std::sync::Arc;

use super::core::{
    core_score, evaluate_core_task, load_core_tasks, render_item, CoreItem, CoreTask, CoreTaskMeta,
    CoreTaskType, LmScorer,
};
use super::fake::{OracleModel, OracleScorer, RandomModel, RandomScorer};
use super::*;
use crate::engine::tests::engine;
use crate::model::tests::row_logits;
use crate::tasks::{render_mc, EvalData, McItem, MultipleChoice, Task, TaskSlice};
use crate::tokenizer::tests::small_tokenizer;

fn quiet() -> impl FnMut(usize, usize, usize) {
    |_, _, _| {}
}

#[test]
fn render_mc_is_nanochats_prompt() {
    let letters = vec!["A".to_string(), "B".to_string()];
    let choices = vec!["red".to_string(), "blue".to_string()];
    assert_eq!(
        render_mc("Which color is the sky?", &letters, &choices),
        "Multiple Choice question: Which color is the sky?\n- red=A\n- blue=B\n\nRespond only with the letter of the correct answer."
    );
}

#[test]
fn every_chat_task_loads_its_samples_and_renders() {
    let tok = small_tokenizer();
    for name in CHAT_TASKS {
        let task = chat_task(name, EvalData::Samples).unwrap();
        assert!(task.num_examples() >= 20, "{name}");
        for i in 0..task.num_examples().min(5) {
            let conv = task.get_example(i).unwrap();
            let prompt = tok.render_for_completion(&conv).unwrap();
            assert!(prompt.len() > 5, "{name} {i}");
            if task.eval_type() == crate::tasks::EvalType::Categorical {
                let letters = task.choice_letters(i);
                assert!(letters.len() >= 2, "{name}");
                // Every letter is one token; the reference answer is one of them.
                for l in &letters {
                    single_token(tok, l).unwrap();
                }
                let answer = crate::tasks::content_text(&conv.messages[1].content);
                assert!(letters.contains(&answer), "{name}: {answer}");
            }
        }
    }
    // The GSM8K reference keeps its calculator calls as tool parts.
    let gsm = chat_task("GSM8K", EvalData::Samples).unwrap();
    let conv = gsm.get_example(0).unwrap();
    let (ids, mask) = tok.render_conversation(&conv, 4096).unwrap();
    let py = tok.encode_special("<|python_start|>").unwrap();
    let out = tok.encode_special("<|output_start|>").unwrap();
    assert!(ids.contains(&py) && ids.contains(&out));
    let at = ids.iter().position(|&t| t == out).unwrap();
    assert_eq!(mask[at], 0, "tool output is not trained");
}

#[test]
fn missing_fetched_data_names_the_fetch_command() {
    let err =
        crate::tasks::eval_data::read_eval_file("eval", "no_such_set.jsonl", EvalData::Fetched)
            .unwrap_err();
    assert!(
        matches!(&err, CoreError::Missing { path, .. } if path.ends_with("eval/no_such_set.jsonl")),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(
        err.contains("scripts/fetch_data.sh") && err.contains("--samples"),
        "{err}"
    );
    let err = crate::tasks::eval_data::read_eval_file("eval", "nope.jsonl", EvalData::Samples)
        .unwrap_err();
    assert!(
        matches!(&err, CoreError::Missing { path, .. } if path.ends_with("data/samples/eval/nope.jsonl")),
        "{err:?}"
    );
}

#[test]
fn bad_items_are_errors_naming_file_line_and_field() {
    let bad = r#"{"question": "q", "choices": ["a", "b"], "answer": 5}"#;
    let items: Vec<McItem> = crate::tasks::eval_data::parse_jsonl(bad, "x.jsonl").unwrap();
    let err = MultipleChoice::new("T", items, "x.jsonl")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("x.jsonl") && err.contains("answer"), "{err}");
    let err = crate::tasks::eval_data::parse_jsonl::<McItem>("{\"question\": 1}", "y.jsonl")
        .unwrap_err()
        .to_string();
    assert!(err.contains("y.jsonl") && err.contains("line 1"), "{err}");
}

#[test]
fn oracle_scores_one_on_every_chat_task_and_chat_core_one() {
    let tok = small_tokenizer();
    let tasks: Vec<Arc<dyn Task>> = CHAT_TASKS
        .iter()
        .map(|n| chat_task(n, EvalData::Samples).unwrap())
        .collect();
    // SpellingBee has 256 examples: a slice keeps the test short.
    let tasks: Vec<Arc<dyn Task>> = tasks
        .into_iter()
        .map(|t| Arc::new(TaskSlice::new(t, 0, Some(24), 1).unwrap()) as Arc<dyn Task>)
        .collect();
    let refs: Vec<&dyn Task> = tasks.iter().map(|t| t.as_ref()).collect();
    let oracle = OracleModel::new(tok, &refs).unwrap();
    let mut results = Vec::new();
    for t in &tasks {
        let opts = EvalOptions {
            batch_size: 5,
            ..EvalOptions::default()
        };
        let r = evaluate_task_with(&oracle, tok, t.as_ref(), &opts, &mut quiet()).unwrap();
        assert_eq!(r.accuracy, 1.0, "{}", r.task);
        results.push(r);
    }
    assert!((chat_core(&results) - 1.0).abs() < 1e-12);
}

/// A synthetic 4-way multiple-choice task of `n` items.
fn synthetic_mc(n: usize) -> MultipleChoice {
    let items = (0..n)
        .map(|i| McItem {
            id: i.to_string(),
            question: format!("What is {i} + 1?"),
            choices: (0..4).map(|k| (i + k).to_string()).collect(),
            answer: 1,
            subject: String::new(),
        })
        .collect();
    MultipleChoice::new("synthetic", items, "synthetic").unwrap()
}

#[test]
fn a_guesser_scores_about_its_baseline() {
    let tok = small_tokenizer();
    let mc = synthetic_mc(1200);
    let r = evaluate_task_with(
        &RandomModel::new(1),
        tok,
        &mc,
        &EvalOptions::default(),
        &mut quiet(),
    )
    .unwrap();
    assert!((r.baseline - 0.25).abs() < 1e-12);
    assert!((r.accuracy - 0.25).abs() < 0.04, "{}", r.accuracy);
    assert!(r.centered().abs() < 0.06);
    // Generative tasks: baseline 0, and random answers are (almost) never right.
    let gsm = chat_task("GSM8K", EvalData::Samples).unwrap();
    let g = evaluate_task_with(
        &RandomModel::new(2),
        tok,
        gsm.as_ref(),
        &EvalOptions::default(),
        &mut quiet(),
    )
    .unwrap();
    assert_eq!(g.baseline, 0.0);
    assert!(g.accuracy < 0.1);
    assert!(chat_core(&[r, g]).abs() < 0.1);
}

#[test]
fn slices_keep_letters_and_max_problems_limits() {
    let tok = small_tokenizer();
    let mc: Arc<dyn Task> = Arc::new(synthetic_mc(30));
    let slice = TaskSlice::new(mc.clone(), 3, Some(20), 4).unwrap();
    assert_eq!(slice.choice_letters(0), mc.choice_letters(3));
    let oracle = OracleModel::new(tok, &[&slice]).unwrap();
    let opts = EvalOptions {
        max_problems: Some(3),
        ..EvalOptions::default()
    };
    let r = evaluate_task_with(&oracle, tok, &slice, &opts, &mut quiet()).unwrap();
    assert_eq!((r.correct, r.total), (3, 3));
    let none = EvalOptions {
        max_problems: Some(0),
        ..EvalOptions::default()
    };
    let e = evaluate_task_with(&oracle, tok, &slice, &none, &mut quiet()).unwrap_err();
    assert!(
        matches!(
            e,
            CoreError::NoData {
                what: "examples to evaluate",
                ..
            }
        ),
        "{e:?}"
    );
    let e = chat_task("Trivia", EvalData::Samples).err().unwrap();
    assert!(
        matches!(&e, CoreError::Unknown { kind: "task", name, .. } if name == "Trivia"),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("ARC-Easy|ARC-Challenge|MMLU|GSM8K|HumanEval|SpellingBee"),
        "{e}"
    );
}

/// The engine's candidate logits are the full forward's logits at each prompt's last position,
/// whatever the batch's padding.
#[test]
fn engine_candidate_logits_match_the_full_forward() {
    let e = engine(64, 3);
    let v = e.model().config().vocab_size;
    let prompts = vec![vec![1u32, 5, 9, 13, 2], vec![7u32, 3], vec![4u32, 4, 4]];
    let cands = vec![vec![10u32, 11], vec![12u32, 13, 14], vec![15u32]];
    let got = e.candidate_logits(&prompts, &cands).unwrap();
    let err = e
        .candidate_logits(&prompts[..1], &[vec![v as u32]])
        .unwrap_err();
    assert!(
        matches!(err, CoreError::OutOfRange { index, len, .. } if index == v && len == v),
        "{err:?}"
    );
    let err = e.candidate_logits(&[vec![]], &[vec![1]]).unwrap_err();
    assert!(
        matches!(err, CoreError::NoData { what: "tokens", .. }),
        "{err:?}"
    );
    for (p, (c, row)) in prompts.iter().zip(cands.iter().zip(&got)) {
        let full = row_logits(e.model(), p);
        let last = &full[(p.len() - 1) * v..];
        for (&t, &x) in c.iter().zip(row) {
            assert!(
                (last[t as usize] - x).abs() < 1e-4,
                "{} vs {x}",
                last[t as usize]
            );
        }
    }
}

fn meta(task_type: CoreTaskType, num_fewshot: usize, baseline: f64) -> CoreTaskMeta {
    CoreTaskMeta {
        label: "t".into(),
        file: "t.jsonl".into(),
        task_type,
        num_fewshot,
        continuation_delimiter: " ".into(),
        random_baseline: baseline,
    }
}

/// A multiple-choice task of `items`, checked, with `num_fewshot` shots and `baseline`.
fn mc_task(items: Vec<CoreItem>, num_fewshot: usize, baseline: f64) -> CoreTask {
    CoreTask::new(
        meta(CoreTaskType::MultipleChoice, num_fewshot, baseline),
        items,
        "t",
    )
    .unwrap()
}

fn mc_item(ctx: &str, conts: &[&str], gold: usize) -> CoreItem {
    CoreItem {
        context: Some(ctx.into()),
        continuations: Some(conts.iter().map(|s| s.to_string()).collect()),
        gold: Some(gold),
        ..CoreItem::default()
    }
}

#[test]
fn core_prompts_follow_nanochats_templates() {
    let tok = small_tokenizer();
    let items = vec![
        mc_item("Q: sky?", &["blue", "green"], 0),
        mc_item("Q: grass?", &["blue", "green"], 1),
    ];
    let r = render_item(&mc_task(items, 1, 50.0), 0, tok, 1000).unwrap();
    let text = tok.decode(&r.seqs[1][1..]).unwrap();
    assert_eq!(text, "Q: grass? green\n\nQ: sky? green");
    // The continuation span covers " green" only (after the common prefix).
    let cont = tok.decode(&r.seqs[1][r.spans[1].0..r.spans[1].1]).unwrap();
    assert!(cont.ends_with("green") && !cont.contains("sky"), "{cont:?}");
    // Schema: the shared continuation is scored after each context.
    let schema = CoreTask::new(
        meta(CoreTaskType::Schema, 0, 50.0),
        vec![
            CoreItem {
                contexts: Some(vec!["The cat".into(), "The dog".into()]),
                continuation: Some("barked loudly.".into()),
                gold: Some(1),
                ..CoreItem::default()
            },
            CoreItem {
                contexts: Some(vec!["A".into(), "B".into()]),
                continuation: Some("c".into()),
                gold: Some(0),
                ..CoreItem::default()
            },
        ],
        "s",
    )
    .unwrap();
    let r = render_item(&schema, 0, tok, 1000).unwrap();
    for (s, &(a, b)) in r.seqs.iter().zip(&r.spans) {
        assert!(tok.decode(&s[a..b]).unwrap().contains("barked loudly."));
        assert!(!tok.decode(&s[a..b]).unwrap().contains("cat"));
    }
    // Language modelling: the span is the continuation; cropping keeps it.
    let lm = CoreTask::new(
        meta(CoreTaskType::LanguageModeling, 0, 0.0),
        vec![
            CoreItem {
                context: Some("one two three four five six seven".into()),
                continuation: Some("eight".into()),
                ..CoreItem::default()
            },
            CoreItem {
                context: Some("x".into()),
                continuation: Some("y".into()),
                ..CoreItem::default()
            },
        ],
        "l",
    )
    .unwrap();
    let full = render_item(&lm, 0, tok, 1000).unwrap();
    let (a, b) = full.spans[0];
    assert_eq!(tok.decode(&full.seqs[0][a..b]).unwrap().trim(), "eight");
    let cropped = render_item(&lm, 0, tok, 6).unwrap();
    assert_eq!(cropped.seqs[0].len(), 6);
    assert_eq!(&cropped.seqs[0][cropped.spans[0].0..], &full.seqs[0][a..b]);
    assert!(render_item(&lm, 0, tok, 1).is_none());
}

#[test]
fn oracle_scores_core_one_and_a_guesser_about_zero() {
    let tok = small_tokenizer();
    let tasks = load_core_tasks(EvalData::Samples).unwrap();
    assert!(tasks.len() >= 8, "{} CORE sample tasks", tasks.len());
    let mut oracle_results = Vec::new();
    for task in &tasks {
        let n = task.items.len().min(12);
        let gold: Vec<Vec<u32>> = (0..task.items.len())
            .map(|i| {
                let r = render_item(task, i, tok, 4096).unwrap();
                r.seqs[r.gold].clone()
            })
            .collect();
        let r = evaluate_core_task(
            &OracleScorer::new(gold),
            tok,
            task,
            Some(n),
            4096,
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(r.accuracy, 1.0, "{}", r.label);
        oracle_results.push(r);
    }
    assert!((core_score(&oracle_results) - 1.0).abs() < 1e-12);
    // A guesser on a large synthetic 4-way task: centred about 0.
    let items: Vec<CoreItem> = (0..800)
        .map(|i| mc_item(&format!("n{i}"), &["a", "b", "c", "d"], i % 4))
        .collect();
    let task = mc_task(items, 0, 25.0);
    let r = evaluate_core_task(
        &RandomScorer::new(3),
        tok,
        &task,
        None,
        4096,
        &mut |_, _| {},
    )
    .unwrap();
    assert!(r.centered.abs() < 0.08, "{}", r.centered);
}

/// The model's mean continuation losses and greedy matches agree with its full forward.
#[test]
fn gpt_scorer_matches_the_full_forward() {
    let e = engine(64, 5);
    let model = e.model();
    let v = model.config().vocab_size;
    let seqs = vec![vec![1u32, 5, 9, 13, 2, 8], vec![7u32, 3, 6]];
    let spans = vec![(3usize, 6usize), (1, 3)];
    let got = model.mean_losses(&seqs, &spans).unwrap();
    for ((s, &(a, b)), g) in seqs.iter().zip(&spans).zip(&got) {
        let logits = row_logits(model, s);
        let mut want = 0.0f64;
        for p in a..b {
            let row = &logits[(p - 1) * v..p * v];
            let m = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let lse = m + row
                .iter()
                .map(|&x| ((x as f64) - m).exp())
                .sum::<f64>()
                .ln();
            want += lse - row[s[p] as usize] as f64;
        }
        want /= (b - a) as f64;
        assert!((g - want).abs() < 1e-3, "{g} vs {want}");
    }
    // Greedy: continue a prompt with the model's own argmax tokens, then it must match; a
    // changed last token must not.
    let mut s = vec![3u32, 1, 4];
    for _ in 0..3 {
        let logits = row_logits(model, &s);
        let row = &logits[(s.len() - 1) * v..];
        let best = row
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        s.push(best as u32);
    }
    assert!(model.greedy_matches(&s, (3, 6)).unwrap());
    let mut wrong = s.clone();
    wrong[5] = (wrong[5] + 1) % v as u32;
    assert!(!model.greedy_matches(&wrong, (3, 6)).unwrap());
}

/// Mixtures and sequences hand each example's check and reward to the task it came from.
#[test]
fn mixtures_and_sequences_evaluate_each_example_with_its_own_task() {
    use crate::tasks::{content_text, TaskMixture, TaskSequence};
    let tok = small_tokenizer();
    let gsm = chat_task("GSM8K", EvalData::Samples).unwrap();
    let arc = chat_task("ARC-Easy", EvalData::Samples).unwrap();
    let mix = TaskMixture::new(vec![gsm.clone(), arc.clone()], 7);
    let seq = TaskSequence::new(vec![arc, gsm]);
    let oracle = OracleModel::new(tok, &[&mix]).unwrap();
    for task in [&mix as &dyn Task, &seq] {
        let opts = EvalOptions {
            max_problems: Some(30),
            ..EvalOptions::default()
        };
        let r = evaluate_task_with(&oracle, tok, task, &opts, &mut quiet()).unwrap();
        assert_eq!(r.accuracy, 1.0, "{}", task.name());
    }
    for i in 0..10 {
        let conv = mix.get_example(i).unwrap();
        let answer = content_text(&conv.messages.last().unwrap().content);
        assert_eq!(mix.reward_example(i, &conv, &answer), 1.0, "example {i}");
        assert_eq!(mix.reward_example(i, &conv, "#### -12345"), 0.0);
        let (task, j) = mix.locate(i).unwrap();
        assert_eq!(mix.choice_letters(i), task.choice_letters(j));
    }
}

#[test]
fn ties_go_to_the_first_index_as_torch_argmax() {
    assert_eq!(argmax(&[1.0f32, 3.0, 3.0]), Some(1));
    assert_eq!(argmin(&[2.0f64, 0.5, 0.5]), Some(1));
    assert_eq!(argmax::<f32>(&[]), None);
}

/// A choice that is a token prefix of another: every option is scored from the same start.
#[test]
fn core_options_share_one_start_and_bad_items_are_refused() {
    let tok = small_tokenizer();
    let items = vec![
        mc_item("The cat ate", &["dog", "dog food"], 0),
        mc_item("x", &["a", "b"], 1),
    ];
    let r = render_item(&mc_task(items, 0, 50.0), 0, tok, 1000).unwrap();
    assert_eq!(r.spans[0].0, r.spans[1].0);
    let tail = tok.decode(&r.seqs[1][r.spans[1].0..]).unwrap();
    assert!(tail.ends_with(" food"), "{tail:?}");
    // Both spans start at the same token: the last token of the shorter option.
    assert_eq!(r.spans[0].0, r.seqs[0].len() - 1);
    assert_eq!(r.seqs[0][r.spans[0].0], r.seqs[1][r.spans[1].0]);
    assert!(
        r.spans[0].1 > r.spans[0].0,
        "the shorter option keeps a token to score"
    );
    let lm = |cont: &str| CoreItem {
        context: Some("abc".into()),
        continuation: Some(cont.into()),
        ..CoreItem::default()
    };
    let err = CoreTask::new(
        meta(CoreTaskType::LanguageModeling, 0, 0.0),
        vec![lm("d"), lm(" ")],
        "l.jsonl",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("l.jsonl") && err.contains("item 2") && err.contains("continuation"),
        "{err}"
    );
    let err = CoreTask::new(
        meta(CoreTaskType::LanguageModeling, 0, 100.0),
        vec![lm("d"), lm("e")],
        "l.jsonl",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("random_baseline"), "{err}");
}

/// `max_items` takes a fixed shuffled subset, not the file's first items.
#[test]
fn core_subsets_are_a_seeded_sample() {
    let tok = small_tokenizer();
    let items: Vec<CoreItem> = (0..50)
        .map(|i| mc_item(&format!("n{i}"), &["a", "b"], 1))
        .collect();
    let task = mc_task(items, 0, 50.0);
    // The oracle knows only the file's first 5 items (elsewhere both options tie, and a tie
    // picks option 0, which is wrong): a subset of 5 that took them would score 1.0.
    let gold: Vec<Vec<u32>> = (0..5)
        .map(|i| render_item(&task, i, tok, 100).unwrap().seqs[1].clone())
        .collect();
    let r = evaluate_core_task(
        &OracleScorer::new(gold),
        tok,
        &task,
        Some(5),
        100,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(r.total, 5);
    assert!(r.accuracy < 1.0, "{}", r.accuracy);
}
