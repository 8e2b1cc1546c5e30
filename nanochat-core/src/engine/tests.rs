//! Engine tests: batched KV-cache decoding equals full-forward sampling at temperature 0, seeds
//! reproduce, the context limit stops generation with its reason, the tool state machine.

use super::row::{RowState, Specials};
use super::*;
use crate::model::tests::{linear_values, randomize_projections};
use crate::model::ForwardOptions;
use crate::tokenizer::tests::small_tokenizer;
use crate::{DType, Device, GPTConfig};

pub(crate) fn engine(block_size: usize, seed: u64) -> Engine {
    engine_padded(block_size, seed, 0)
}

/// An engine whose model vocabulary has `pad` ids more than the tokenizer's.
fn engine_padded(block_size: usize, seed: u64, pad: usize) -> Engine {
    let tok = small_tokenizer().clone();
    let config = GPTConfig {
        vocab_size: tok.vocab_size() + pad,
        n_layer: 2,
        n_head: 4,
        n_kv_head: 2,
        n_embd: 32,
        block_size,
        ..GPTConfig::default()
    };
    let dev = Device::cpu().unwrap();
    let mut model = GPT::new(config, &dev, DType::F32, seed).unwrap();
    // The blocks' output projections and lm_head start at zero: give them values, so the
    // context matters.
    let mut rng = rand::SeedableRng::seed_from_u64(seed);
    randomize_projections(&mut model, &mut rng);
    let shape = model.lm_head.weight.shape().to_vec();
    model.lm_head.weight = linear_values(&dev, &shape, &mut rng);
    Engine::new(model, tok).unwrap()
}

/// `num_samples` greedy rows of at most `max_tokens` (the other settings default).
fn greedy(num_samples: usize, max_tokens: usize) -> GenerateParams {
    GenerateParams {
        num_samples,
        max_tokens,
        temperature: 0.0,
        ..Default::default()
    }
}

/// `num_samples` rows of at most `max_tokens`, sampled at temperature 1 from the top 50 with
/// `seed`.
fn sampling(num_samples: usize, max_tokens: usize, seed: u64) -> GenerateParams {
    GenerateParams {
        temperature: 1.0,
        top_k: Some(50),
        seed: Some(seed),
        ..greedy(num_samples, max_tokens)
    }
}

/// Greedy decoding with the full forward over the whole sequence at every step: the tokens and
/// the model's probability of each.
fn naive_greedy_probs(e: &Engine, prompt: &[u32], max_tokens: usize) -> (Vec<u32>, Vec<f32>) {
    let v = e.model().config().vocab_size;
    let mut seq = prompt.to_vec();
    let (mut out, mut probs) = (Vec::new(), Vec::new());
    while out.len() < max_tokens && seq.len() <= e.model().config().block_size {
        let logits = e
            .model()
            .forward(&seq, (1, seq.len()), ForwardOptions::new())
            .unwrap()
            .to_vec_f32()
            .unwrap();
        let last = &logits[logits.len() - v..];
        let t = last
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0 as u32;
        out.push(t);
        probs.push(probability(last, t));
        if e.specials.is_terminal(t) || seq.len() == e.model().config().block_size {
            break;
        }
        seq.push(t);
    }
    (out, probs)
}

fn naive_greedy(e: &Engine, prompt: &[u32], max_tokens: usize) -> Vec<u32> {
    naive_greedy_probs(e, prompt, max_tokens).0
}

#[test]
fn batched_cached_decoding_equals_full_forward_greedy() {
    for seed in [1u64, 2, 3] {
        let e = engine(64, seed);
        let prompt = e.tokenizer().encode("It was the best of times");
        let params = GenerateParams {
            seed: Some(0),
            ..greedy(3, 20)
        };
        let columns: Vec<TokenColumn> = e
            .generate(&prompt, &params)
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let (want, want_probs) = naive_greedy_probs(&e, &prompt, 20);
        assert!(want.len() > 3, "the model ended too soon to compare");
        for row in 0..3 {
            let got: Vec<u32> = columns.iter().map(|c| c.tokens[row]).collect();
            assert_eq!(&got[..want.len()], &want[..], "seed {seed} row {row}");
            assert!(columns.iter().all(|c| c.masks[row] == 1));
            // The probabilities match the full forward's too (a far finer check than argmax).
            for (c, p) in columns.iter().zip(&want_probs) {
                let got = c.probs[row].unwrap();
                assert!(
                    (got - p).abs() <= 1e-4 * p.max(1e-3),
                    "seed {seed} row {row}: {got} vs {p}"
                );
            }
        }
    }
}

/// The engine (block 64, seed 4), the prompt "Call me Ishmael." and its naive greedy stream of
/// 12 tokens, which the greedy generation tests compare against.
fn ishmael() -> (Engine, Vec<u32>, Vec<u32>) {
    let e = engine(64, 4);
    let prompt = e.tokenizer().encode("Call me Ishmael.");
    let want = naive_greedy(&e, &prompt, 12);
    (e, prompt, want)
}

#[test]
fn generate_batch_drops_terminal_tokens_and_keeps_the_prompt() {
    let (e, prompt, want) = ishmael();
    let (results, probs) = e.generate_batch(&prompt, &greedy(2, 12)).unwrap();
    let want: Vec<u32> = want
        .into_iter()
        .take_while(|&t| !e.specials.is_terminal(t))
        .collect();
    for (r, p) in results.iter().zip(&probs) {
        assert_eq!(&r[..prompt.len()], &prompt[..]);
        assert_eq!(&r[prompt.len()..], &want[..]);
        assert_eq!(p.len(), want.len());
    }
}

#[test]
fn generate_ids_is_the_greedy_stream_with_its_terminal_token_and_reason() {
    let (e, prompt, want) = ishmael();
    // generate_ids samples one row whatever num_samples says.
    let params = greedy(3, 12);
    let (ids, reason) = e.generate_ids(&prompt, &params).unwrap();
    assert_eq!(ids, want);
    let ended = want.last().is_some_and(|&t| e.specials.is_terminal(t));
    assert_eq!(
        reason,
        if ended {
            FinishReason::Stop
        } else {
            FinishReason::Length
        }
    );
    // The context limit is a reason of its own.
    let short = engine(prompt.len() + 2, 4);
    let (ids, reason) = short
        .generate_ids(
            &prompt,
            &GenerateParams {
                max_tokens: 50,
                ..params
            },
        )
        .unwrap();
    assert!(ids.len() <= 3, "{ids:?}");
    if !ids.last().is_some_and(|&t| short.specials.is_terminal(t)) {
        assert_eq!(reason, FinishReason::ContextFull);
    }
}

#[test]
fn the_same_seed_gives_the_same_samples() {
    let e = engine(64, 5);
    let prompt = e.tokenizer().encode("Once upon a time");
    let params = |seed| sampling(4, 16, seed);
    let a = e.generate_batch(&prompt, &params(7)).unwrap();
    let b = e.generate_batch(&prompt, &params(7)).unwrap();
    let c = e.generate_batch(&prompt, &params(8)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.0, c.0, "another seed should sample differently");
    // Rows sample independently from the shared prefill.
    assert!(
        a.0.iter().any(|r| r != &a.0[0]),
        "four samples at temperature 1 all equal"
    );
}

#[test]
fn generation_stops_at_the_context_length_with_its_reason() {
    let e = engine(16, 6);
    let prompt: Vec<u32> = e
        .tokenizer()
        .encode("one two three four five six seven eight nine ten")[..10]
        .to_vec();
    // A random model rarely ends a row on its own; rows may, so accept Stop only if every row did.
    let params = greedy(2, 100);
    let mut stream = e.generate(&prompt, &params).unwrap();
    let mut n = 0;
    for column in stream.by_ref() {
        column.unwrap();
        n += 1;
    }
    match stream.finish_reason() {
        Some(FinishReason::ContextFull) => assert_eq!(n, 16 - 10 + 1),
        Some(FinishReason::Stop) => assert!(n <= 7),
        other => panic!("unexpected finish {other:?} after {n} tokens"),
    }
    let params = greedy(1, 3);
    let mut stream = e.generate(&prompt, &params).unwrap();
    let n = stream.by_ref().count();
    assert!(n <= 3);
    assert!(matches!(
        stream.finish_reason(),
        Some(FinishReason::Length | FinishReason::Stop)
    ));
    let long = vec![1u32; 17];
    let err = e.generate(&long, &params).err().unwrap();
    assert!(
        matches!(
            err,
            CoreError::ContextFull {
                what: "prompt",
                len: 17,
                limit: 16
            }
        ),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(err.contains("exceeds the context of 16"), "{err}");
    let bad = GenerateParams {
        num_samples: 0,
        ..Default::default()
    };
    assert!(matches!(
        e.generate(&prompt, &bad).err(),
        Some(CoreError::InvalidArgument {
            name: "num_samples",
            ..
        })
    ));
    let bad = GenerateParams {
        top_k: Some(0),
        ..Default::default()
    };
    assert!(matches!(
        e.generate(&prompt, &bad).err(),
        Some(CoreError::InvalidArgument { name: "top_k", .. })
    ));
    let bad = GenerateParams {
        temperature: f32::NAN,
        ..Default::default()
    };
    let err = e.generate(&prompt, &bad).err().unwrap();
    assert!(
        matches!(&err, CoreError::InvalidArgument { name: "temperature", value, .. } if value == "NaN"),
        "{err:?}"
    );
    assert!(matches!(
        e.generate(&[], &params).err(),
        Some(CoreError::NoData {
            what: "prompt tokens",
            ..
        })
    ));
}

/// A tokenizer larger than the model's vocabulary is refused, naming both sizes.
#[test]
fn a_tokenizer_larger_than_the_model_is_refused() {
    let tok = small_tokenizer().clone();
    let config = GPTConfig {
        vocab_size: tok.vocab_size() - 1,
        n_layer: 1,
        n_head: 1,
        n_kv_head: 1,
        n_embd: 8,
        block_size: 8,
        ..GPTConfig::default()
    };
    let model = GPT::new(config, &Device::cpu().unwrap(), DType::F32, 0).unwrap();
    let v = tok.vocab_size();
    let err = Engine::new(model, tok).err().unwrap();
    assert!(
        matches!(err, CoreError::VocabMismatch { tokenizer, model } if tokenizer == v && model == v - 1),
        "{err:?}"
    );
}

#[test]
fn the_calculator_result_is_forced_after_python_end() {
    let tok = small_tokenizer();
    let sp = Specials::of(tok).unwrap();
    let run = |expr: &str| {
        let mut row = RowState::default();
        row.accept(sp.python_start, &sp, tok);
        for t in tok.encode(expr) {
            row.accept(t, &sp, tok);
        }
        row.accept(sp.python_end, &sp, tok);
        row.forced.into_iter().collect::<Vec<u32>>()
    };
    let mut want = vec![sp.output_start];
    want.extend(tok.encode("1234"));
    want.push(sp.output_end);
    assert_eq!(run("1,000 + 234"), want);
    let mut want = vec![sp.output_start];
    want.extend(tok.encode("3"));
    want.push(sp.output_end);
    assert_eq!(run("'strawberry'.count('r')"), want);
    // Hostile or foreign code is not evaluated: nothing is forced.
    for expr in [
        "__import__('os').system('ls')",
        "2**1000000",
        "open('/etc/passwd').read()",
        "(((((1",
        "",
    ] {
        assert!(run(expr).is_empty(), "{expr}");
    }
    // Tokens outside a python block and a stray python_end do nothing; terminal tokens end rows.
    let mut row = RowState::default();
    row.accept(sp.python_end, &sp, tok);
    assert!(row.forced.is_empty() && !row.completed);
    row.accept(sp.assistant_end, &sp, tok);
    assert!(row.completed);
}

#[test]
fn text_streams_only_whole_characters() {
    let tok = small_tokenizer();
    for text in [
        "plain words",
        "caf\u{e9} \u{4e2d}\u{6587} \u{1f600} done",
        "\u{1f680}\u{1f680}",
    ] {
        let mut stream = TextStream::new();
        let mut out = String::new();
        for t in tok.encode(text) {
            let piece = stream.push(tok, t).unwrap();
            assert!(
                !piece.contains('\u{FFFD}'),
                "{text:?}: a split character was emitted"
            );
            out.push_str(&piece);
        }
        out.push_str(&stream.finish(tok).unwrap());
        assert_eq!(out, text);
    }
}

#[test]
fn reply_streams_the_whole_reply_text() {
    let e = engine(128, 7);
    let conv =
        crate::tokenizer::chat::Conversation::new(vec![crate::tokenizer::chat::Message::user(
            "Hello there",
        )]);
    let params = GenerateParams {
        max_tokens: 10,
        temperature: 0.0,
        ..Default::default()
    };
    let mut streamed = String::new();
    let (reply, reason) = e
        .reply(&conv, &params, |t| {
            streamed.push_str(t);
            Ok(())
        })
        .unwrap();
    assert_eq!(streamed, reply);
    assert!(matches!(reason, FinishReason::Stop | FinishReason::Length));
}

#[test]
fn ids_past_the_tokenizer_in_a_padded_vocabulary_are_never_drawn() {
    let e = engine_padded(64, 8, 64);
    let n = e.tokenizer().vocab_size() as u32;
    let prompt = e.tokenizer().encode("Padding");
    let params = GenerateParams {
        num_samples: 4,
        max_tokens: 30,
        temperature: 2.0,
        seed: Some(1),
        ..Default::default()
    };
    for column in e.generate(&prompt, &params).unwrap() {
        assert!(column.unwrap().tokens.iter().all(|&t| t < n));
    }
}

/// `n` choices from one prefill: each choice's streamed pieces are its text, a seed reproduces
/// them, four seeds do not all agree, and stop strings cut each choice at its first match
/// without changing what is sampled (the same seed with and without them).
#[test]
fn choices_stream_apart_and_stop_strings_cut_them() {
    let e = engine(128, 9);
    let prompt = e.tokenizer().encode("Once upon a time");
    let params = |seed| sampling(3, 24, seed);
    let run = |stops: &[String], seed| {
        let mut pieces = vec![Vec::<String>::new(); 3];
        let choices = e
            .stream_choices_until(
                &prompt,
                &params(seed),
                stops,
                || false,
                |i, t| {
                    pieces[i].push(t.to_string());
                    Ok(())
                },
            )
            .unwrap();
        for (c, p) in choices.iter().zip(&pieces) {
            assert_eq!(c.text, p.concat());
            assert!(p.iter().all(|p| !p.is_empty()));
        }
        (choices, pieces)
    };
    let (free, _) = run(&[], 3);
    assert_eq!(run(&[], 3).0, free);
    assert!(free.iter().any(|c| c.text != free[0].text), "{free:?}");
    let firsts: std::collections::HashSet<String> = (0..4)
        .map(|s| run(&[], 100 + s).0[0].text.clone())
        .collect();
    assert!(firsts.len() >= 2, "four seeds gave one reply");
    let longest = free
        .iter()
        .map(|c| &c.text)
        .max_by_key(|t| t.len())
        .unwrap();
    let chars: Vec<char> = longest.chars().collect();
    assert!(chars.len() >= 4, "too short to cut: {longest:?}");
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
    let (cut, pieces) = run(std::slice::from_ref(&stop), 3);
    let mut matched = 0;
    for ((c, f), p) in cut.iter().zip(&free).zip(&pieces) {
        match f.text.find(&stop) {
            Some(at) => {
                matched += 1;
                assert_eq!(c.text, f.text[..at]);
                assert_eq!(p.concat(), f.text[..at]);
                assert_eq!(c.finish, FinishReason::Stop);
            }
            None => assert_eq!((&c.text, c.finish), (&f.text, f.finish)),
        }
    }
    assert!(matched >= 1);
}
