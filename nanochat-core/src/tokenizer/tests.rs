//! Tokenizer tests: round trips, special tokens, the chat format's golden renderings, the
//! reference encodings.

use std::sync::OnceLock;

use proptest::prelude::*;

use super::chat::{Content, Conversation, Message, Part, PartKind};
use super::*;

/// A small tokenizer trained once on a slice of the bundled corpus.
pub(crate) fn small_tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let docs = crate::data::bundled_documents().unwrap();
        let opts = TrainOptions {
            vocab_size: 1000,
            doc_cap: 20_000,
            max_chars: 400_000,
            progress: false,
        };
        train_tokenizer(&docs, &opts).unwrap().0
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn decode_encode_round_trips_any_unicode(s in "\\PC*") {
        let tok = small_tokenizer();
        prop_assert_eq!(tok.decode(&tok.encode(&s)).unwrap(), s);
    }

    #[test]
    fn round_trips_any_chars_including_controls(s in any::<String>()) {
        let tok = small_tokenizer();
        prop_assert_eq!(tok.decode(&tok.encode(&s)).unwrap(), s);
    }

    #[test]
    fn plain_text_never_yields_special_tokens(prefix in "\\PC{0,12}", k in 0usize..9, suffix in "\\PC{0,12}") {
        let tok = small_tokenizer();
        let text = format!("{prefix}{}{suffix}", SPECIAL_TOKENS[k]);
        let ids = tok.encode(&text);
        let first_special = (tok.vocab_size() - 9) as u32;
        prop_assert!(ids.iter().all(|&i| i < first_special), "{text:?} -> {ids:?}");
        prop_assert_eq!(tok.decode(&ids).unwrap(), text);
    }
}

#[test]
fn specials_take_the_last_ids_and_sizes_add_up() {
    let tok = small_tokenizer();
    assert_eq!(tok.vocab_size(), 1000);
    for (i, name) in SPECIAL_TOKENS.iter().enumerate() {
        assert_eq!(tok.encode_special(name).unwrap(), (991 + i) as u32);
    }
    assert_eq!(tok.get_bos_token_id(), 991);
    assert!(tok.encode_special("<|nope|>").is_err());
    assert_eq!(tok.token_bytes().len(), 1000);
    assert!(tok.token_bytes()[991..].iter().all(|&b| b == 0));
    // Every byte is a token of one byte; merges are longer.
    assert!(tok.token_bytes()[..256].iter().all(|&b| b == 1));
    assert!(tok.token_bytes()[256..991].iter().all(|&b| b >= 2));
    // Digits group by at most two.
    let ids = tok.encode("12345");
    assert!(ids.len() >= 3, "{ids:?}");
    let e = tok.decode(&[5000]).unwrap_err();
    assert!(
        matches!(e, crate::CoreError::Tokenizer { op: "decode", .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("token id 5000"), "{e}");
    let batch = tok.encode_batch(&["a b", "c"]);
    assert_eq!(batch, vec![tok.encode("a b"), tok.encode("c")]);
}

#[test]
fn save_and_load_encode_identically() {
    let tok = small_tokenizer();
    let dir = tempfile::tempdir().unwrap();
    tok.save(dir.path()).unwrap();
    let back = Tokenizer::from_pretrained(dir.path()).unwrap();
    let text = "Call me Ishmael. <|bos|> 3.14159 naïve — 한국어";
    assert_eq!(back.encode(text), tok.encode(text));
    assert_eq!(back.token_bytes(), tok.token_bytes());
    let tb: Vec<u32> =
        serde_json::from_slice(&std::fs::read(dir.path().join("token_bytes.json")).unwrap())
            .unwrap();
    assert_eq!(tb, tok.token_bytes());
    let missing = Tokenizer::from_pretrained(&dir.path().join("nothing")).unwrap_err();
    assert!(
        matches!(&missing, crate::CoreError::Missing { path, .. } if path == &dir.path().join("nothing")),
        "{missing:?}"
    );
    assert!(
        missing.to_string().contains("nanochat tok-train"),
        "{missing}"
    );
    std::fs::write(dir.path().join("bad.json"), "{}").unwrap();
    let bad = Tokenizer::from_pretrained(&dir.path().join("bad.json")).unwrap_err();
    assert!(matches!(bad, crate::CoreError::File { .. }), "{bad:?}");
    assert!(bad.to_string().contains("not a tokenizer.json"), "{bad}");
}

fn ids(tok: &Tokenizer, name: &str) -> u32 {
    tok.encode_special(name).unwrap()
}

#[test]
fn render_golden_user_and_assistant_turns() {
    let tok = small_tokenizer();
    let conv = Conversation::new(vec![
        Message::user("Hi there"),
        Message::assistant("Hello!"),
        Message::user("Bye"),
    ]);
    let (got, mask) = tok.render_conversation(&conv, 2048).unwrap();
    let (hi, hello, bye) = (
        tok.encode("Hi there"),
        tok.encode("Hello!"),
        tok.encode("Bye"),
    );
    let mut want = vec![ids(tok, "<|bos|>"), ids(tok, "<|user_start|>")];
    want.extend(&hi);
    want.extend([ids(tok, "<|user_end|>"), ids(tok, "<|assistant_start|>")]);
    want.extend(&hello);
    want.extend([ids(tok, "<|assistant_end|>"), ids(tok, "<|user_start|>")]);
    want.extend(&bye);
    want.push(ids(tok, "<|user_end|>"));
    let mut want_mask = vec![0u8; 3 + hi.len()];
    want_mask.push(0); // assistant_start
    want_mask.extend(std::iter::repeat_n(1, hello.len() + 1)); // content + assistant_end
    want_mask.extend(std::iter::repeat_n(0, bye.len() + 2));
    assert_eq!(got, want);
    assert_eq!(mask, want_mask);
}

#[test]
fn render_golden_system_merge_parts_and_truncation() {
    let tok = small_tokenizer();
    let conv = Conversation::new(vec![
        Message::system("Be brief."),
        Message::user("2+2?"),
        Message {
            role: "assistant".into(),
            content: Content::Parts(vec![
                Part {
                    kind: PartKind::Text,
                    text: "Let me compute.".into(),
                },
                Part {
                    kind: PartKind::Python,
                    text: "2+2".into(),
                },
                Part {
                    kind: PartKind::PythonOutput,
                    text: "4".into(),
                },
                Part {
                    kind: PartKind::Text,
                    text: "It is 4.".into(),
                },
            ]),
        },
    ]);
    let (got, mask) = tok.render_conversation(&conv, 2048).unwrap();
    let mut want = vec![ids(tok, "<|bos|>"), ids(tok, "<|user_start|>")];
    let mut wmask = vec![0u8, 0];
    let mut push = |t: &[u32], m: u8| {
        want.extend_from_slice(t);
        wmask.extend(std::iter::repeat_n(m, t.len()));
    };
    push(&tok.encode("Be brief.\n\n2+2?"), 0);
    push(
        &[ids(tok, "<|user_end|>"), ids(tok, "<|assistant_start|>")],
        0,
    );
    push(&tok.encode("Let me compute."), 1);
    push(&[ids(tok, "<|python_start|>")], 1);
    push(&tok.encode("2+2"), 1);
    push(&[ids(tok, "<|python_end|>")], 1);
    push(&[ids(tok, "<|output_start|>")], 0);
    push(&tok.encode("4"), 0);
    push(&[ids(tok, "<|output_end|>")], 0);
    push(&tok.encode("It is 4."), 1);
    push(&[ids(tok, "<|assistant_end|>")], 1);
    assert_eq!(got, want);
    assert_eq!(mask, wmask);
    // Truncation keeps the first max_tokens of both.
    let (short, smask) = tok.render_conversation(&conv, 5).unwrap();
    assert_eq!(
        (short.as_slice(), smask.as_slice()),
        (&want[..5], &wmask[..5])
    );
}

#[test]
fn render_for_completion_and_errors() {
    let tok = small_tokenizer();
    let conv = Conversation::from_json(r#"{"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}"#).unwrap();
    let prompt = tok.render_for_completion(&conv).unwrap();
    let mut want = vec![ids(tok, "<|bos|>"), ids(tok, "<|user_start|>")];
    want.extend(tok.encode("Q"));
    want.extend([ids(tok, "<|user_end|>"), ids(tok, "<|assistant_start|>")]);
    assert_eq!(prompt, want);
    let err = |c: Conversation| {
        let e = tok.render_conversation(&c, 100).unwrap_err();
        assert!(
            matches!(
                e,
                crate::CoreError::Tokenizer {
                    op: "chat format",
                    ..
                }
            ),
            "{e:?}"
        );
        e.to_string()
    };
    assert!(err(Conversation::new(vec![])).contains("at least one message"));
    assert!(err(Conversation::new(vec![Message::assistant("x")])).contains("roles must alternate"));
    assert!(err(Conversation::new(vec![
        Message::user("a"),
        Message::user("b")
    ]))
    .contains("message 1 has role `user`"));
    assert!(err(Conversation::new(vec![
        Message::system("s"),
        Message::assistant("x")
    ]))
    .contains("followed by a user message"));
    let parts_user = Conversation::new(vec![Message {
        role: "user".into(),
        content: Content::Parts(vec![]),
    }]);
    assert!(err(parts_user).contains("user content must be a string"));
    let only_user = Conversation::new(vec![Message::user("Q")]);
    assert!(tok
        .render_for_completion(&only_user)
        .unwrap_err()
        .to_string()
        .contains("last message must be from the assistant"));
    assert!(Conversation::from_json(
        r#"{"messages": [{"role": "user", "content": [{"type": "video", "text": "x"}]}]}"#
    )
    .is_err());
}

#[test]
fn reference_encodings_match_tiktoken() {
    let reference = eval::Reference::load().unwrap();
    // Known ids of both encodings.
    assert_eq!(
        reference.gpt2.encode_ordinary("Hello world"),
        vec![15496, 995]
    );
    assert_eq!(
        reference.gpt4.encode_ordinary("hello world"),
        vec![15339, 1917]
    );
    // Our counting is tiktoken's, text by text.
    let texts: Vec<(String, String)> = eval::EVAL_TEXTS
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    let rows = eval::compare(small_tokenizer(), &reference, &texts);
    for (row, (_, text)) in rows.iter().zip(&texts) {
        assert_eq!(row.gpt2, reference.gpt2.encode_ordinary(text).len());
        assert_eq!(row.gpt4, reference.gpt4.encode_ordinary(text).len());
        assert_eq!(row.bytes, text.len());
        assert!(row.ours > 0);
    }
    // cl100k compresses prose better than GPT-2's 50k vocabulary.
    assert!(rows[0].gpt4 <= rows[0].gpt2);
}

#[test]
fn a_reply_with_tool_use_renders_back_to_its_special_tokens() {
    let tok = small_tokenizer();
    let reply = "It is<|python_start|>12*3<|python_end|><|output_start|>36<|output_end|> 36.";
    let msg = Message::assistant_from_reply(reply);
    let Content::Parts(parts) = &msg.content else {
        panic!("{msg:?}")
    };
    let kinds: Vec<PartKind> = parts.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [
            PartKind::Text,
            PartKind::Python,
            PartKind::PythonOutput,
            PartKind::Text
        ]
    );
    assert_eq!(parts[1].text, "12*3");
    // Rendered, the tool markers are the special tokens again, not their names as text.
    let conv = Conversation::new(vec![Message::user("What is 12*3?"), msg]);
    let (ids, _) = tok.render_conversation(&conv, 2048).unwrap();
    for name in [
        "<|python_start|>",
        "<|python_end|>",
        "<|output_start|>",
        "<|output_end|>",
    ] {
        let id = tok.encode_special(name).unwrap();
        assert_eq!(ids.iter().filter(|&&t| t == id).count(), 1, "{name}");
    }
    // Plain replies stay plain text; a cut-short block runs to the end.
    assert_eq!(
        Message::assistant_from_reply("Hello."),
        Message::assistant("Hello.")
    );
    let cut = Message::assistant_from_reply("a<|python_start|>1+");
    let Content::Parts(parts) = &cut.content else {
        panic!("{cut:?}")
    };
    assert_eq!(
        (parts[1].kind, parts[1].text.as_str()),
        (PartKind::Python, "1+")
    );
}
