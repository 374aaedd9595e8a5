//! Small helpers for tests: polling until a condition holds, reading a raw
//! connection until the peer closes it, the SQLSTATE and message of a refusal
//! (from raw protocol bytes or a `postgres` crate error), and /proc lookups:
//! a process's children, processes by command line, and which process holds
//! a TCP socket with a given local port.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Pids whose parent is `pid`, from /proc.
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        // Fields after the command name, which is in parentheses.
        let Some(rest) = stat.rsplit(')').next() else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(pid) && fields.first() != Some(&"Z") {
            out.push(child);
        }
    }
    out
}

/// Processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()) == Some("Z");
        if !zombie && String::from_utf8_lossy(&cmdline).contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// Poll `check` until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Read whatever the peer sends until it closes or `timeout` passes.
pub fn read_until_close(stream: &mut TcpStream, timeout: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(timeout)).expect("timeout");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// The SQLSTATE of the first ErrorResponse in `bytes`, if any.
pub fn sqlstate_in(bytes: &[u8]) -> Option<String> {
    let mut i = 0;
    while i + 5 <= bytes.len() {
        let tag = bytes[i];
        let len = u32::from_be_bytes([bytes[i + 1], bytes[i + 2], bytes[i + 3], bytes[i + 4]]) as usize;
        let end = (i + 1 + len).min(bytes.len());
        if tag == b'E' {
            let body = &bytes[i + 5..end];
            let mut j = 0;
            while j < body.len() && body[j] != 0 {
                let kind = body[j];
                let rest = &body[j + 1..];
                let nul = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                if kind == b'C' {
                    return Some(String::from_utf8_lossy(&rest[..nul]).into_owned());
                }
                j += 1 + nul + 1;
            }
            return None;
        }
        if len < 4 {
            return None;
        }
        i += 1 + len;
    }
    None
}

/// The SQLSTATE of a postgres crate error.
pub fn code_of(err: &postgres::Error) -> Option<String> {
    err.code().map(|c| c.code().to_string())
}

/// The server's message of a postgres crate error (or the error itself).
pub fn message_of(err: &postgres::Error) -> String {
    err.as_db_error().map(|e| e.message().to_string()).unwrap_or_else(|| err.to_string())
}

/// Connect and expect a refusal; returns the error.
pub fn connect_err(url: &str) -> postgres::Error {
    match postgres::Client::connect(url, postgres::NoTls) {
        Ok(_) => panic!("connection with '{url}' was expected to fail"),
        Err(e) => e,
    }
}

/// Socket inodes of `/proc/net/tcp{,6}` entries whose local port is `port`.
pub(super) fn socket_inodes_with_local_port(port: u16) -> Vec<u64> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(local) = fields.get(1) else { continue };
            let Some(hex_port) = local.rsplit(':').next() else { continue };
            if u16::from_str_radix(hex_port, 16).ok() == Some(port)
                && let Some(inode) = fields.get(9).and_then(|i| i.parse::<u64>().ok())
            {
                inodes.push(inode);
            }
        }
    }
    inodes
}

/// Whether process `pid` has an open socket with one of these inodes.
pub(super) fn holds_socket(pid: i32, inodes: &[u64]) -> bool {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    entries.flatten().any(|e| {
        std::fs::read_link(e.path())
            .ok()
            .and_then(|t| t.to_str().and_then(|t| t.strip_prefix("socket:[")?.strip_suffix(']')?.parse::<u64>().ok()))
            .is_some_and(|inode| inodes.contains(&inode))
    })
}

/// The first value of the first row a simple query returns.
pub fn first_value(client: &mut postgres::Client, sql: &str) -> String {
    client
        .simple_query(sql)
        .expect(sql)
        .into_iter()
        .find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .expect("a row")
}

/// Run pgbench against the pooler on `port` as `user` on the test database.
pub fn pgbench(port: u16, user: &str, password: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(super::postgres().bin("pgbench"));
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", user]).args(args).arg(super::DATABASE);
    if let Some(password) = password {
        cmd.env("PGPASSWORD", password);
    }
    cmd.output().expect("pgbench")
}

/// ESTABLISHED TCP connections in /proc/net/tcp{,6}: (local port, remote
/// port, socket inode).
fn tcp_connections() -> Vec<(u16, u16, u64)> {
    let port_of = |addr: &str| addr.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "01" {
                continue;
            }
            if let (Some(local), Some(remote), Ok(inode)) = (port_of(f[1]), port_of(f[2]), f[9].parse::<u64>()) {
                out.push((local, remote, inode));
            }
        }
    }
    out
}

/// Local ports of the client ends of TCP connections to `port`.
/// The PostgreSQL backend serving a session.
pub fn backend_pid(client: &mut postgres::Client) -> i32 {
    first_value(client, "SELECT pg_backend_pid()").parse().expect("pid")
}

pub fn client_ports_of(port: u16) -> Vec<u16> {
    tcp_connections().into_iter().filter(|&(_, remote, _)| remote == port).map(|(local, _, _)| local).collect()
}

/// Which of `pids` holds the server end (local `port`) of the connection
/// from client port `client_port`.
pub fn holder_of_connection(pids: &[i32], port: u16, client_port: u16) -> Option<i32> {
    let inodes: Vec<u64> = tcp_connections()
        .into_iter()
        .filter(|&(local, remote, _)| local == port && remote == client_port)
        .map(|(_, _, inode)| inode)
        .collect();
    pids.iter().copied().find(|&pid| holds_socket(pid, &inodes))
}

/// A process's command line as `ps` shows it (its title, once set).
pub fn cmdline(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw).trim_end_matches('\0').replace('\0', " ")
}
