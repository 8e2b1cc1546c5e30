//! Request numbers on both chat endpoints (400 naming the field and range, 422 for a wrong
//! JSON kind), and the OpenAI endpoint through the `openai` Python client: list content, the
//! developer role, `model` echoed, `max_completion_tokens`, `n`, `stop` (also streamed),
//! `stream_options.include_usage`, `seed`, `/v1/models`, and refused fields.

use serde_json::{json, Value};

use super::http::request;

/// Both endpoints check every number as sent, before any conversion.
pub fn numbers_are_checked_as_sent(port: u16) {
    let msgs = r#""messages": [{"role": "user", "content": "hi"}]"#;
    for path in ["/chat/completions", "/v1/chat/completions"] {
        for (field, value, needle) in [
            (
                "max_tokens",
                "-1",
                "max_tokens: -1 is not an integer in 1-4096",
            ),
            (
                "max_tokens",
                "0",
                "max_tokens: 0 is not an integer in 1-4096",
            ),
            (
                "max_tokens",
                "2.5",
                "max_tokens: 2.5 is not an integer in 1-4096",
            ),
            (
                "max_tokens",
                "1e309",
                "max_tokens: 1e309 is not an integer in 1-4096",
            ),
            (
                "max_tokens",
                "18446744073709551616",
                "max_tokens: 18446744073709551616 is not",
            ),
            ("top_k", "-1", "top_k: -1 is not an integer in 1-200"),
            ("top_k", "0", "top_k: 0 is not an integer in 1-200"),
            (
                "top_k",
                "1e-400",
                "top_k: 1e-400 is not an integer in 1-200",
            ),
            (
                "temperature",
                "2.00000001",
                "temperature: 2.00000001 is not a number in 0-2",
            ),
            (
                "temperature",
                "-1e999",
                "temperature: -1e999 is not a number in 0-2",
            ),
        ] {
            let body = format!(r#"{{{msgs}, "{field}": {value}}}"#);
            let (status, resp) = request(port, "POST", path, Some(&body));
            assert_eq!(status, 400, "{path} {body}: {resp}");
            let detail = serde_json::from_str::<Value>(&resp).unwrap()["detail"].clone();
            assert!(
                detail.as_str().unwrap().contains(needle),
                "{path} {body}: {detail} should contain {needle}"
            );
        }
        for (field, value) in [
            ("max_tokens", r#""5""#),
            ("top_k", "true"),
            ("temperature", "[1]"),
        ] {
            let body = format!(r#"{{{msgs}, "{field}": {value}}}"#);
            let (status, resp) = request(port, "POST", path, Some(&body));
            assert_eq!(status, 422, "{path} {body}: {resp}");
            let detail = serde_json::from_str::<Value>(&resp).unwrap()["detail"].clone();
            assert!(detail.as_str().unwrap().contains(field), "{detail}");
        }
    }
    // The OpenAI endpoint's own fields and content parts.
    let completions = |body: &Value| {
        request(
            port,
            "POST",
            "/v1/chat/completions",
            Some(&body.to_string()),
        )
    };
    let user = json!({"role": "user", "content": "hi"});
    for (extra, needle) in [
        (json!({"n": 0}), "n: 0 is not an integer in 1-8"),
        (json!({"n": 9}), "n: 9 is not an integer in 1-8"),
        (json!({"seed": -1}), "seed: -1 is not an integer"),
        (json!({"top_p": 0.5}), "top_p"),
        (json!({"bogus": 1}), "bogus"),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
            "`image_url`",
        ),
    ] {
        let mut body = json!({"messages": [user]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, resp) = completions(&body);
        assert_eq!(status, 400, "{body}: {resp}");
        assert!(resp.contains(needle), "{body}: {resp}");
    }
    // List content is the string's request: the same reply at temperature 0.
    let reply = |content: Value| {
        let body = json!({"messages": [{"role": "user", "content": content}], "temperature": 0, "max_tokens": 6});
        let (status, resp) = completions(&body);
        assert_eq!(status, 200, "{resp}");
        serde_json::from_str::<Value>(&resp).unwrap()["choices"].clone()
    };
    assert_eq!(
        reply(json!([{"type": "text", "text": "Hello!"}])),
        reply(json!("Hello!"))
    );
}

/// The OpenAI Python client (PyPI `openai`, in scripts/setup.sh's venv) against the server.
pub fn openai_client_features(port: u16) {
    let script = r#"
import sys
from openai import OpenAI, BadRequestError
c = OpenAI(base_url=f"http://127.0.0.1:{sys.argv[1]}/v1", api_key="unused", max_retries=0)
hello = [{"role": "user", "content": "Hello!"}]
def ask(**kw):
    args = dict(model="nanochat", messages=hello, max_tokens=8, temperature=0)
    args.update(kw)
    return c.chat.completions.create(**args)

# /v1/models lists the served model.
assert [m.id for m in c.models.list().data] == ["nanochat"]

# Content parts, the developer role, the model echoed, max_completion_tokens.
base = ask()
text = base.choices[0].message.content
parts = ask(messages=[{"role": "user", "content": [{"type": "text", "text": "Hello!"}]}])
assert parts.choices[0].message.content == text, (parts, base)
assert parts.usage.prompt_tokens == base.usage.prompt_tokens
system = ask(messages=[{"role": "system", "content": "Be brief."}] + hello)
developer = ask(messages=[{"role": "developer", "content": "Be brief."}] + hello)
assert developer.choices[0].message.content == system.choices[0].message.content
assert developer.usage.prompt_tokens == system.usage.prompt_tokens > base.usage.prompt_tokens
assert ask(model="any-name", max_tokens=2).model == "any-name"
short = c.chat.completions.create(model="nanochat", messages=hello, max_completion_tokens=3, temperature=0)
assert short.usage.completion_tokens <= 3, short

# n choices from one prefill: at temperature 0 all equal the single reply; usage counts all.
three = ask(n=3)
assert [ch.index for ch in three.choices] == [0, 1, 2]
assert all(ch.message.content == text for ch in three.choices), three
assert three.usage.completion_tokens == 3 * base.usage.completion_tokens
assert three.usage.prompt_tokens == base.usage.prompt_tokens

# seed: the same seed, the same choices; four seeds do not all agree.
s1 = ask(temperature=1, n=2, seed=42)
s2 = ask(temperature=1, n=2, seed=42)
assert [ch.message.content for ch in s1.choices] == [ch.message.content for ch in s2.choices]
replies = {ask(temperature=1, seed=s).choices[0].message.content for s in range(4)}
assert len(replies) >= 2, replies

# Streamed chunks carry their choice's index; include_usage ends with a usage chunk.
chunks = list(ask(temperature=1, n=2, seed=42, stream=True, stream_options={"include_usage": True}))
texts, finishes = ["", ""], [None, None]
for ch in chunks[:-1]:
    assert ch.usage is None
    for choice in ch.choices:
        texts[choice.index] += choice.delta.content or ""
        finishes[choice.index] = choice.finish_reason or finishes[choice.index]
assert texts == [ch.message.content for ch in s1.choices], (texts, s1)
assert finishes == [ch.finish_reason for ch in s1.choices]
assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == s1.usage.total_tokens
plain = list(ask(stream=True))
assert all(getattr(ch, "usage", None) is None for ch in plain)

# stop: the reply ends before the first match, finish_reason stop; streamed, no chunk holds
# any part of it.
long = ask(max_tokens=16).choices[0].message.content
assert len(long) >= 4, long
stop = long[len(long) // 2 : len(long) // 2 + 2]
cut = long[: long.index(stop)]
for stops in (stop, [stop, "never-generated-xyzzy"]):
    r = ask(max_tokens=16, stop=stops)
    assert r.choices[0].message.content == cut and r.choices[0].finish_reason == "stop", (r, stop, long)
streamed = list(ask(max_tokens=16, stop=[stop], stream=True))
pieces = [ch.choices[0].delta.content or "" for ch in streamed if ch.choices]
assert "".join(pieces) == cut, (pieces, cut)
assert streamed[-1].choices[0].finish_reason == "stop"

# Defaults of the refused fields are accepted; anything else is a 400 naming the field.
same = ask(top_p=1, presence_penalty=0, frequency_penalty=0, logprobs=False)
assert same.choices[0].message.content == text
tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
for kw, field in [(dict(top_p=0.5), "top_p"), (dict(presence_penalty=1), "presence_penalty"),
                  (dict(frequency_penalty=0.5), "frequency_penalty"), (dict(logprobs=True), "logprobs"),
                  (dict(tools=[tool]), "tools"), (dict(n=9), "n: 9"),
                  (dict(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]), "image_url")]:
    try:
        ask(**kw)
        raise SystemExit(f"{kw} was accepted")
    except BadRequestError as e:
        assert e.status_code == 400 and field in str(e), e
print("openai-features-ok")
"#;
    super::run_python(script, port, "openai-features-ok");
}
