use serde_json::json;

use super::*;
use crate::engine::{Completion, FinishReason};

fn parse(v: serde_json::Value) -> Result<OpenAiRequest, RequestError> {
    OpenAiRequest::from_json(v.to_string().as_bytes())
}

fn hello(extra: serde_json::Value) -> serde_json::Value {
    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "Hello!"}]});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

/// A list of text parts is the same request as the joined string.
#[test]
fn content_parts_are_joined_text() {
    let plain = parse(hello(json!({}))).unwrap();
    let parts = parse(json!({"model": "m", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Hello!"}]}]}))
    .unwrap();
    assert_eq!(parts, plain);
    assert_eq!(plain.chat.messages[0].content, "Hello!");
    let two = parse(json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}))
    .unwrap();
    assert_eq!(two.chat.messages[0].content, "a\nb");
    let e = parse(json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "a"},
        {"type": "image_url", "image_url": {"url": "http://x"}}]}]}))
    .unwrap_err();
    assert_eq!(e.http_status(), 400);
    assert!(
        e.to_string().contains("`image_url`") && e.to_string().contains("content[1]"),
        "{e}"
    );
    for bad in [
        json!({"messages": [{"role": "user", "content": [{"text": "a"}]}]}),
        json!({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}),
        json!({"messages": [{"role": "user", "content": 5}]}),
        json!({"messages": [{"role": "user"}]}),
        json!({"messages": [{"content": "x"}]}),
    ] {
        assert_eq!(parse(bad.clone()).unwrap_err().http_status(), 422, "{bad}");
    }
}

#[test]
fn roles_developer_is_system_and_leading_systems_merge() {
    let sys = parse(json!({"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}))
    .unwrap();
    let dev = parse(json!({"messages": [
        {"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}))
    .unwrap();
    assert_eq!(sys, dev);
    assert_eq!(sys.chat.messages[0].role, "system");
    let merged = parse(json!({"messages": [
        {"role": "system", "content": "A"}, {"role": "developer", "content": "B"},
        {"role": "user", "content": "Hi", "name": "bob"}]}))
    .unwrap();
    assert_eq!(
        merged.chat.messages,
        vec![
            ChatMessage {
                role: "system".into(),
                content: "A\n\nB".into()
            },
            ChatMessage {
                role: "user".into(),
                content: "Hi".into()
            }
        ]
    );
    for (body, needle) in [
        (
            json!({"messages": [{"role": "tool", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"messages": [{"role": "assistant", "content": "x", "tool_calls": [{"id": "1"}]}]}),
            "messages[0].tool_calls",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x", "colour": "red"}]}),
            "messages[0].colour",
        ),
    ] {
        let e = parse(body).unwrap_err();
        assert_eq!(e.http_status(), 400);
        assert!(e.to_string().contains(needle), "{e}");
    }
}

#[test]
fn choices_stop_seed_and_options() {
    let r = parse(hello(json!({"n": 3, "seed": 7, "stop": ["\n", "User:"],
        "max_completion_tokens": 9, "stream": true, "stream_options": {"include_usage": true},
        "top_p": 1, "presence_penalty": 0, "frequency_penalty": 0.0, "logprobs": false,
        "tools": [], "tool_choice": "none", "logit_bias": {}, "response_format": {"type": "text"},
        "user": "me", "store": false, "top_k": 5, "temperature": 0.5})))
    .unwrap();
    assert_eq!(r.model.as_deref(), Some("m"));
    assert_eq!(
        (r.n, r.seed, r.stream, r.include_usage),
        (3, Some(7), true, true)
    );
    assert_eq!(r.stop, vec!["\n".to_string(), "User:".to_string()]);
    assert_eq!(r.chat.max_tokens, Some(9));
    let p = r.params(&GenerateParams {
        max_tokens: 100,
        top_k: Some(50),
        ..Default::default()
    });
    assert_eq!(
        p,
        GenerateParams {
            num_samples: 3,
            max_tokens: 9,
            temperature: 0.5,
            top_k: Some(5),
            seed: Some(7)
        }
    );
    assert_eq!(parse(hello(json!({"stop": "x"}))).unwrap().stop, vec!["x"]);
    let d = parse(hello(json!({}))).unwrap();
    assert_eq!(
        (d.n, d.seed, d.stream, d.include_usage),
        (1, None, false, false)
    );
    assert!(d.stop.is_empty());
    assert_eq!(
        parse(hello(json!({"seed": 18446744073709551615u64})))
            .unwrap()
            .seed,
        Some(u64::MAX)
    );
}

/// Numbers out of range and unsupported values are 400s naming the field; wrong kinds 422s.
#[test]
fn refusals_name_the_field() {
    for (extra, needle) in [
        (json!({"n": 0}), "n: 0 is not an integer in 1-8"),
        (json!({"n": 9}), "n: 9 is not an integer in 1-8"),
        (json!({"n": 1.5}), "n: 1.5"),
        (
            json!({"seed": -1}),
            "seed: -1 is not an integer in 0-18446744073709551615",
        ),
        (
            json!({"max_tokens": -1}),
            "max_tokens: -1 is not an integer in 1-4096",
        ),
        (
            json!({"max_completion_tokens": 5000}),
            "max_completion_tokens: 5000",
        ),
        (
            json!({"max_tokens": 5, "max_completion_tokens": 6}),
            "differ",
        ),
        (json!({"top_k": -1}), "top_k: -1 is not an integer in 1-200"),
        (json!({"top_k": 0}), "top_k: 0"),
        (
            json!({"temperature": 2.00000001}),
            "temperature: 2.00000001 is not a number in 0-2",
        ),
        (json!({"top_p": 0.9}), "top_p: only 1 is supported"),
        (json!({"top_p": 1.5}), "top_p: 1.5 is not a number in 0-1"),
        (json!({"presence_penalty": 0.5}), "presence_penalty: only 0"),
        (
            json!({"frequency_penalty": -3}),
            "frequency_penalty: -3 is not a number in -2 to 2",
        ),
        (json!({"logprobs": true}), "logprobs"),
        (json!({"top_logprobs": 2}), "top_logprobs"),
        (json!({"tools": [{"type": "function"}]}), "tools"),
        (json!({"functions": [{"name": "f"}]}), "functions"),
        (json!({"tool_choice": "required"}), "tool_choice"),
        (json!({"logit_bias": {"50": 1}}), "logit_bias"),
        (
            json!({"response_format": {"type": "json_object"}}),
            "response_format",
        ),
        (
            json!({"stream_options": {"include_usage": true}}),
            "stream_options",
        ),
        (
            json!({"stream": true, "stream_options": {"x": 1}}),
            "stream_options.x",
        ),
        (json!({"stop": ["a", "b", "c", "d", "e"]}), "limit of 4"),
        (json!({"stop": ["a", ""]}), "stop[1]"),
        (
            json!({"stop": ["a", "x".repeat(257)]}),
            "stop[1]: 257 characters exceed the limit of 256",
        ),
        (json!({"modalities": ["text", "audio"]}), "modalities"),
    ] {
        let e = parse(hello(extra.clone())).unwrap_err();
        assert_eq!(e.http_status(), 400, "{extra}: {e}");
        assert!(e.to_string().contains(needle), "{extra}: {e}");
    }
    let e = OpenAiRequest::from_json(
        br#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": 1e309}"#,
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("max_tokens: 1e309"), "{e}");
    for extra in [
        json!({"max_tokens": "5"}),
        json!({"n": "2"}),
        json!({"seed": true}),
        json!({"stop": 5}),
        json!({"stop": ["a", 5]}),
        json!({"stream": "yes"}),
        json!({"logprobs": 1}),
        json!({"model": 5}),
        json!({"stream": true, "stream_options": {"include_usage": "yes"}}),
        // A wrong kind is reported before an unsupported field or a range.
        json!({"max_tokens": "5", "top_p": 0.5, "bogus": 1}),
    ] {
        let e = parse(hello(extra.clone())).unwrap_err();
        assert_eq!(e.http_status(), 422, "{extra}: {e}");
    }
}

#[test]
fn replies_carry_every_choice() {
    let c = |text: &str, finish, tokens| Completion {
        text: text.into(),
        finish,
        tokens,
    };
    let choices = [
        c("a", FinishReason::Stop, 2),
        c("bc", FinishReason::ContextFull, 5),
    ];
    let reply = Reply {
        id: "chatcmpl-1".into(),
        created: 9,
        model: "m".into(),
        include_usage: true,
    };
    let v = reply.completion(10, &choices);
    assert_eq!(v["model"], "m");
    assert_eq!(v["choices"][1]["index"], 1);
    assert_eq!(v["choices"][1]["message"]["content"], "bc");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["choices"][1]["finish_reason"], "length");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17})
    );
    let t = reply.text(1, "x");
    assert_eq!(t["choices"][0]["index"], 1);
    assert_eq!(t["choices"][0]["delta"]["content"], "x");
    assert!(t["usage"].is_null() && t.as_object().unwrap().contains_key("usage"));
    assert_eq!(
        reply.finish(0, FinishReason::Length)["choices"][0]["finish_reason"],
        "length"
    );
    assert_eq!(reply.opening(1)["choices"][0]["delta"]["role"], "assistant");
    let u = reply.usage_chunk(10, &choices).unwrap();
    assert_eq!(u["choices"], json!([]));
    assert_eq!(u["usage"]["total_tokens"], 17);
    let quiet = Reply {
        include_usage: false,
        ..reply
    };
    assert_eq!(quiet.usage_chunk(10, &choices), None);
    assert!(!quiet
        .text(0, "x")
        .as_object()
        .unwrap()
        .contains_key("usage"));
    assert_eq!(models_list("nanochat", 3)["data"][0]["id"], "nanochat");
    let e = error_body("top_p: only 1 is supported", 400);
    assert_eq!(e["error"]["message"], e["detail"]);
    assert_eq!(e["error"]["param"], "top_p");
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert!(error_body("request body over 5 bytes: x", 400)["error"]["param"].is_null());
}

/// Two user turns in a row and a system message after the first turn (both sent by OpenAI
/// clients) fit nanochat's alternating format: merged, the late system message as user text;
/// the result renders as a prompt.
#[test]
fn consecutive_roles_and_late_system_messages_fit_the_chat_format() {
    let r = parse(json!({"messages": [
        {"role": "user", "content": "Hi"}, {"role": "user", "content": "there"},
        {"role": "assistant", "content": "Hello."}, {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Why?"}]}))
    .unwrap();
    let roles: Vec<(&str, &str)> = r
        .chat
        .messages
        .iter()
        .map(|m| (m.role.as_str(), m.content.as_str()))
        .collect();
    assert_eq!(
        roles,
        [
            ("user", "Hi\n\nthere"),
            ("assistant", "Hello."),
            ("user", "Be brief.\n\nWhy?")
        ]
    );
    let tok = crate::tokenizer::tests::small_tokenizer();
    crate::engine::completion_prompt(tok, &r.chat.conversation()).unwrap();
}
