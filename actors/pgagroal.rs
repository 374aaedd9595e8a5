//! `pgagroal`: the daemon. Reads and checks every configuration file, then
//! (optionally) daemonizes, claims the pid file, creates the shared memory,
//! binds its sockets and hands over to the supervisor. A bad file stops it
//! before anything is bound.

mod child;
mod frontend;
mod listen;
mod management;
mod metrics;
mod net;
mod pooled;
mod port_actor;
mod service;
mod supervisor;
mod worker;

use clap::{ArgAction, Parser};
use pgagroal::auth::credentials::Credentials;
use pgagroal::config::limits::Limits;
use pgagroal::config::{self, FileOverrides, LogType};
use pgagroal::hba::Hba;
use pgagroal::tls::TlsConfigs;
use slog::{info, warn};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// System allocator in the supervisor; a private region in each worker.
#[global_allocator]
static ALLOCATOR: pgagroal::arena::ForkArena = pgagroal::arena::ForkArena::new();

#[derive(Parser, Debug)]
#[command(
    name = "pgagroal",
    about = "PostgreSQL connection pool",
    disable_help_flag = true,
    disable_version_flag = true
)]
struct Args {
    /// Main configuration file (pgagroal.conf or a .toml file)
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Host based access file (pgagroal_hba.conf)
    #[arg(short = 'a', long = "hba")]
    hba: Option<PathBuf>,
    /// Limits file (pgagroal_databases.conf)
    #[arg(short = 'l', long = "limit")]
    limit: Option<PathBuf>,
    /// Users file (pgagroal_users.conf)
    #[arg(short = 'u', long = "users")]
    users: Option<PathBuf>,
    /// Frontend users file (pgagroal_frontend_users.conf)
    #[arg(short = 'F', long = "frontend")]
    frontend: Option<PathBuf>,
    /// Admins file (pgagroal_admins.conf)
    #[arg(short = 'A', long = "admins")]
    admins: Option<PathBuf>,
    /// Superuser file (pgagroal_superuser.conf)
    #[arg(short = 'S', long = "superuser")]
    superuser: Option<PathBuf>,
    /// Directory holding the configuration files
    #[arg(short = 'D', long = "directory")]
    directory: Option<PathBuf>,
    /// Run in the background
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
    /// Print the version and exit
    #[arg(short = 'V', long = "version")]
    version: bool,
    /// Print help and exit
    #[arg(short = '?', long = "help", action = ArgAction::Help)]
    help: Option<bool>,
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("pgagroal: {message}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    pgagroal::failpoint::arm();
    let args = Args::parse();
    pgagroal::proctitle::init();
    if args.version {
        println!("pgagroal {}", pgagroal::VERSION);
        return ExitCode::SUCCESS;
    }
    if nix::unistd::geteuid().is_root() {
        return fail(
            "Using the root account is not allowed: run pgagroal as an unprivileged user \
             (for example: runuser -u postgres -- pgagroal ...)",
        );
    }
    let overrides = FileOverrides {
        dir: args.directory.clone(),
        main: args.config.clone(),
        hba: args.hba.clone(),
        limit: args.limit.clone(),
        users: args.users.clone(),
        frontend_users: args.frontend.clone(),
        admins: args.admins.clone(),
        superuser: args.superuser.clone(),
    };
    let files = overrides.resolve(std::env::var_os("PGAGROAL_CONFIG_DIR").map(PathBuf::from));

    // Everything is read and checked before anything is bound.
    let loaded = match config::load(&files.main) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let hba = match Hba::load(&files.hba) {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    let config = loaded.config;
    let dir = &config.main.unix_socket_dir;
    if !dir.is_dir() {
        return fail(format!("{}: unix_socket_dir {} is not a directory", files.main.display(), dir.display()));
    }
    let mut mock_secret = [0u8; 32];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut mock_secret).is_err() {
        return fail("cannot draw random bytes from the operating system");
    }
    let (creds, mut cred_warnings) = match Credentials::load(&files, &config.main, None, mock_secret) {
        Ok(both) => both,
        Err(e) => return fail(e),
    };
    let (limits, mut limit_warnings) = match &files.limit {
        Some(path) => match Limits::load(path, config.main.max_connections) {
            Ok(both) => both,
            Err(e) => return fail(e),
        },
        None => (Limits::default(), Vec::new()),
    };
    let users: Vec<&str> = creds.user_names().collect();
    match config::pipeline::check_files(&config, &users, Some(&limits)) {
        Ok(warnings) => limit_warnings.extend(warnings),
        Err(e) => return fail(e),
    }
    let tls = match TlsConfigs::load(&config) {
        Ok((tls, warnings)) => {
            cred_warnings.extend(warnings);
            tls
        }
        Err(e) => return fail(format!("{}: {e}", files.main.display())),
    };
    if args.daemon && config.main.log_type == LogType::Console {
        return fail(format!("{}: daemon mode (-d) needs log_type = file or syslog", files.main.display()));
    }
    if args.daemon
        && let Err(e) = daemonize()
    {
        return fail(format!("cannot daemonize: {e}"));
    }
    if let Err(e) = pgagroal::log::init(&config.main) {
        return fail(e);
    }
    let log = pgagroal::log::logger();
    for w in &loaded.warnings {
        warn!(log, "{}", w);
    }
    for w in cred_warnings.iter().chain(&limit_warnings) {
        warn!(log, "{}", w);
    }

    let pidfile = config.main.pidfile();
    if let Err(e) = claim_pidfile(&pidfile) {
        slog::crit!(log, "{}", e);
        return ExitCode::FAILURE;
    }
    let code = run(supervisor::Settings { config, files, hba, creds, tls, limits }, &pidfile);
    if code != 0 {
        let _ = std::fs::remove_file(&pidfile);
    }
    ExitCode::from(code as u8)
}

fn run(settings: supervisor::Settings, pidfile: &Path) -> i32 {
    let log = pgagroal::log::logger();
    let main = &settings.config.main;
    let region = match pgagroal::shmem::Region::create(main.max_connections, main.prepared_statement_capacity()) {
        Ok(r) => r,
        Err(e) => {
            slog::crit!(log, "cannot create shared memory"; "error" => %e);
            return 1;
        }
    };
    region.header().started_ms.store(pgagroal::sys::now_ms(), std::sync::atomic::Ordering::Relaxed);
    // Without a metrics port nothing reads the counters: nothing is counted.
    if main.metrics != 0 {
        pgagroal::shmem::counters::install(region.counters());
    }
    let backlog = main.backlog();
    // Titled before anything listens: whoever sees the port open sees the
    // process as "main".
    pgagroal::proctitle::set(main.update_process_title, "main");
    // The TCP listener comes last: once it accepts, the Unix socket and the
    // management socket are there too (clients, scripts and `pgagroal-cli`
    // may rely on it).
    let management = match listen::unix(&main.management_socket_path(), 0o600, 16) {
        Ok(l) => l,
        Err(e) => {
            slog::crit!(log, "cannot listen on the management socket"; "error" => %e);
            return 1;
        }
    };
    let unix = match listen::unix(&main.client_socket_path(), 0o777, backlog) {
        Ok(l) => l,
        Err(e) => {
            let _ = std::fs::remove_file(main.management_socket_path());
            slog::crit!(log, "cannot listen on the Unix socket"; "error" => %e);
            return 1;
        }
    };
    let tcp = match listen::tcp(&main.host, main.port, backlog, (main.nodelay, main.keep_alive)) {
        Ok(l) => l,
        Err(e) => {
            let _ = std::fs::remove_file(main.management_socket_path());
            let _ = std::fs::remove_file(main.client_socket_path());
            slog::crit!(log, "cannot listen"; "host" => &main.host, "port" => main.port, "error" => %e);
            return 1;
        }
    };
    let paths = supervisor::Paths {
        pidfile: pidfile.to_path_buf(),
        client_socket: main.client_socket_path(),
        management_socket: main.management_socket_path(),
    };
    info!(log, "pgagroal started";
        "version" => pgagroal::VERSION,
        "host" => &main.host,
        "port" => main.port,
        "unix_socket" => %main.client_socket_path().display(),
        "max_connections" => main.max_connections,
        "pipeline" => main.effective_pipeline().name(),
        "pid" => std::process::id());
    // The actors' ports: a port that cannot be bound stops the start.
    let mut ports = Vec::new();
    for (port, what) in [(main.management, "management"), (main.metrics, "metrics")] {
        match listen::actor_port(&main.host, port, (main.nodelay, main.keep_alive)) {
            Ok(fds) => ports.push(fds),
            Err(e) => {
                let _ = std::fs::remove_file(main.management_socket_path());
                let _ = std::fs::remove_file(main.client_socket_path());
                slog::crit!(log, "cannot listen on an actor's port"; "actor" => what, "host" => &main.host,
                            "port" => port, "error" => %e);
                return 1;
            }
        }
    }
    let metrics = ports.pop().unwrap_or_default();
    let remote = ports.pop().unwrap_or_default();
    let bound = supervisor::Bound { tcp, unix, management, remote, metrics };
    match supervisor::Supervisor::new(settings, region, bound, paths) {
        Ok(s) => s.run(),
        Err(e) => {
            slog::crit!(log, "cannot start the supervisor"; "error" => %e);
            1
        }
    }
}

/// Create the pid file; a file whose process is gone is replaced.
fn claim_pidfile(path: &Path) -> Result<(), String> {
    if let Ok(text) = std::fs::read_to_string(path) {
        match text.trim().parse::<i32>() {
            Ok(pid) if pgagroal::sys::process_alive(pid) && pid != std::process::id() as i32 => {
                return Err(format!(
                    "pid file {} names running process {pid}: is another pgagroal running?",
                    path.display()
                ));
            }
            _ => {
                warn!(pgagroal::log::logger(), "removing stale pid file"; "path" => %path.display());
                std::fs::remove_file(path)
                    .map_err(|e| format!("cannot remove stale pid file {}: {e}", path.display()))?;
            }
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("cannot create pid file {}: {e}", path.display()))?;
    std::io::Write::write_all(&mut file, format!("{}\n", std::process::id()).as_bytes())
        .map_err(|e| format!("cannot write pid file {}: {e}", path.display()))
}

/// Detach from the terminal: fork (the parent exits), new session, standard
/// streams on /dev/null.
fn daemonize() -> std::io::Result<()> {
    // SAFETY: single-threaded at this point; the parent leaves at once with _exit.
    match unsafe { nix::unistd::fork() }.map_err(std::io::Error::from)? {
        nix::unistd::ForkResult::Parent { .. } => {
            // SAFETY: leaving the parent without running destructors.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Child => {}
    }
    nix::unistd::setsid().map_err(std::io::Error::from)?;
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors, which this process owns.
        if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
