//! The metrics actor (`metrics = PORT`): a long-lived forked process that
//! owns the metrics port's listeners (bound by the daemon at start) and
//! answers Prometheus scrapes, each on a thread of its own so that several
//! scrapes, a slow client or a trickling one never hold up another, the
//! pings or a reload. What a scrape reports is read from shared memory
//! (`pgagroal::metrics::report`), so the actor holds nothing a restart
//! would lose.
//!
//! With `metrics_cert_file` and `metrics_key_file` the port speaks TLS; a
//! plain-HTTP request on it gets a 301 to `https://localhost:PORT/...`, as
//! upstream.

use crate::net::{IoFail, Sock, TlsFail};
use crate::port_actor::{self, Places};
use pgagroal::ipc::Mailbox;
use pgagroal::metrics::cache::Cache;
use pgagroal::metrics::http::{self, Parsed, Route};
use pgagroal::metrics::report::{self, Snapshot};
use pgagroal::msg::metrics::{FromMetrics, MetricsConfig, ToMetrics};
use pgagroal::shmem::Region;
use slog::{debug, info, o, warn};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The actor's end of its mailbox.
pub type MetricsMailbox = Mailbox<FromMetrics, ToMetrics>;

/// Scrapes served at once; more get 503.
const MAX_SCRAPES: usize = 16;
/// A scraper must send its request head within this, and take the answer
/// within it again: a trickling client is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the actor runs with.
pub struct Context<'a> {
    pub settings: MetricsConfig,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The metrics port's listening sockets.
    pub listeners: Vec<OwnedFd>,
    pub mailbox: MetricsMailbox,
    pub region: &'a Region,
    pub pid: i32,
}

/// What every scrape thread shares.
struct Shared<'a> {
    settings: RwLock<Arc<MetricsConfig>>,
    cache: Mutex<Cache>,
    region: &'a Region,
    tls: Option<Arc<rustls::ServerConfig>>,
    os: (String, u32, u32, u32),
    log: slog::Logger,
}

/// Serve scrapes until told to stop; the return value is the exit status.
pub fn run(ctx: Context<'_>) -> i32 {
    let log = pgagroal::log::fresh_root().new(o!("actor" => "metrics", "pid" => ctx.pid));
    pgagroal::proctitle::set(ctx.settings.config.main.update_process_title, "metrics");
    let Some(listeners) = port_actor::start(ctx.listeners, &ctx.mailbox) else {
        warn!(log, "cannot make the metrics listeners or the mailbox non-blocking");
        return 1;
    };
    info!(log, "metrics started"; "port" => ctx.settings.config.main.metrics, "tls" => ctx.tls.is_some());
    let shared = Shared {
        settings: RwLock::new(Arc::new(ctx.settings)),
        cache: Mutex::new(Cache::default()),
        region: ctx.region,
        tls: ctx.tls,
        os: os_info(),
        log: log.clone(),
    };
    let places = Places::new(MAX_SCRAPES);
    std::thread::scope(|scope| {
        let shared = &shared;
        let on_reload = |new: MetricsConfig| {
            pgagroal::log::set_level(new.config.main.log_level);
            if let Ok(mut settings) = shared.settings.write() {
                *settings = Arc::new(new);
            }
            if let Ok(mut cache) = shared.cache.lock() {
                *cache = Cache::default();
            }
            info!(shared.log, "configuration reloaded");
        };
        let on_conn = |stream: std::net::TcpStream, _| {
            let Some(place) = places.take() else { return refuse_busy(stream) };
            let spawned = std::thread::Builder::new().name("scrape".into()).spawn_scoped(scope, move || {
                let _place = place;
                serve(OwnedFd::from(stream), shared);
            });
            if let Err(e) = spawned {
                warn!(shared.log, "cannot start a thread for a scrape"; "error" => %e);
            }
        };
        port_actor::serve(&ctx.mailbox, &listeners, &log, on_reload, on_conn);
        drop(listeners);
        debug!(log, "metrics stops");
    });
    0
}

/// `HTTP 503` without waiting: every place is taken.
fn refuse_busy(stream: std::net::TcpStream) {
    use std::io::Write;
    let _ = stream.set_nonblocking(true);
    let _ = (&stream).write(&http::bodyless(503, &date(), None));
}

/// `Date:` as upstream writes it (ctime's layout, local time).
fn date() -> String {
    pgagroal::sys::format_local_time("%a %b %e %H:%M:%S %Y", pgagroal::sys::now_secs())
}

/// The operating system's name and kernel version, for `pgagroal_os_info`.
fn os_info() -> (String, u32, u32, u32) {
    // SAFETY: utsname is plain data; uname fills it with NUL-terminated strings.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return ("Linux".into(), 0, 0, 0);
    }
    let text = |field: &[libc::c_char]| {
        let bytes: Vec<u8> = field.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let release = text(&u.release);
    let mut numbers =
        release.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap_or(0));
    let mut next = || numbers.next().unwrap_or(0);
    (text(&u.sysname), next(), next(), next())
}

/// Wait until the first byte of a connection is there and return it
/// without consuming it (a TLS port tells TLS from plain HTTP by it).
fn peek_first(fd: &OwnedFd, deadline: Instant) -> Option<u8> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let mut fds = [libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1);
        match crate::net::poll(&mut fds, ms) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
        let mut byte = [0u8; 1];
        // SAFETY: byte is a valid 1-byte buffer; MSG_PEEK leaves the byte queued.
        let n = unsafe { libc::recv(fd.as_raw_fd(), byte.as_mut_ptr().cast(), 1, libc::MSG_PEEK) };
        return (n == 1).then_some(byte[0]);
    }
}

/// One scrape: the request head, then the answer; the connection closes.
fn serve(fd: OwnedFd, shared: &Shared<'_>) {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let settings = match shared.settings.read() {
        Ok(s) => s.clone(),
        Err(_) => return,
    };
    let first = peek_first(&fd, deadline);
    let Ok(sock) = Sock::new(fd) else { return };
    let mut plain_on_tls = false;
    let sock = match (&shared.tls, first) {
        (Some(config), Some(byte)) if http::looks_like_tls(&[byte]) => {
            match sock.accept_tls(config.clone(), deadline) {
                Ok(tls) => tls,
                Err(TlsFail::Io(IoFail::Timeout)) => return,
                Err(e) => {
                    debug!(shared.log, "TLS handshake with a scraper failed"; "error" => %e);
                    return;
                }
            }
        }
        (Some(_), _) => {
            plain_on_tls = true;
            sock
        }
        (None, _) => sock,
    };
    let mut buf = Vec::with_capacity(1024);
    let (method, path) = loop {
        match http::parse(&buf) {
            Parsed::Request { method, path } => break (method, path),
            Parsed::Partial => {}
            Parsed::Bad(why) => {
                debug!(shared.log, "bad metrics request"; "error" => why);
                let _ = sock.write_all(&http::bodyless(400, &date(), None), Some(deadline));
                sock.shutdown();
                return;
            }
        }
        match sock.read_some(&mut buf, Some(deadline)) {
            Ok(_) => {}
            Err(IoFail::Timeout) => {
                let _ = sock.write_all(&http::bodyless(408, &date(), None), Some(Instant::now() + REQUEST_TIMEOUT));
                sock.shutdown();
                return;
            }
            Err(_) => return,
        }
    };
    let answer = if plain_on_tls {
        let location = format!("https://localhost:{}{path}", settings.config.main.metrics);
        http::bodyless(301, &date(), Some(&location))
    } else {
        match http::route(&method, &path) {
            Route::Index => http::response(200, "text/html; charset=utf-8", &date(), report::index_html().as_bytes()),
            Route::Metrics => {
                let body = exposition(shared, &settings);
                http::response(200, "text/plain; version=0.0.3; charset=utf-8", &date(), body.as_bytes())
            }
            Route::Forbidden => http::bodyless(403, &date(), None),
            Route::BadRequest => http::bodyless(400, &date(), None),
        }
    };
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let (first, rest) = answer.split_at(answer.len() / 2);
    if sock.write_all(first, Some(deadline)).is_ok() {
        pgagroal::fail_point!("metrics-mid-response");
        let _ = sock.write_all(rest, Some(deadline));
    }
    sock.shutdown();
}

/// The exposition, from the cache while it is fresh.
fn exposition(shared: &Shared<'_>, settings: &MetricsConfig) -> String {
    let main = &settings.config.main;
    let now = Instant::now();
    if let Ok(cache) = shared.cache.lock()
        && let Some(body) = cache.get(now, main.metrics_cache_max_age)
    {
        return body.to_string();
    }
    let snapshot = Snapshot::collect(shared.region, &settings.config, &settings.limits, shared.os.clone());
    let body = report::render(&snapshot);
    if let Ok(mut cache) = shared.cache.lock() {
        cache.put(now, &body, main.metrics_cache_max_age, main.metrics_cache_max_size);
    }
    body
}
