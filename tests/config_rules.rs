//! The daemon's start-up and reload checks of the pipeline rules and the
//! limits file, through the real binary. None of these needs PostgreSQL:
//! the daemon refuses before binding, or serves only its management socket.

mod common;

use common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `[pgagroal]` is line 1 and `extra` starts on line 6; the server port is
/// never connected to.
fn conf(dir: &Path, port: u16, extra: &str) -> String {
    format!(
        "[pgagroal]\nhost = 127.0.0.1\nport = {port}\nunix_socket_dir = {}\nlog_type = console\n{extra}\n\n\
         [primary]\nhost = 127.0.0.1\nport = 1\n",
        dir.display()
    )
}

/// The daemon on `pgagroal.conf`, the hba file and, when given, `-l limits`.
fn daemon(dir: &Path, conf: &str, limits: Option<&str>) -> Command {
    std::fs::write(dir.join("pgagroal.conf"), conf).expect("conf");
    std::fs::write(dir.join("pgagroal_hba.conf"), "host all all all trust\n").expect("hba");
    let mut cmd = daemon_command(dir);
    cmd.arg("-c").arg(dir.join("pgagroal.conf")).arg("-a").arg(dir.join("pgagroal_hba.conf"));
    if let Some(limits) = limits {
        std::fs::write(dir.join("pgagroal_databases.conf"), limits).expect("limits");
        cmd.arg("-l").arg(dir.join("pgagroal_databases.conf"));
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Run a daemon that must refuse to start; returns its stderr.
fn refused(conf_extra: &str, limits: Option<&str>) -> String {
    let dir = daemon_dir();
    let port = free_port();
    let out = daemon(dir.path(), &conf(dir.path(), port, conf_extra), limits).output().expect("run pgagroal");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the daemon must refuse to start:\n{stderr}");
    assert!(!dir.path().join(format!(".s.PGSQL.{port}")).exists(), "bound a socket before refusing");
    stderr
}

#[test]
fn performance_with_failover_names_the_failover_line() {
    let stderr = refused("pipeline = performance\nlog_level = info\nfailover = on", None);
    assert!(stderr.contains("pgagroal.conf: line 8: failover = on"), "{stderr}");
    assert!(stderr.contains("pipeline = performance (line 6)"), "{stderr}");
}

#[test]
fn transaction_needs_known_users() {
    let stderr = refused("pipeline = transaction\nallow_unknown_users = off", None);
    assert!(
        stderr.contains("pgagroal.conf: line 6: pipeline = transaction") && stderr.contains("users file"),
        "{stderr}"
    );
}

#[test]
fn a_bad_limits_file_names_its_line() {
    let stderr = refused("", Some("# DATABASE USER MAX_SIZE\nmydb alice 2\nmydb bob lots\n"));
    assert!(stderr.contains("pgagroal_databases.conf: line 3") && stderr.contains("MAX_SIZE"), "{stderr}");
    let stderr = refused("max_connections = 4", Some("mydb alice 2\nmydb bob 3\n"));
    assert!(stderr.contains("pgagroal_databases.conf: line 2") && stderr.contains("max_connections = 4"), "{stderr}");
    // Prefill needs the user's password from the users file.
    let stderr = refused("", Some("mydb alice 4 2\n"));
    assert!(stderr.contains("line 1") && stderr.contains("'alice'") && stderr.contains("users file"), "{stderr}");
}

/// Stops the daemon on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

#[test]
fn limits_warnings_are_logged_and_a_reload_applies_sizes_but_not_moved_entries() {
    let dir = daemon_dir();
    let port = free_port();
    let log_path = dir.path().join("log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut cmd =
        daemon(dir.path(), &conf(dir.path(), port, "max_connections = 10"), Some("mydb alice 3\nmydb alice 2\n"));
    let mut running = Running(cmd.stderr(log).spawn().expect("spawn pgagroal"));
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let up = eventually(Duration::from_secs(15), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() || running.0.try_wait().ok().flatten().is_some()
    });
    assert!(up && running.0.try_wait().ok().flatten().is_none(), "pgagroal did not start:\n{}", log());
    assert!(
        log().contains("pgagroal_databases.conf: line 2: database mydb and user alice are already on line 1"),
        "{}",
        log()
    );

    let reload = || {
        let out = Command::new(cli_binary())
            .arg("-c")
            .arg(dir.path().join("pgagroal.conf"))
            .args(["conf", "reload", "-F", "json"])
            .output()
            .expect("pgagroal-cli");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json reply")
    };
    // Moving the line is no change.
    std::fs::write(dir.path().join("pgagroal_databases.conf"), "# moved\nmydb alice 3\n\nmydb alice 2\n")
        .expect("limits");
    let reply = reload();
    assert_eq!(reply["Response"]["Restart"], false, "{reply}");
    // New sizes apply; the entries keep their places.
    std::fs::write(dir.path().join("pgagroal_databases.conf"), "mydb alice 4\nmydb alice 2\n").expect("limits");
    let reply = reload();
    assert_eq!(reply["Outcome"]["Status"], true, "{reply}");
    assert_eq!(reply["Response"]["Restart"], false, "{reply}");
    // A moved entry would change what running connections count against.
    std::fs::write(dir.path().join("pgagroal_databases.conf"), "otherdb alice 1\nmydb alice 4\n").expect("limits");
    let reply = reload();
    assert_eq!(reply["Outcome"]["Status"], true, "{reply}");
    assert_eq!(reply["Response"]["Restart"], true, "{reply}");
    let said = || log().contains("entry 1 is no longer \"mydb alice\"") && log().contains("needs a restart");
    assert!(eventually(Duration::from_secs(5), said), "{}", log());
    // A broken limits file fails the reload, naming its line.
    std::fs::write(dir.path().join("pgagroal_databases.conf"), "mydb alice\n").expect("limits");
    let reply = reload();
    assert_eq!(reply["Outcome"]["Status"], false, "{reply}");
    let reason = reply["Response"]["Error"].as_str().unwrap_or_default();
    assert!(reason.contains("pgagroal_databases.conf: line 1"), "{reply}");
}
