//! `pgagroal-cli`: the management client. Locally it reads
//! `unix_socket_dir` from the configuration and sends one request over
//! `.s.pgagroal`; with `-h`/`-p` it logs in to the daemon's management port
//! as an admin ([`cli_remote`]). It prints the reply as text (default),
//! JSON or raw JSON.

mod cli_remote;
mod prompt;

use clap::{ArgAction, Parser};
use pgagroal::mgmt::{self, Output, command, render};
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// How long the daemon has to answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

const HELP: &str = "Commands:
  ping                                 Is pgagroal alive
  status [details]                     Status of pgagroal
  flush [gracefully|idle|all] [<database>|all]
                                       Close pooled connections (default: gracefully, all)
  enable [<database>|all]              Accept new clients of a database
  disable [<database>|all]             Refuse new clients of a database
  shutdown [gracefully|immediate|cancel]
                                       Stop pgagroal (default: gracefully)
  switch-to <server>                   Switch to another primary
  clear prometheus                     Reset the metrics
  clear [server] <server>              Reset the state of a failed server
  conf reload                          Reload the configuration files
  conf ls                              Where the configuration files are
  conf get [<key>]                     The running configuration, or one key
                                       (key, section.key, section.context.key)
  conf set <key> <value>               Change a key in the running configuration
  conf alias                           The databases' aliases and limits";

#[derive(Parser, Debug)]
#[command(
    name = "pgagroal-cli",
    about = "Command line utility for pgagroal",
    disable_help_flag = true,
    disable_version_flag = true,
    after_help = HELP
)]
struct Args {
    /// Configuration file (reads unix_socket_dir from it)
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Remote host (remote management)
    #[arg(short = 'h', long = "host")]
    host: Option<String>,
    /// Remote port (remote management)
    #[arg(short = 'p', long = "port")]
    port: Option<u16>,
    /// Remote user
    #[arg(short = 'U', long = "user")]
    user: Option<String>,
    /// Remote password
    #[arg(short = 'P', long = "password")]
    password: Option<String>,
    /// Log file
    #[arg(short = 'L', long = "logfile")]
    logfile: Option<PathBuf>,
    /// Output format: text, json or raw
    #[arg(short = 'F', long = "format", default_value = "text")]
    format: String,
    /// Compression: none
    #[arg(short = 'C', long = "compress", default_value = "none")]
    compress: String,
    /// Encryption: none
    #[arg(short = 'E', long = "encrypt", default_value = "none")]
    encrypt: String,
    /// Deadline of `shutdown [gracefully]` and `flush [gracefully]` (30, 30s, 5m, 1h; 0 = none);
    /// without it the daemon's flush_timeout applies
    #[arg(short = 'T', long = "timeout")]
    timeout: Option<String>,
    /// Print the outcome on standard error
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Print the version and exit
    #[arg(short = 'V', long = "version")]
    version: bool,
    /// Print help and exit
    #[arg(short = '?', long = "help", action = ArgAction::Help)]
    help: Option<bool>,
    /// The command and its arguments
    command: Vec<String>,
}

/// `-L FILE`: a line per command with its outcome, appended.
fn log_to(file: Option<&std::path::Path>, line: &str) {
    let Some(file) = file else { return };
    let stamp = pgagroal::sys::format_local_time("%Y-%m-%d %H:%M:%S", pgagroal::sys::now_secs());
    let opened = std::fs::OpenOptions::new().create(true).append(true).open(file);
    if let Ok(mut f) = opened {
        let _ = writeln!(f, "{stamp} pgagroal-cli: {line}");
    }
}

fn fail(verbose: bool, message: &str) -> ExitCode {
    eprintln!("pgagroal-cli: {message}");
    if verbose {
        eprintln!("pgagroal-cli: Error (1)");
    }
    ExitCode::FAILURE
}

fn exchange(path: &std::path::Path, request: &Value, timeout: Duration) -> Result<Value, String> {
    let mut stream = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| format!("cannot connect to {}: {e} (is pgagroal running?)", path.display()))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    mgmt::exchange(&mut stream, request)
}

/// The local daemon's reply, over the management socket named by the
/// configuration (`-c`, else the default one).
fn local(config: Option<PathBuf>, document: &Value) -> Result<Value, String> {
    let config_path = config.unwrap_or_else(|| {
        let dir = std::env::var_os("PGAGROAL_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(pgagroal::config::paths::DEFAULT_DIR));
        dir.join("pgagroal.conf")
    });
    let config = pgagroal::config::load(&config_path).map_err(|e| e.to_string())?.config;
    exchange(&config.main.management_socket_path(), document, REPLY_TIMEOUT)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.version {
        println!("pgagroal-cli {}", pgagroal::VERSION);
        return ExitCode::SUCCESS;
    }
    let output = match args.format.to_ascii_lowercase().as_str() {
        "text" => Output::Text,
        "json" => Output::Json,
        "raw" => Output::Raw,
        other => return fail(args.verbose, &format!("format '{other}' is not one of text, json, raw")),
    };
    if !args.compress.eq_ignore_ascii_case("none") || !args.encrypt.eq_ignore_ascii_case("none") {
        return fail(args.verbose, "compression and encryption are not supported by this version; use -C none -E none");
    }
    let logfile = args.logfile.as_deref();
    let fail = |verbose: bool, message: &str| {
        log_to(logfile, &format!("{}: error: {message}", args.command.join(" ")));
        fail(verbose, message)
    };
    let remote = match (&args.host, args.port) {
        (Some(host), Some(port)) => Some(cli_remote::Target {
            host: host.clone(),
            port,
            user: args.user.clone(),
            password: args.password.clone(),
        }),
        (None, None) => None,
        _ => return fail(args.verbose, "you need both -h and -p options to perform a remote connection"),
    };
    if remote.is_none() && (args.user.is_some() || args.password.is_some()) {
        return fail(args.verbose, "you need also -h and -p options to perform a remote connection");
    }
    if remote.is_some() && args.config.is_some() {
        return fail(args.verbose, "use either -c or -h/-p to define the endpoint");
    }
    let timeout = match args.timeout.as_deref().map(command::parse_timeout).transpose() {
        Ok(t) => t.unwrap_or(-1),
        Err(e) => return fail(args.verbose, &e),
    };
    let parsed = match command::parse(&args.command, timeout) {
        Ok(p) => p,
        Err(e) => return fail(args.verbose, &e),
    };
    let document = mgmt::request(parsed.command, output, parsed.request.clone());
    let reply = match &remote {
        Some(target) => match cli_remote::exchange(target, &document, REPLY_TIMEOUT) {
            Ok(reply) => reply,
            Err(cli_remote::RemoteError::BadCredentials(user)) => {
                // On standard output, as upstream.
                println!("pgagroal-cli: Bad credentials for {user}");
                log_to(logfile, &format!("{}: error: bad credentials for {user}", args.command.join(" ")));
                if args.verbose {
                    eprintln!("pgagroal-cli: Error (1)");
                }
                return ExitCode::FAILURE;
            }
            Err(cli_remote::RemoteError::Other(e)) => return fail(args.verbose, &e),
        },
        None => match local(args.config.clone(), &document) {
            Ok(reply) => reply,
            Err(e) => return fail(args.verbose, &e),
        },
    };
    let (printed, success) = render::reply(&parsed, output, reply);
    match (&parsed.conf_key, output) {
        // `-v` names the key beside its value, as upstream.
        (Some(key), Output::Text) if args.verbose && success => println!("{key} = {}", printed.trim_end()),
        _ => print!("{printed}"),
    }
    let outcome = if success { "success" } else { "error" };
    log_to(logfile, &format!("{}: {outcome}", args.command.join(" ")));
    if success {
        if args.verbose {
            eprintln!("pgagroal-cli: Success (0)");
        }
        ExitCode::SUCCESS
    } else {
        if args.verbose {
            eprintln!("pgagroal-cli: Error (1)");
        }
        ExitCode::FAILURE
    }
}
