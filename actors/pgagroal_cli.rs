//! `pgagroal-cli`: the management client. Reads `unix_socket_dir` from the
//! configuration, sends one request over `.s.pgagroal` and prints the reply
//! as text (default), JSON or raw JSON.

use clap::{ArgAction, Parser};
use pgagroal::mgmt::{self, Command, Output, render};
use serde_json::{Map, Value, json};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "pgagroal-cli",
    about = "Command line utility for pgagroal",
    disable_help_flag = true,
    disable_version_flag = true,
    after_help = "Commands:\n  ping                          Is pgagroal alive\n  status [details]              Status of pgagroal\n  shutdown [gracefully|immediate|cancel]\n                                Stop pgagroal (default: gracefully)\n  conf reload                   Reload the configuration\n  enable [<database>|all]       Enable a database\n  disable [<database>|all]      Disable a database\n  switch-to <server>            Switch to another primary\n  clear server <server>         Reset the state of a failed server"
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
    /// How long to wait for the daemon (seconds)
    #[arg(short = 'T', long = "timeout", default_value_t = 10)]
    timeout: u64,
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

fn fail(verbose: bool, message: &str) -> ExitCode {
    eprintln!("pgagroal-cli: {message}");
    if verbose {
        eprintln!("pgagroal-cli: Error (1)");
    }
    ExitCode::FAILURE
}

fn parse_command(words: &[String]) -> Result<(Command, Map<String, Value>), String> {
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    Ok(match words.as_slice() {
        ["ping"] => (Command::Ping, Map::new()),
        ["status"] => (Command::Status, Map::new()),
        ["shutdown"] | ["shutdown", "gracefully"] => (Command::Gracefully, Map::new()),
        ["shutdown", "immediate"] => (Command::Shutdown, Map::new()),
        ["shutdown", "cancel"] => (Command::CancelShutdown, Map::new()),
        ["conf", "reload"] => (Command::Reload, Map::new()),
        [verb @ ("enable" | "disable")] | [verb @ ("enable" | "disable"), _] => {
            let database = match words.get(1) {
                None | Some(&"all") | Some(&"*") => "*",
                Some(name) => name,
            };
            let command = if *verb == "enable" { Command::EnableDb } else { Command::DisableDb };
            let mut request = Map::new();
            request.insert("Database".into(), json!(database));
            (command, request)
        }
        ["switch-to", server] | ["clear", "server", server] | ["clear", server]
            if !matches!(*server, "prometheus" | "server") =>
        {
            let command = if words[0] == "switch-to" { Command::SwitchTo } else { Command::ClearServer };
            let mut request = Map::new();
            request.insert("Server".into(), json!(server));
            (command, request)
        }
        [] => return Err("no command given; try 'pgagroal-cli -?'".into()),
        ["status", "details"]
        | ["flush", ..]
        | ["enable", ..]
        | ["disable", ..]
        | ["switch-to", ..]
        | ["clear", ..]
        | ["conf", ..] => {
            return Err(format!("command '{}' is not supported by this version", words.join(" ")));
        }
        _ => return Err(format!("unknown command '{}'; try 'pgagroal-cli -?'", words.join(" "))),
    })
}

fn exchange(path: &std::path::Path, request: &Value, timeout: Duration) -> Result<Value, String> {
    let mut stream = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| format!("cannot connect to {}: {e} (is pgagroal running?)", path.display()))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.write_all(&mgmt::encode_frame(request)).map_err(|e| format!("cannot send the request: {e}"))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        if let Some((reply, _)) = mgmt::decode_frame(&buf).map_err(|e| format!("bad reply: {e}"))? {
            return Ok(reply);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err("the daemon closed the connection without a reply".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("no reply: {e}")),
        }
    }
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
    let _ = (&args.user, &args.password, &args.logfile);
    if args.host.is_some() || args.port.is_some() {
        return fail(
            args.verbose,
            "remote management (-h/-p) is not supported by this version; use -c with the local configuration",
        );
    }
    let (command, request) = match parse_command(&args.command) {
        Ok(c) => c,
        Err(e) => return fail(args.verbose, &e),
    };
    let config_path = args.config.clone().unwrap_or_else(|| {
        let dir = std::env::var_os("PGAGROAL_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(pgagroal::config::paths::DEFAULT_DIR));
        dir.join("pgagroal.conf")
    });
    let config = match pgagroal::config::load(&config_path) {
        Ok(l) => l.config,
        Err(e) => return fail(args.verbose, &e.to_string()),
    };
    let socket = config.main.management_socket_path();
    let document = mgmt::request(command, output, request);
    let mut reply = match exchange(&socket, &document, Duration::from_secs(args.timeout.max(1))) {
        Ok(r) => r,
        Err(e) => return fail(args.verbose, &e),
    };
    let success = reply.pointer("/Outcome/Status") == Some(&json!(true));
    match output {
        Output::Raw => println!("{}", render::json(&reply)),
        Output::Json => {
            render::translate_header(&mut reply);
            println!("{}", render::json(&reply));
        }
        Output::Text => {
            render::translate_header(&mut reply);
            println!("{}", render::text(&reply));
        }
    }
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
