//! The metrics server's HTTP/1.1 without I/O: the request head parsed with
//! httparse within size caps, the route it asks for, and responses with
//! chunked bodies. One request per connection, then the server closes it
//! (`Connection: close`), as upstream.

/// Largest request head read (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// Most headers accepted in a request.
pub const MAX_HEADERS: usize = 32;
/// Body bytes per chunk.
const CHUNK: usize = 16 * 1024;

/// What the bytes read so far hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole head yet (and within [`MAX_HEAD`]).
    Partial,
    Request {
        method: String,
        path: String,
    },
    /// Not HTTP, too large, or too many headers.
    Bad(&'static str),
}

/// Parse the request head at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Complete(_)) => match (request.method, request.path) {
            (Some(method), Some(path)) => Parsed::Request { method: method.to_string(), path: path.to_string() },
            _ => Parsed::Bad("incomplete request line"),
        },
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => Parsed::Bad("request head too large"),
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => Parsed::Bad("too many headers"),
        Err(_) => Parsed::Bad("not an HTTP request"),
    }
}

/// What a request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /` or `/index.html`: the HTML overview.
    Index,
    /// `GET /metrics`: the exposition.
    Metrics,
    /// Any other path: 403, as upstream.
    Forbidden,
    /// Any other method: 400, as upstream.
    BadRequest,
}

/// Route a request (a query string is ignored).
pub fn route(method: &str, path: &str) -> Route {
    if method != "GET" {
        return Route::BadRequest;
    }
    match path.split('?').next().unwrap_or_default() {
        "/" | "/index.html" => Route::Index,
        "/metrics" => Route::Metrics,
        _ => Route::Forbidden,
    }
}

/// Whether the first bytes of a connection are a TLS handshake record,
/// which is how a TLS port tells a plain-HTTP request apart.
pub fn looks_like_tls(first: &[u8]) -> bool {
    first.first() == Some(&0x16)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        400 => "Bad Request",
        403 => "Forbidden",
        408 => "Request Timeout",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A whole response with a chunked body.
pub fn response(status: u16, content_type: &str, date: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nDate: {date}\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n",
        reason(status)
    )
    .into_bytes();
    out.reserve(body.len() + body.len() / CHUNK * 10 + 16);
    for piece in body.chunks(CHUNK) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// A response without a body (errors, redirects); `location` for a 301.
pub fn bodyless(status: u16, date: &str, location: Option<&str>) -> Vec<u8> {
    let location = location.map(|l| format!("Location: {l}\r\n")).unwrap_or_default();
    format!(
        "HTTP/1.1 {status} {}\r\nDate: {date}\r\n{location}Content-Length: 0\r\nConnection: close\r\n\r\n",
        reason(status)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_parsed_within_caps() {
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), Parsed::Partial);
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Parsed::Request { method: "GET".into(), path: "/metrics".into() }
        );
        assert_eq!(parse(b"\x16\x03\x01\x02\x00"), Parsed::Bad("not an HTTP request"));
        let big = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(parse(big.as_bytes()), Parsed::Bad("request head too large"));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("H{i}: v\r\n")).collect();
        assert_eq!(parse(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()), Parsed::Bad("too many headers"));
    }

    #[test]
    fn routes_follow_upstream() {
        assert_eq!(route("GET", "/"), Route::Index);
        assert_eq!(route("GET", "/index.html"), Route::Index);
        assert_eq!(route("GET", "/metrics?x=1"), Route::Metrics);
        assert_eq!(route("GET", "/secret"), Route::Forbidden);
        assert_eq!(route("POST", "/metrics"), Route::BadRequest);
        assert!(looks_like_tls(&[0x16, 3, 1]) && !looks_like_tls(b"GET"));
    }

    #[test]
    fn bodies_are_chunked() {
        let body = vec![b'x'; CHUNK + 3];
        let r = response(200, "text/plain", "Thu Dec  3 09:00:00 2026", &body);
        let text = String::from_utf8_lossy(&r);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n") && text.contains("Transfer-Encoding: chunked\r\n"));
        assert!(text.contains("\r\n\r\n4000\r\n") && text.contains("\r\n3\r\nxxx\r\n0\r\n\r\n"), "{text}");
        let moved = String::from_utf8_lossy(&bodyless(301, "d", Some("https://localhost:9/metrics"))).to_string();
        assert!(moved.starts_with("HTTP/1.1 301 Moved Permanently\r\n") && moved.contains("Location: https://"));
    }
}
