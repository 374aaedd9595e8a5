//! The management protocol spoken between `pgagroal-cli` and the daemon over
//! `<unix_socket_dir>/.s.pgagroal`, as pgagroal 2.x: one request and one
//! reply per connection, each framed as `u8 compression, u8 encryption,
//! u32 length (big-endian), JSON`. Documents are objects with `Header`,
//! `Request`, and in replies `Outcome` and `Response`; keys are sorted.
//!
//! - this file: framing, command ids, request and reply documents, the
//!   `status` response.
//! - [`command`]: the CLI's words to a request.
//! - [`status`]: `status` and `status details`.
//! - [`conf`]: `conf ls`, `conf get`, `conf set`, `conf alias`.
//! - [`render`]: the CLI's text and JSON output.
//! - [`remote`]: the management port's login and relay decisions, and the
//!   CLI's side of that login.

pub mod command;
pub mod conf;
pub mod remote;
pub mod render;
pub mod status;

pub use status::{ServerStatus, status_response};

use serde_json::{Map, Value, json};

/// Largest JSON document accepted on the management socket.
pub const MAX_DOCUMENT: usize = 1 << 20;
/// Frame header: compression, encryption, length.
pub const FRAME_HEADER: usize = 6;

/// Management command ids (pgagroal's numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    CancelShutdown = 1,
    ConfigLs = 2,
    ConfigGet = 3,
    ConfigSet = 4,
    StatusDetails = 5,
    DisableDb = 6,
    EnableDb = 7,
    Flush = 8,
    GetPassword = 9,
    Gracefully = 10,
    Ping = 11,
    Reload = 12,
    Clear = 13,
    ClearServer = 14,
    Shutdown = 15,
    Status = 16,
    SwitchTo = 17,
    ConfigAlias = 18,
    /// `pgagroal-admin` commands: they never travel to the daemon, but their
    /// output carries the same envelope.
    MasterKey = 19,
    AddUser = 20,
    UpdateUser = 21,
    RemoveUser = 22,
    ListUsers = 23,
}

impl Command {
    pub fn from_id(id: i64) -> Option<Command> {
        use Command::*;
        [
            CancelShutdown,
            ConfigLs,
            ConfigGet,
            ConfigSet,
            StatusDetails,
            DisableDb,
            EnableDb,
            Flush,
            GetPassword,
            Gracefully,
            Ping,
            Reload,
            Clear,
            ClearServer,
            Shutdown,
            Status,
            SwitchTo,
            ConfigAlias,
            MasterKey,
            AddUser,
            UpdateUser,
            RemoveUser,
            ListUsers,
        ]
        .into_iter()
        .find(|c| *c as i64 == id)
    }

    /// The name the CLI prints in `Header.Command`.
    pub fn name(self) -> &'static str {
        use Command::*;
        match self {
            CancelShutdown => "cancel-shutdown",
            ConfigLs => "conf-ls",
            ConfigGet => "conf-get",
            ConfigSet => "conf-set",
            StatusDetails => "status-details",
            DisableDb => "disable-db",
            EnableDb => "enable-db",
            Flush => "flush",
            GetPassword => "get-password",
            Gracefully => "shutdown-gracefully",
            Ping => "ping",
            Reload => "reload",
            Clear => "clear",
            ClearServer => "clear-server",
            Shutdown => "shutdown",
            Status => "status",
            SwitchTo => "switch-to",
            ConfigAlias => "conf-alias",
            MasterKey => "master-key",
            AddUser => "user add",
            UpdateUser => "user edit",
            RemoveUser => "user del",
            ListUsers => "user ls",
        }
    }
}

/// Output format requested by the CLI (`Header.Output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text = 0,
    Json = 1,
    Raw = 2,
}

/// Error codes of `Outcome.Error`.
pub mod error_code {
    pub const BAD_PAYLOAD: i64 = 1;
    pub const UNKNOWN_COMMAND: i64 = 2;
    /// `conf reload` found a file it cannot use (this pooler's own code:
    /// upstream reports no reload failures). The reason is in
    /// `Response.Error`; the running configuration is kept.
    pub const CONF_RELOAD_ERROR: i64 = 1100;
    /// `conf reload` arrived on the management port: it is accepted on the
    /// local socket only (this pooler's own code).
    pub const CONF_RELOAD_LOCAL_ONLY: i64 = 1101;
    /// `conf get` could not be answered (upstream's code).
    pub const CONF_GET_ERROR: i64 = 902;
    /// `conf set`: the key or the value is not valid (upstream's code).
    pub const CONF_SET_ERROR: i64 = 1002;
    /// `conf set` without `ConfigKey` or `ConfigValue` (upstream's code).
    pub const CONF_SET_NOCONFIG_KEY_OR_VALUE: i64 = 1004;
    /// `switch-to` named no configured server (upstream's code).
    pub const SWITCH_TO_FAILED: i64 = 1300;
    /// `clear server` named no configured server (this pooler's own code).
    pub const CLEAR_SERVER_ERROR: i64 = 1400;
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MgmtError {
    #[error("management frame declares {0} bytes, more than {MAX_DOCUMENT}")]
    TooLarge(u32),
    #[error("management frame is empty")]
    Empty,
    #[error("compressed or encrypted management frames are not supported (compression {0}, encryption {1})")]
    Unsupported(u8, u8),
    #[error("management document is not valid JSON: {0}")]
    Json(String),
}

/// Frame a document.
pub fn encode_frame(document: &Value) -> Vec<u8> {
    let body = document.to_string();
    let mut out = Vec::with_capacity(FRAME_HEADER + body.len());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body.as_bytes());
    out
}

/// Decode the frame at the start of `buf`; `Ok(None)` until it is complete.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Value, usize)>, MgmtError> {
    let Some(header) = buf.get(..FRAME_HEADER) else { return Ok(None) };
    let declared = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
    if declared == 0 {
        return Err(MgmtError::Empty);
    }
    if declared as usize > MAX_DOCUMENT {
        return Err(MgmtError::TooLarge(declared));
    }
    if header[0] != 0 || header[1] != 0 {
        return Err(MgmtError::Unsupported(header[0], header[1]));
    }
    let end = FRAME_HEADER + declared as usize;
    let Some(body) = buf.get(FRAME_HEADER..end) else { return Ok(None) };
    let value = serde_json::from_slice(body).map_err(|e| MgmtError::Json(e.to_string()))?;
    Ok(Some((value, end)))
}

/// Send `request` on a connected stream and read one reply (blocking: the
/// caller sets the stream's timeouts). The error says what went wrong.
pub fn exchange<S: std::io::Read + std::io::Write>(stream: &mut S, request: &Value) -> Result<Value, String> {
    stream.write_all(&encode_frame(request)).map_err(|e| format!("cannot send the request: {e}"))?;
    stream.flush().map_err(|e| format!("cannot send the request: {e}"))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        if let Some((reply, _)) = decode_frame(&buf).map_err(|e| format!("bad reply: {e}"))? {
            return Ok(reply);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err("the daemon closed the connection without a reply".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("no reply: {e}")),
        }
    }
}

/// `YYYYMMDDHHMMSS` in local time.
fn timestamp() -> String {
    crate::sys::format_local_time("%Y%m%d%H%M%S", crate::sys::now_secs())
}

/// The `Header` of a document this program writes.
pub fn header(command: Command, output: Output) -> Value {
    json!({
        "ClientVersion": crate::VERSION,
        "Command": command as i64,
        "Compression": 0,
        "Encryption": 0,
        "Output": output as i64,
        "Timestamp": timestamp(),
    })
}

/// A successful `Outcome`; `elapsed_secs` is the time spent, shown `HH:MM:SS`.
pub fn outcome_ok(elapsed_secs: u64) -> Value {
    let time = format!("{:02}:{:02}:{:02}", elapsed_secs / 3600, (elapsed_secs / 60) % 60, elapsed_secs % 60);
    json!({ "Status": true, "Time": time })
}

/// A failed `Outcome` with pgagroal's error code.
pub fn outcome_error(code: i64) -> Value {
    json!({ "Error": code, "Status": false })
}

/// A request document.
pub fn request(command: Command, output: Output, request: Map<String, Value>) -> Value {
    json!({
        "Header": header(command, output),
        "Request": Value::Object(request),
    })
}

/// The command id a request carries.
pub fn command_of(request: &Value) -> Option<i64> {
    request.get("Header")?.get("Command")?.as_i64()
}

fn echo(request: &Value) -> Map<String, Value> {
    let mut reply = Map::new();
    reply.insert("Header".into(), request.get("Header").cloned().unwrap_or_else(|| json!({})));
    reply.insert("Request".into(), request.get("Request").cloned().unwrap_or_else(|| json!({})));
    reply
}

/// A successful reply: the request echoed, `Outcome` and `Response` (which
/// always holds `ServerVersion`). `elapsed_secs` is the time spent.
pub fn reply_ok(request: &Value, mut response: Map<String, Value>, elapsed_secs: u64) -> Value {
    let mut reply = echo(request);
    reply.insert("Outcome".into(), outcome_ok(elapsed_secs));
    response.insert("ServerVersion".into(), json!(crate::VERSION));
    reply.insert("Response".into(), Value::Object(response));
    Value::Object(reply)
}

/// A failed reply with pgagroal's error code.
pub fn reply_error(request: &Value, code: i64) -> Value {
    let mut reply = echo(request);
    reply.insert("Outcome".into(), outcome_error(code));
    reply.insert("Response".into(), json!({ "ServerVersion": crate::VERSION }));
    Value::Object(reply)
}

/// A failed reply that also says why in `Response.Error`.
pub fn reply_error_with(request: &Value, code: i64, message: &str) -> Value {
    let mut reply = reply_error(request, code);
    if let Some(response) = reply.get_mut("Response").and_then(Value::as_object_mut) {
        response.insert("Error".into(), json!(message));
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_are_bounded() {
        let req = request(Command::Ping, Output::Text, Map::new());
        let bytes = encode_frame(&req);
        assert_eq!(&bytes[..2], &[0, 0]);
        let (back, used) = decode_frame(&bytes).expect("ok").expect("whole");
        assert_eq!((back, used), (req, bytes.len()));
        assert_eq!(decode_frame(&bytes[..bytes.len() - 1]), Ok(None));
        assert_eq!(decode_frame(&[0, 0, 0xff, 0xff, 0xff, 0xff]), Err(MgmtError::TooLarge(u32::MAX)));
        assert_eq!(decode_frame(&[0, 0, 0, 0, 0, 0]), Err(MgmtError::Empty));
        assert!(matches!(decode_frame(&[0, 0, 0, 0, 0, 1, b'{']), Err(MgmtError::Json(_))));
        assert_eq!(decode_frame(&[1, 0, 0, 0, 0, 1, b'{']), Err(MgmtError::Unsupported(1, 0)));
    }

    #[test]
    fn replies_echo_the_request() {
        let req = request(Command::Status, Output::Json, Map::new());
        let rep = reply_ok(&req, Map::new(), 0);
        assert_eq!(rep["Header"]["Command"], json!(16));
        assert_eq!(rep["Outcome"]["Status"], json!(true));
        assert_eq!(rep["Outcome"]["Time"], json!("00:00:00"));
        assert_eq!(rep["Response"]["ServerVersion"], json!(crate::VERSION));
        let err = reply_error(&req, error_code::UNKNOWN_COMMAND);
        assert_eq!(err["Outcome"], json!({"Error": 2, "Status": false}));
        assert_eq!(outcome_ok(3723), json!({"Status": true, "Time": "01:02:03"}));
    }

    #[test]
    fn admin_commands_have_ids_and_names() {
        for (id, name) in [(19, "master-key"), (20, "user add"), (21, "user edit"), (22, "user del"), (23, "user ls")] {
            let command = Command::from_id(id).expect("known id");
            assert_eq!((command as i64, command.name()), (id, name));
        }
        assert_eq!(Command::from_id(24), None);
    }
}
