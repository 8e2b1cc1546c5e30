use super::*;

fn req(messages: Vec<(&str, String)>) -> ChatRequest {
    ChatRequest {
        messages: messages
            .into_iter()
            .map(|(role, content)| ChatMessage {
                role: role.into(),
                content,
            })
            .collect(),
        temperature: None,
        max_tokens: None,
        top_k: None,
    }
}

#[test]
fn every_limit_is_enforced_and_named() {
    let ok = req(vec![("user", "hi".into())]);
    assert_eq!(ok.validate(false), Ok(()));
    let cases: Vec<(ChatRequest, &str)> = vec![
        (req(vec![]), "at least one message"),
        (req(vec![("user", "x".into()); 501]), "limit of 500"),
        (req(vec![("user", "x".repeat(8001))]), "limit of 8000"),
        (req(vec![("user", "x".repeat(8000)); 5]), "limit of 32000"),
        (req(vec![("system", "x".into())]), "messages[0].role"),
        (req(vec![("tool", "x".into())]), "messages[0].role"),
        (
            ChatRequest {
                temperature: Some(2.5),
                ..ok.clone()
            },
            "temperature",
        ),
        (
            ChatRequest {
                temperature: Some(f32::NAN),
                ..ok.clone()
            },
            "temperature",
        ),
        (
            ChatRequest {
                top_k: Some(0),
                ..ok.clone()
            },
            "top_k",
        ),
        (
            ChatRequest {
                max_tokens: Some(4097),
                ..ok.clone()
            },
            "max_tokens",
        ),
    ];
    let fields = [
        "messages",
        "messages",
        "messages[0].content",
        "messages",
        "messages[0].role",
        "messages[0].role",
        "temperature",
        "temperature",
        "top_k",
        "max_tokens",
    ];
    assert_eq!(cases.len(), fields.len());
    for ((r, needle), want) in cases.into_iter().zip(fields) {
        let err = r.validate(false).unwrap_err();
        match &err {
            RequestError::Invalid { field, .. } | RequestError::OutOfRange { field, .. } => {
                assert_eq!(field, want, "{err}")
            }
            other => panic!("{other:?} should name the field {want}"),
        }
        let err = err.to_string();
        assert!(err.contains(needle), "{err} should name {needle}");
    }
    // Limits are inclusive; characters, not bytes, count.
    let edge = ChatRequest {
        temperature: Some(2.0),
        top_k: Some(200),
        max_tokens: Some(4096),
        ..req(vec![("user", "\u{e9}".repeat(8000)); 4])
    };
    assert_eq!(edge.validate(false), Ok(()));
    assert_eq!(
        req(vec![("system", "be brief".into()), ("user", "hi".into())]).validate(true),
        Ok(())
    );
}

fn body(extra: &str) -> String {
    format!(r#"{{"messages": [{{"role": "user", "content": "hi"}}]{extra}}}"#)
}

/// Every number is checked as written: negative, fractional, too large or past f64 is a 400
/// naming the field and its range; a wrong JSON kind is a 422.
#[test]
fn numbers_are_checked_before_conversion() {
    let parsed = ChatRequest::from_json(
        body(r#", "temperature": 2, "max_tokens": 4096, "top_k": 200.0"#).as_bytes(),
    )
    .unwrap();
    assert_eq!(
        (parsed.temperature, parsed.max_tokens, parsed.top_k),
        (Some(2.0), Some(4096), Some(200))
    );
    let nulls = ChatRequest::from_json(body(r#", "temperature": null, "top_k": null"#).as_bytes());
    assert_eq!(nulls.unwrap().temperature, None);
    for (extra, field, range) in [
        (
            r#", "max_tokens": -1"#,
            "max_tokens",
            "an integer in 1-4096",
        ),
        (r#", "max_tokens": 0"#, "max_tokens", "an integer in 1-4096"),
        (
            r#", "max_tokens": 2.5"#,
            "max_tokens",
            "an integer in 1-4096",
        ),
        (
            r#", "max_tokens": 1e309"#,
            "max_tokens",
            "an integer in 1-4096",
        ),
        (
            r#", "max_tokens": 18446744073709551617"#,
            "max_tokens",
            "an integer in 1-4096",
        ),
        (r#", "top_k": -1"#, "top_k", "an integer in 1-200"),
        (r#", "top_k": 0"#, "top_k", "an integer in 1-200"),
        (r#", "top_k": 1e-400"#, "top_k", "an integer in 1-200"),
        (
            r#", "temperature": 2.00000001"#,
            "temperature",
            "a number in 0-2",
        ),
        (
            r#", "temperature": -1e-9"#,
            "temperature",
            "a number in 0-2",
        ),
        (
            r#", "temperature": -1e999"#,
            "temperature",
            "a number in 0-2",
        ),
    ] {
        let e = ChatRequest::from_json(body(extra).as_bytes()).unwrap_err();
        assert_eq!(e.http_status(), 400, "{extra}: {e}");
        let e = e.to_string();
        assert!(
            e.starts_with(&format!("{field}: ")) && e.ends_with(range),
            "{extra}: {e}"
        );
    }
    for extra in [
        r#", "max_tokens": "5""#,
        r#", "top_k": true"#,
        r#", "temperature": [1]"#,
        r#", "max_tokens": {}"#,
    ] {
        let e = ChatRequest::from_json(body(extra).as_bytes()).unwrap_err();
        assert!(matches!(e, RequestError::Malformed(_)), "{extra}: {e}");
        assert_eq!(e.http_status(), 422);
    }
    for bad in ["", "[]", "not json", "{}", r#"{"messages": "hi"}"#] {
        let e = ChatRequest::from_json(bad.as_bytes()).unwrap_err();
        assert_eq!(e.http_status(), 422, "{bad}: {e}");
    }
    // A wrong kind is reported before any value's range.
    let e = ChatRequest::from_json(br#"{"messages": [], "top_k": "many"}"#).unwrap_err();
    assert_eq!(e.http_status(), 422, "{e}");
}
