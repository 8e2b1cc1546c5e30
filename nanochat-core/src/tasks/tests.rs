//! Task framework tests: determinism, oversampling, slicing, the synthetic tasks' answers.

use super::*;
use crate::tokenizer::chat::Content;

fn texts(t: &dyn Task, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| serde_json::to_string(&t.get_example(i).unwrap()).unwrap())
        .collect()
}

#[test]
fn mixture_is_deterministic_and_oversamples_repeated_tasks() {
    let a: Arc<dyn Task> = Arc::new(CustomJson::identity().unwrap());
    let b: Arc<dyn Task> = Arc::new(SimpleSpelling::new(50, Split::Train).unwrap());
    let m1 = TaskMixture::new(vec![a.clone(), b.clone()], 7);
    let m2 = TaskMixture::new(vec![a.clone(), b.clone()], 7);
    assert_eq!(m1.num_examples(), a.num_examples() + 50);
    assert_eq!(texts(&m1, m1.num_examples()), texts(&m2, m2.num_examples()));
    let m3 = TaskMixture::new(vec![a.clone(), b.clone()], 8);
    assert_ne!(
        texts(&m1, 20),
        texts(&m3, 20),
        "a different seed shuffles differently"
    );
    // Listed twice: every identity example appears twice.
    let twice = TaskMixture::new(vec![a.clone(), a.clone(), b], 1);
    assert_eq!(twice.num_examples(), 2 * a.num_examples() + 50);
    let ident = texts(a.as_ref(), a.num_examples());
    let all = texts(&twice, twice.num_examples());
    for t in &ident {
        assert_eq!(all.iter().filter(|x| *x == t).count(), 2);
    }
}

#[test]
fn slices_and_sequences() {
    let b: Arc<dyn Task> = Arc::new(SimpleSpelling::new(10, Split::Train).unwrap());
    let s = TaskSlice::new(b.clone(), 2, Some(9), 3).unwrap();
    assert_eq!(s.num_examples(), 3);
    assert_eq!(
        texts(&s, 3),
        vec![
            texts(b.as_ref(), 10)[2].clone(),
            texts(b.as_ref(), 10)[5].clone(),
            texts(b.as_ref(), 10)[8].clone()
        ]
    );
    assert!(matches!(
        s.get_example(3),
        Err(CoreError::OutOfRange {
            index: 3,
            len: 3,
            ..
        })
    ));
    assert!(matches!(
        TaskSlice::new(b.clone(), 0, None, 0),
        Err(CoreError::InvalidArgument {
            name: "task slice",
            ..
        })
    ));
    let seq = TaskSequence::new(vec![b.clone(), Arc::new(s)]);
    assert_eq!(seq.num_examples(), 13);
    assert_eq!(texts(&seq, 13)[10], texts(b.as_ref(), 10)[2]);
    assert!(matches!(
        seq.get_example(13),
        Err(CoreError::OutOfRange {
            index: 13,
            len: 13,
            ..
        })
    ));
}

#[test]
fn spelling_bee_answers_are_right_and_splits_disjoint() {
    let train = SpellingBee::new(200, Split::Train).unwrap();
    let test = SpellingBee::new(200, Split::Test).unwrap();
    let train_texts = texts(&train, 200);
    let test_texts = texts(&test, 200);
    // Different seeds: at most a coincidence or two of the same word, letter and template.
    assert!(
        test_texts
            .iter()
            .filter(|t| train_texts.contains(t))
            .count()
            < 5
    );
    for i in 0..200 {
        let c = train.get_example(i).unwrap();
        let reference = content_text(&c.messages[1].content);
        assert!(
            train.evaluate(&c, &reference),
            "example {i} fails its own answer"
        );
        assert!(!train.evaluate(&c, "#### 999"));
        // The answer is the count of the letter the calculator was asked about.
        let Content::Parts(parts) = &c.messages[1].content else {
            panic!("parts")
        };
        let expr = &parts[2].text;
        let (word, letter) = (
            expr.split('\'').nth(1).unwrap(),
            expr.split('\'').nth(3).unwrap(),
        );
        assert_eq!(
            final_answer(&reference).unwrap(),
            word.matches(letter).count().to_string()
        );
    }
}

#[test]
fn arithmetic_answers_come_from_the_calculator() {
    let t = Arithmetic::new(300, Split::Train);
    for i in 0..300 {
        let c = t.get_example(i).unwrap();
        let Content::Parts(parts) = &c.messages[1].content else {
            panic!("parts")
        };
        assert_eq!(parts[1].kind, crate::tokenizer::chat::PartKind::Python);
        let out = crate::tools::calculator(&parts[1].text).unwrap();
        assert_eq!(out, parts[2].text);
        let answer = final_answer(&content_text(&c.messages[1].content)).unwrap();
        assert_eq!(answer, out.trim_end_matches(".0"));
        assert!(
            answer.parse::<i64>().is_ok(),
            "integer answers only: {answer}"
        );
        assert_eq!(t.reward(&c, &format!("so #### {answer}")), 1.0);
        assert_eq!(t.reward(&c, "#### -1"), 0.0);
    }
    assert_ne!(texts(&t, 5), texts(&Arithmetic::new(5, Split::Test), 5));
}

/// The tasks `training_task` builds.
const TRAINING_TASKS: [&str; 6] = [
    "chitchat",
    "chatterbot",
    "identity",
    "spelling-bee",
    "simple-spelling",
    "arithmetic",
];

#[test]
fn task_names_and_gsm8k_refusal() {
    for n in TRAINING_TASKS {
        let t = training_task(n).unwrap();
        assert!(t.num_examples() > 0, "{n}");
        t.get_example(0).unwrap();
    }
    let e = training_task("gsm8k").err().unwrap();
    assert!(matches!(e, CoreError::Unsupported { .. }), "{e:?}");
    assert!(e.to_string().contains("never trained on"), "{e}");
    assert!(matches!(
        training_task("nope").err(),
        Some(CoreError::Unknown { kind: "task", name, .. }) if name == "nope"
    ));
    assert_eq!(final_answer("x #### 1,234."), Some("1234".into()));
    assert_eq!(final_answer("no marker"), None);
}

/// The one registry: each use accepts its own names and aliases and builds its own split and
/// size; a name it does not accept (even one another use knows) is `Unknown`, listing the
/// names of that use.
#[test]
fn registry_accepts_each_uses_names_and_only_those() {
    let reward = |split, size| TaskUse::Reward { split, size };
    for n in ["arithmetic", "spelling-bee", "spellingbee", "SpellingBee"] {
        let train = task_by_name(n, reward(Split::Train, 7)).unwrap();
        let test = task_by_name(n, reward(Split::Test, 7)).unwrap();
        assert_eq!((train.num_examples(), test.num_examples()), (7, 7), "{n}");
        assert_ne!(texts(train.as_ref(), 7), texts(test.as_ref(), 7), "{n}");
    }
    let arithmetic = task_by_name("arithmetic", reward(Split::Test, 5)).unwrap();
    assert_eq!(
        texts(arithmetic.as_ref(), 5),
        texts(&Arithmetic::new(5, Split::Test), 5)
    );
    let bee = task_by_name("SpellingBee", reward(Split::Train, 5)).unwrap();
    assert_eq!(
        texts(bee.as_ref(), 5),
        texts(&SpellingBee::new(5, Split::Train).unwrap(), 5)
    );
    for (n, size) in [
        ("spelling-bee", 2000),
        ("spellingbee", 2000),
        ("simple-spelling", 1000),
        ("simplespelling", 1000),
        ("arithmetic", 2000),
    ] {
        let t = task_by_name(n, TaskUse::Training).unwrap();
        assert_eq!(t.num_examples(), size, "{n}");
    }
    let eval = TaskUse::Eval(EvalData::Samples);
    let bee = task_by_name("SpellingBee", eval).unwrap();
    assert_eq!(bee.num_examples(), SPELLING_BEE_SIZE);
    assert_eq!(
        texts(bee.as_ref(), 3),
        texts(
            &SpellingBee::new(SPELLING_BEE_SIZE, Split::Test).unwrap(),
            3
        )
    );
    let training = "chitchat, chatterbot, identity, spelling-bee, simple-spelling, arithmetic or a .jsonl file";
    let chat_eval = "one of ARC-Easy|ARC-Challenge|MMLU|GSM8K|HumanEval|SpellingBee";
    let rewarded = "arithmetic or spelling-bee";
    for (n, for_use, kind, expected) in [
        ("chitchat", reward(Split::Train, 9), "reward task", rewarded),
        ("GSM8K", reward(Split::Test, 9), "reward task", rewarded),
        (
            "simple-spelling",
            reward(Split::Train, 9),
            "reward task",
            rewarded,
        ),
        (
            "mine.jsonl",
            reward(Split::Train, 9),
            "reward task",
            rewarded,
        ),
        ("ARC-Easy", TaskUse::Training, "task", training),
        ("SpellingBee", TaskUse::Training, "task", training),
        ("nope", TaskUse::Training, "task", training),
        ("spelling-bee", eval, "task", chat_eval),
        ("arithmetic", eval, "task", chat_eval),
        ("gsm8k", eval, "task", chat_eval),
        ("mine.jsonl", eval, "task", chat_eval),
    ] {
        match task_by_name(n, for_use).err() {
            Some(CoreError::Unknown {
                kind: k,
                name,
                expected: e,
            }) => assert_eq!((k, name.as_str(), e.as_str()), (kind, n, expected)),
            other => panic!("{n} for {for_use:?}: {other:?}"),
        }
    }
    let e = task_by_name("gsm8k", reward(Split::Train, 9))
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "unknown reward task `gsm8k`: expected arithmetic or spelling-bee"
    );
}

#[test]
fn every_example_renders() {
    let tok = crate::tokenizer::tests::small_tokenizer();
    for n in TRAINING_TASKS {
        let t = training_task(n).unwrap();
        for i in 0..t.num_examples().min(50) {
            let (ids, mask) = tok
                .render_conversation(&t.get_example(i).unwrap(), 4096)
                .unwrap();
            assert!(mask.contains(&1), "{n} example {i} trains on nothing");
            assert_eq!(ids.len(), mask.len());
        }
    }
}

/// nanochat's CustomJSON line is a bare array of messages; ours also reads `{"messages": [...]}`.
/// Both shapes in one file give the same conversations; a bad line is named.
#[test]
fn custom_json_reads_nanochats_bare_arrays_and_messages_objects() {
    use crate::tokenizer::chat::Message;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mine.jsonl");
    let bare = r#"[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]"#;
    let object = r#"{"messages": [{"role": "user", "content": "Yo"}, {"role": "assistant", "content": "Hey"}]}"#;
    std::fs::write(&path, format!("{bare}\n\n  {object}\n")).unwrap();
    let t = CustomJson::from_file(&path).unwrap();
    assert_eq!(t.name(), "mine");
    assert_eq!(t.num_examples(), 2);
    let hi = Conversation::new(vec![Message::user("Hi"), Message::assistant("Hello")]);
    let yo = Conversation::new(vec![Message::user("Yo"), Message::assistant("Hey")]);
    assert_eq!(t.get_example(0).unwrap(), hi);
    assert_eq!(t.get_example(1).unwrap(), yo);
    for (text, line) in [
        (format!("{bare}\n[{{\"role\": \"user\"}}]\n"), "line 2"),
        (format!("{object}\n[]\n"), "line 2: no messages"),
        ("{\"messages\": 3}\n".to_string(), "line 1"),
    ] {
        std::fs::write(&path, &text).unwrap();
        let e = CustomJson::from_file(&path).err().unwrap().to_string();
        assert!(
            e.contains(line) && e.contains("mine.jsonl"),
            "{text:?}: {e}"
        );
    }
}
