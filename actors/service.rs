//! The periodic services: long-lived forked actors, one per kind (idle
//! timeout, max connection age, validation, pool maintenance), each with
//! its own mailbox. A service sleeps on its mailbox until its next pass is
//! due, answers pings, applies a Reload's configuration without
//! restarting, and stops on Shutdown or when the supervisor is gone
//! (mailbox EOF, or PR_SET_PDEATHSIG). Which slots a pass acts on is
//! decided by `pgagroal::pool`; this file and its children only claim,
//! talk to servers and sleep.

mod checks;
mod maintenance;

use pgagroal::ipc::{Mailbox, Received};
use pgagroal::msg::service::{FromService, ServiceConfig, ServiceKind, ToService};
use pgagroal::msg::{Down, Lifecycle, LifecycleReply, Up};
use pgagroal::shmem::Region;
use pgagroal::tls::TlsConfigs;
use slog::{debug, info, o, warn};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// A service's end of its mailbox.
pub type ServiceMailbox = Mailbox<FromService, ToService>;

/// What a service runs with.
pub struct Context<'a> {
    pub kind: ServiceKind,
    pub settings: ServiceConfig,
    pub tls: &'a TlsConfigs,
    pub region: &'a Region,
    pub mailbox: ServiceMailbox,
    pub pid: i32,
    pub log: slog::Logger,
}

/// What waiting on the mailbox gave.
enum Wake {
    /// Time for the next pass (or a message that needs nothing more).
    Due,
    Stop,
}

/// Run passes until told to stop; the return value is the exit status.
pub fn run(mut ctx: Context<'_>) -> i32 {
    ctx.log = pgagroal::log::fresh_root().new(o!("actor" => ctx.kind.name(), "pid" => ctx.pid));
    pgagroal::proctitle::set(ctx.settings.config.main.update_process_title, ctx.kind.name());
    info!(ctx.log, "service started");
    let mut next = Instant::now();
    let mut first = true;
    loop {
        while Instant::now() < next {
            match wait(&mut ctx, next) {
                Wake::Due => {}
                Wake::Stop => {
                    debug!(ctx.log, "service stops");
                    return 0;
                }
            }
        }
        pgagroal::fail_point!("service-pass");
        let failed = match ctx.kind {
            ServiceKind::Idle => checks::idle(&ctx),
            ServiceKind::MaxAge => checks::max_age(&ctx),
            ServiceKind::Validation => checks::validate(&ctx),
            ServiceKind::Maintenance => maintenance::run(&ctx, first),
        };
        first = false;
        next = Instant::now() + pgagroal::pool::next_pass(ctx.kind, &ctx.settings.config.main, failed);
    }
}

/// Sleep on the mailbox until `until`, handling what arrives.
fn wait(ctx: &mut Context<'_>, until: Instant) -> Wake {
    let left = until.saturating_duration_since(Instant::now());
    let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1);
    let mut fds = [libc::pollfd { fd: ctx.mailbox.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
    match crate::net::poll(&mut fds, ms) {
        Ok(0) => return Wake::Due,
        Ok(_) => {}
        Err(e) => {
            warn!(ctx.log, "poll on the mailbox failed"; "error" => %e);
            return Wake::Stop;
        }
    }
    match ctx.mailbox.recv() {
        Ok(Received::Message(Down::Lifecycle(Lifecycle::Ping { id }), _)) => {
            let _ = ctx.mailbox.send(&Up::Lifecycle(LifecycleReply::Pong { id }), None);
            Wake::Due
        }
        Ok(Received::Message(Down::Lifecycle(Lifecycle::Reload(settings)), _)) => {
            ctx.settings = *settings;
            pgagroal::log::set_level(ctx.settings.config.main.log_level);
            info!(ctx.log, "configuration reloaded");
            Wake::Due
        }
        Ok(Received::Message(Down::Lifecycle(Lifecycle::Shutdown { .. }), _)) | Ok(Received::Closed) => Wake::Stop,
        // A late answer to a call that timed out.
        Ok(Received::Message(Down::Answer { .. }, _)) | Ok(Received::Empty) => Wake::Due,
        Ok(Received::Message(Down::Push(never), _)) => match never {},
        Err(pgagroal::ipc::MailboxError::Io(e)) => {
            warn!(ctx.log, "mailbox read failed"; "error" => %e);
            Wake::Stop
        }
        Err(e) => {
            warn!(ctx.log, "bad message from the supervisor"; "error" => %e);
            // Garbage on the mailbox: nothing to do but wait for the next.
            std::thread::sleep(Duration::from_millis(10));
            Wake::Due
        }
    }
}
