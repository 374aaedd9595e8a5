//! HTTP for the metrics tests: one request on its own connection, the
//! response read to its end (chunked bodies joined), and the samples of an
//! exposition looked up by series.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::{Pooler, PoolerOptions, free_port};

/// An HTTP response: status, headers (lower-case names), de-chunked body.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

pub fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = raw.windows(2).position(|w| w == b"\r\n") else { panic!("no chunk size line") };
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..end]).expect("utf8"), 16).expect("chunk size");
        raw = &raw[end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

pub fn parse_response(raw: &[u8]) -> Response {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status");
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(": ")).map(|(n, v)| (n.to_ascii_lowercase(), v.to_string())).collect();
    let rest = &raw[split + 4..];
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v == "chunked");
    let body = if chunked { dechunk(rest) } else { rest.to_vec() };
    Response { status, headers, body: String::from_utf8_lossy(&body).to_string() }
}

pub fn request(port: u16, raw: &[u8]) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    stream.write_all(raw).expect("request");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("response");
    parse_response(&answer)
}

pub fn get(port: u16, path: &str) -> Response {
    request(port, format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
}

/// The value of the sample written exactly as `series` (name and labels).
pub fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in\n{body}"))
}

/// The value of the first sample whose line starts with `prefix`.
pub fn first_sample(body: &str, prefix: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample starting {prefix} in\n{body}"))
}

pub fn scrape(port: u16) -> String {
    let r = get(port, "/metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// A pooler with the metrics port on.
pub fn metrics_pooler(extra: &str, options: PoolerOptions) -> (Pooler, u16) {
    let port = free_port();
    let pooler =
        Pooler::start(PoolerOptions { extra: format!("metrics = {port}\n{extra}{}", options.extra), ..options });
    pooler.wait_for_service("metrics");
    (pooler, port)
}
