//! The chat page in headless Chromium (Debian `chromium`, `--headless --no-sandbox`), driven
//! over the DevTools protocol: send a message and see the streamed reply, Shift+Enter does not
//! send, edit a message (later turns dropped), regenerate an answer, new conversation.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Page {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next: u64,
}

impl Page {
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        self.ws
            .send(Message::text(
                json!({"id": id, "method": method, "params": params}).to_string(),
            ))
            .unwrap();
        loop {
            let msg = self.ws.read().unwrap();
            let Ok(text) = msg.to_text() else { continue };
            let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            if v["id"] == id {
                assert!(v["error"].is_null(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluates `js` (awaiting a promise) in the page and returns its value.
    fn eval(&mut self, js: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": js, "awaitPromise": true, "returnByValue": true}),
        );
        assert!(
            r["exceptionDetails"].is_null(),
            "{js}: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Waits (up to 60 s) until `cond` is true in the page.
    fn wait_for(&mut self, cond: &str) {
        eprintln!("web: page: waiting for {cond}");
        let t = Instant::now();
        while self.eval(cond) != json!(true) {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "timed out waiting for {cond}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn launch() -> (Browser, String) {
    let profile = tempfile::tempdir().unwrap();
    let chromium = std::env::var("NANOCHAT_CHROMIUM")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "chromium".into());
    // Chromium keeps more than its profile under HOME (~/.pki, ~/.local, crash reports): it
    // gets the profile's temp dir as its HOME too, so the tests leave the real one alone.
    let mut child = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0", "about:blank"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .env("HOME", profile.path())
        .env("XDG_CONFIG_HOME", profile.path().join(".config"))
        .env("XDG_CACHE_HOME", profile.path().join(".cache"))
        .env("XDG_DATA_HOME", profile.path().join(".local/share"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start chromium ({e}): install Debian's `chromium` (scripts/setup.sh does) or set NANOCHAT_CHROMIUM"));
    let ws = crate::stderr_until(
        &mut child,
        "chromium exited before its DevTools endpoint",
        |line| {
            let url = line.strip_prefix("DevTools listening on ")?;
            Some(url.trim().to_string())
        },
    );
    (
        Browser {
            child,
            _profile: profile,
        },
        ws,
    )
}

/// The DevTools websocket of the browser's first page.
fn page_socket(browser_ws: &str) -> String {
    let port: u16 = browser_ws
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (status, body) = super::http::request(port, "GET", "/json/list", None);
    assert_eq!(status, 200, "{body}");
    let targets: Value = serde_json::from_str(&body).unwrap();
    let id = targets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "page")
        .expect("a page target")["id"]
        .as_str()
        .unwrap()
        .to_string();
    format!("ws://127.0.0.1:{port}/devtools/page/{id}")
}

const COUNT: &str = "(sel) => document.querySelectorAll(sel).length";

pub fn drive_the_page(port: u16) {
    let (_browser, ws) = launch();
    let (socket, _) = tungstenite::connect(page_socket(&ws)).unwrap();
    let mut page = Page {
        ws: socket,
        next: 0,
    };
    page.call(
        "Page.navigate",
        json!({"url": format!("http://127.0.0.1:{port}/")}),
    );
    page.wait_for("document.readyState === 'complete' && !!document.getElementById('input')");
    // Count the page's requests, and keep replies short.
    page.eval(
        "{ window.__fetches = 0; const f = window.fetch; window.fetch = (...a) => { window.__fetches++; return f(...a); };
         document.getElementById('temperature').value = '0'; true }",
    );
    let users = format!("({COUNT})('.msg.user')");
    let assistants = format!("({COUNT})('.msg.assistant')");
    let type_and_key = |text: &str, shift: bool| {
        format!(
            "{{ const i = document.getElementById('input'); i.value = {text:?};
             i.dispatchEvent(new KeyboardEvent('keydown', {{key: 'Enter', shiftKey: {shift}, bubbles: true, cancelable: true}})); true }}"
        )
    };
    // Shift+Enter is a new line, not a send.
    page.eval(&type_and_key("not yet", true));
    assert_eq!(page.eval(&users), json!(0));
    assert_eq!(page.eval("window.__fetches"), json!(0));
    // Enter sends; the reply streams into an assistant message.
    page.eval(&type_and_key("Hello there", false));
    page.wait_for(&format!(
        "window.__fetches === 1 && document.body.dataset.busy === '0' && {assistants} === 1"
    ));
    let last = "messages[messages.length - 1].content";
    let reply = page.eval(last);
    assert!(!reply.as_str().unwrap().is_empty(), "no streamed reply");
    assert!(!reply.as_str().unwrap().starts_with("Error"), "{reply}");
    assert_eq!(
        page.eval("document.getElementById('input').value"),
        json!("")
    );
    // A second turn.
    page.eval(&type_and_key("And another question", false));
    page.wait_for(&format!(
        "window.__fetches === 2 && document.body.dataset.busy === '0' && {assistants} === 2"
    ));
    assert_eq!(page.eval(&users), json!(2));
    // Edit the first user message: later turns are dropped and it is answered again.
    page.eval("document.querySelector('.msg.user').click(); true");
    page.eval("document.querySelector('.msg.user textarea').value = 'An edited question'; document.querySelector('.save-edit').click(); true");
    page.wait_for(&format!(
        "window.__fetches === 3 && document.body.dataset.busy === '0' && {assistants} === 1"
    ));
    assert_eq!(page.eval(&users), json!(1));
    assert_eq!(
        page.eval("document.querySelector('.msg.user').textContent"),
        json!("An edited question")
    );
    // Regenerate the answer: one new request, still one user and one assistant message.
    page.eval("document.querySelector('.regenerate').click(); true");
    page.wait_for(&format!(
        "window.__fetches === 4 && document.body.dataset.busy === '0' && {assistants} === 1"
    ));
    assert_eq!(page.eval(&users), json!(1));
    let again = page.eval(last);
    assert_eq!(
        page.eval("messages[messages.length - 1].role"),
        json!("assistant")
    );
    assert!(
        !again.as_str().unwrap().is_empty() && !again.as_str().unwrap().starts_with("Error"),
        "{again}"
    );
    // New conversation.
    page.eval("document.getElementById('new-chat').click(); true");
    assert_eq!(page.eval(&format!("{users} + {assistants}")), json!(0));
}
