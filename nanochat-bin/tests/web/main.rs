//! `nanochat chat-web` against a real server on loopback: the SSE format, every limit,
//! malformed bodies, health and stats, 64 concurrent streams on 2 workers, a client that
//! disconnects freeing its worker, request numbers checked as sent on both endpoints, the
//! OpenAI endpoint through the `openai` Python client, and the chat page driven in headless
//! Chromium.

mod browser;
#[path = "../common/mod.rs"]
mod common;
mod http;
mod openai;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use http::{request, sse_data};

/// A tiny model (depth 2, a 4096-token context so one reply can run for a second) and its
/// tokenizer, trained under `root`.
fn train_tiny(root: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_nanochat"))
            .env("NANOCHAT_BASE_DIR", root)
            .env_remove("NANOCHAT_MODEL_DIR")
            .env_remove("NANOCHAT_TOKENIZER_PATH")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(common::TOK_500);
    run(&common::args(&[
        &["base-train", "--depth", "2", "--seq-len", "4096"],
        common::ONE_STEP,
        &["--quiet"],
    ]));
}

/// A running `nanochat chat-web`, killed when dropped.
pub struct Server {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `chat-web -i base -n workers -p 0` and reads the port it prints.
fn start(root: &std::path::Path, workers: usize) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nanochat"))
        .env("NANOCHAT_BASE_DIR", root)
        .env_remove("NANOCHAT_MODEL_DIR")
        .env_remove("NANOCHAT_TOKENIZER_PATH")
        .env_remove("NANOCHAT_DATA_DIR")
        .args([
            "chat-web",
            "-i",
            "base",
            "-n",
            &workers.to_string(),
            "-p",
            "0",
            "-m",
            "16",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let port: u16 = stderr_until(&mut child, "chat-web exited before listening", |line| {
        let addr = line.split("http://").nth(1)?;
        Some(addr.split([':', ' ']).nth(1).unwrap().parse().unwrap())
    });
    Server { child, port }
}

/// Reads `child`'s stderr line by line until `find` returns a value (panics with `exited` when
/// the child closes it first), then keeps draining it on a thread so the child never blocks
/// on a full pipe. Shared by the server and the browser.
fn stderr_until<T>(child: &mut Child, exited: &str, mut find: impl FnMut(&str) -> Option<T>) -> T {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let found = loop {
        let line = lines.next().expect(exited).unwrap();
        if let Some(v) = find(&line) {
            break v;
        }
    };
    std::thread::spawn(move || for _ in lines {});
    found
}

fn chat_body(text: &str, extra: Value) -> String {
    let mut body = json!({ "messages": [{ "role": "user", "content": text }] });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body.to_string()
}

fn stats(port: u16) -> Value {
    let (status, body) = request(port, "GET", "/stats", None);
    assert_eq!(status, 200);
    serde_json::from_str(&body).unwrap()
}

/// `NANOCHAT_BASE_DIR=<a nanochat base dir> nanochat chat-web` serves nanochat's own files
/// (`model_*.pt`, `tokenizer.pkl`) with no conversion: greedy replies are nanochat's.
#[test]
fn chat_web_serves_a_nanochat_base_dir_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/reference/head/native_head");
    let base = tmp.path().join("native_head");
    assert!(Command::new("cp")
        .arg("-r")
        .arg(&src)
        .arg(&base)
        .status()
        .unwrap()
        .success());
    assert!(Command::new("chmod")
        .args(["-R", "u+w"])
        .arg(&base)
        .status()
        .unwrap()
        .success());
    let want: Value =
        serde_json::from_slice(&std::fs::read(base.join("expected.json")).unwrap()).unwrap();
    let server = start(&base, 1);
    let body = chat_body(
        "What is free software?",
        json!({"temperature": 0.0, "max_tokens": 16}),
    );
    let (status, resp) = request(server.port, "POST", "/chat/completions", Some(&body));
    assert_eq!(status, 200, "{resp}");
    let text: String = sse_data(&resp)
        .iter()
        .filter_map(|e| e["token"].as_str().map(str::to_string))
        .collect();
    let full = want["greedy_chat"]["text"].as_str().unwrap();
    assert!(
        text.len() >= 10 && full.starts_with(&text),
        "{text:?} vs {full:?}"
    );
}

#[test]
fn chat_web_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    train_tiny(tmp.path());
    let server = start(tmp.path(), 2);
    let port = server.port;

    // Health and stats.
    let (status, body) = request(port, "GET", "/health", None);
    assert_eq!(status, 200);
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        health,
        json!({"status": "ok", "ready": true, "num_gpus": 2, "available_workers": 2})
    );
    let s = stats(port);
    assert_eq!(
        (
            s["total_workers"].clone(),
            s["available_workers"].clone(),
            s["busy_workers"].clone()
        ),
        (json!(2), json!(2), json!(0))
    );
    assert_eq!(
        s["workers"],
        json!([{"gpu_id": 0, "device": "cpu"}, {"gpu_id": 1, "device": "cpu"}])
    );

    // The SSE format: token events naming the worker, then done.
    let (status, body) = request(
        port,
        "POST",
        "/chat/completions",
        Some(&chat_body(
            "Hello",
            json!({"max_tokens": 6, "temperature": 0.0}),
        )),
    );
    assert_eq!(status, 200, "{body}");
    let events = sse_data(&body);
    assert_eq!(events.last().unwrap(), &json!({"done": true}), "{body}");
    assert!(events.len() >= 2, "{body}");
    for e in &events[..events.len() - 1] {
        assert!(
            e["token"].is_string() && (e["gpu"] == 0 || e["gpu"] == 1),
            "{e}"
        );
        assert!(
            !e["token"].as_str().unwrap().contains('\u{FFFD}'),
            "a split character: {e}"
        );
    }

    // Every limit is a 400 whose detail names it.
    let msg = |role: &str, n: usize| json!({"role": role, "content": "x".repeat(n)});
    let limits: Vec<(Value, &str)> = vec![
        (json!({"messages": []}), "at least one message"),
        (
            json!({"messages": vec![msg("user", 1); 501]}),
            "limit of 500",
        ),
        (json!({"messages": [msg("user", 8001)]}), "limit of 8000"),
        (
            json!({"messages": vec![msg("user", 7000); 5]}),
            "limit of 32000",
        ),
        (json!({"messages": [msg("system", 3)]}), "role"),
        (json!({"messages": [msg("tool", 3)]}), "role"),
        (
            json!({"messages": [msg("user", 3)], "temperature": 2.1}),
            "temperature",
        ),
        (
            json!({"messages": [msg("user", 3)], "temperature": -1}),
            "temperature",
        ),
        (json!({"messages": [msg("user", 3)], "top_k": 0}), "top_k"),
        (json!({"messages": [msg("user", 3)], "top_k": 201}), "top_k"),
        (
            json!({"messages": [msg("user", 3)], "max_tokens": 0}),
            "max_tokens",
        ),
        (
            json!({"messages": [msg("user", 3)], "max_tokens": 4097}),
            "max_tokens",
        ),
    ];
    // A body far over every limit (3 MB) is a 400 naming the character limit, not a 413.
    let huge = json!({"messages": [{"role": "user", "content": "x".repeat(3 << 20)}]});
    let mut limits = limits;
    limits.push((huge, "limit of 32000"));
    for (body, needle) in limits {
        let (status, resp) = request(port, "POST", "/chat/completions", Some(&body.to_string()));
        assert_eq!(status, 400, "{needle}: {resp}");
        let detail = serde_json::from_str::<Value>(&resp).unwrap()["detail"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(detail.contains(needle), "{detail} should name {needle}");
    }
    // Malformed JSON and wrong types: 422 with a detail.
    for body in [
        "{\"messages\": [",
        "not json",
        "{\"messages\": \"hi\"}",
        "{\"messages\": [{\"role\": \"user\", \"content\": 5}]}",
        "{}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"top_k\": \"many\"}",
    ] {
        let (status, resp) = request(port, "POST", "/chat/completions", Some(body));
        assert_eq!(status, 422, "{body}: {resp}");
        assert!(
            serde_json::from_str::<Value>(&resp).unwrap()["detail"].is_string(),
            "{resp}"
        );
    }

    // The page.
    let (status, page) = request(port, "GET", "/", None);
    assert_eq!(status, 200);
    assert!(page.contains("<title>nanochat</title>") && page.contains("/chat/completions"));

    eprintln!("web: API checks passed; 64 concurrent streams");
    concurrent_streams_all_complete(port);
    eprintln!("web: client disconnect");
    disconnect_frees_the_worker(port);
    eprintln!("web: request numbers on both endpoints");
    openai::numbers_are_checked_as_sent(port);
    eprintln!("web: openai client");
    openai_python_client(port);
    eprintln!("web: openai client: list content, n, stop, seed, usage, models, refusals");
    openai::openai_client_features(port);
    eprintln!("web: chat page in chromium");
    browser::drive_the_page(port);
}

/// 64 streams at once on 2 workers: each waits for a free worker; all complete, none dropped.
fn concurrent_streams_all_complete(port: u16) {
    let threads: Vec<_> = (0..64)
        .map(|i| {
            std::thread::spawn(move || {
                let body = chat_body(&format!("Request number {i}"), json!({"max_tokens": 8}));
                request(port, "POST", "/chat/completions", Some(&body))
            })
        })
        .collect();
    let mut per_worker = [0usize; 2];
    for t in threads {
        let (status, body) = t.join().unwrap();
        assert_eq!(status, 200, "{body}");
        let events = sse_data(&body);
        assert_eq!(events.last().unwrap(), &json!({"done": true}), "{body}");
        if let Some(g) = events.iter().find_map(|e| e["gpu"].as_u64()) {
            per_worker[g as usize] += 1;
        }
    }
    assert!(
        per_worker[0] > 0 && per_worker[1] > 0,
        "both workers served: {per_worker:?}"
    );
    // A worker goes back to the pool just after its stream's last event is sent, so a client
    // can read that event first: both are free again within moments.
    let t = Instant::now();
    while stats(port)["available_workers"] != 2 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "a worker is still busy {:?} after every reply ended: {}",
            t.elapsed(),
            stats(port)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A client that leaves after its first token gets its worker back at once: far sooner than
/// the same reply takes to generate for a client that stays (connected, not reading).
fn disconnect_frees_the_worker(port: u16) {
    let body = chat_body(
        "Tell me a long story",
        json!({"max_tokens": 4000, "temperature": 0.0}),
    );
    let wait_free = |limit: Duration| {
        let t = Instant::now();
        while stats(port)["available_workers"] != 2 {
            assert!(
                t.elapsed() < limit,
                "the worker is still busy after {:?}",
                t.elapsed()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        t.elapsed()
    };
    let mut stays = http::open_stream(port, &body);
    http::read_until(&mut stays, "data: ");
    assert_eq!(stats(port)["busy_workers"], 1);
    let generation = wait_free(Duration::from_secs(120));
    drop(stays);
    assert!(
        generation > Duration::from_millis(200),
        "the reply is too short to test a disconnect: {generation:?}"
    );
    let mut leaves = http::open_stream(port, &body);
    http::read_until(&mut leaves, "data: ");
    assert_eq!(stats(port)["busy_workers"], 1);
    drop(leaves);
    let freed = wait_free(generation / 4);
    eprintln!("web: the reply takes {generation:?} to generate; the worker was free {freed:?} after its client left");
}

/// The OpenAI Python client (PyPI `openai`, in scripts/setup.sh's venv) against
/// /v1/chat/completions: a system message, non-streaming and streaming.
fn openai_python_client(port: u16) {
    let script = r#"
import sys
from openai import OpenAI
c = OpenAI(base_url=f"http://127.0.0.1:{sys.argv[1]}/v1", api_key="unused")
msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
r = c.chat.completions.create(model="nanochat", messages=msgs, max_tokens=5, temperature=0)
assert r.choices[0].message.role == "assistant", r
assert r.choices[0].finish_reason in ("stop", "length"), r
assert r.usage.completion_tokens <= 5, r
text = r.choices[0].message.content
chunks = list(c.chat.completions.create(model="nanochat", messages=msgs, max_tokens=5, temperature=0, stream=True))
streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks)
assert streamed == text, (streamed, text)
assert chunks[-1].choices[0].finish_reason in ("stop", "length")
try:
    c.chat.completions.create(model="nanochat", messages=[], max_tokens=5)
    raise SystemExit("an empty conversation was accepted")
except Exception as e:
    assert "400" in str(e) or getattr(e, "status_code", None) == 400, e
print("openai-ok", repr(text))
"#;
    run_python(script, port, "openai-ok");
}

/// Runs the Python `script` with `port` as its argument under `NANOCHAT_PYTHON`, else
/// target/pyenv's interpreter (scripts/setup.sh installs the `openai` client there), and
/// asserts that it succeeded and printed `ok` (else panics with its output).
fn run_python(script: &str, port: u16, ok: &str) {
    let python = nanochat_core::paths::env_string("NANOCHAT_PYTHON").unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../target/pyenv/bin/python").into()
    });
    let out = Command::new(&python).args(["-c", script, &port.to_string()]).output().unwrap_or_else(|e| {
        panic!("cannot run {python} ({e}): run scripts/setup.sh (it creates target/pyenv with the openai client) or set NANOCHAT_PYTHON")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(ok),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
