//! A minimal HTTP/1.1 client over a raw socket: the tests need exact control (reading part of
//! a stream, then hanging up), and nothing more.

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::Value;

fn send(port: u16, method: &str, path: &str, body: Option<&str>) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = body.unwrap_or("");
    // A server may answer (and hang up) before reading all of a body it refuses.
    let _ = write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s
}

/// Status and body (de-chunked) of one request. Reads by Content-Length or to the last chunk
/// (some servers, such as Chromium's DevTools, keep the connection open).
pub fn request(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = send(port, method, path, body);
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let n = s.read(&mut buf).unwrap_or(0);
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let rest = &raw[end + 4..];
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse::<usize>().unwrap());
            let complete = match length {
                Some(len) => rest.len() >= len,
                None if head.contains("transfer-encoding: chunked") => {
                    rest.starts_with(b"0\r\n") || rest.windows(7).any(|w| w == b"\r\n0\r\n\r\n")
                }
                None => false,
            };
            if complete {
                break;
            }
        }
        if n == 0 {
            break;
        }
    }
    let text = String::from_utf8(raw).expect("the response is UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    )
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("a chunk size line");
        let n = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
}

/// The JSON of every `data:` line of an SSE body.
pub fn sse_data(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("bad SSE data {d:?}: {e}")))
        .collect()
}

/// Starts a streaming chat request and returns the open socket.
pub fn open_stream(port: u16, body: &str) -> TcpStream {
    send(port, "POST", "/chat/completions", Some(body))
}

/// Reads until `needle` has arrived.
pub fn read_until(s: &mut TcpStream, needle: &str) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended before {needle:?}");
        seen.extend_from_slice(&buf[..n]);
    }
}
