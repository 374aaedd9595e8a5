//! Prefill: right after start, a short-lived worker opens each limit
//! entry's `initial_size` connections (entries naming a database and a
//! user of the users file), logging in with the user's stored password,
//! registers them with the supervisor and leaves them FREE, so the first
//! clients find them ready. Later, when an entry has fewer connections than
//! its `min_size`, the supervisor starts one again to make up the
//! difference. A server that cannot be reached or refuses
//! the login ends the entry's prefill with a warning; nothing retries in a
//! loop.

use super::Context;
use super::pool::{call_on, next_id};
use crate::net::Sock;
use pgagroal::auth::login::LoginSecret;
use pgagroal::msg::worker::{WorkerReply, WorkerRequest};
use pgagroal::shmem::{AuthKind, Claim, PackedName, SlotState};
use slog::{info, warn};
use std::time::Instant;

/// What a prefill worker opens connections up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `initial_size`, at start.
    Start,
    /// `min_size`, after connections were closed.
    Minimum,
}

pub fn run(ctx: &Context<'_>, mode: Mode, pid: i32, log: &slog::Logger) {
    let Some((index, _)) = ctx.config.primary_server() else { return };
    if ctx.tls.servers.get(index).is_some_and(|tls| tls.is_some()) {
        warn!(log, "no prefill: TLS server connections can only be used by the worker that made them");
        return;
    }
    let table = ctx.region.slots();
    for (rule, database, user, initial) in ctx.limits.prefill() {
        let target = match mode {
            Mode::Start => initial,
            Mode::Minimum => ctx.limits.entries.get(rule).map_or(0, |e| e.min_size),
        };
        if target == 0 || table.rule_count(rule) >= target {
            continue;
        }
        let Some(password) = ctx.creds.server_password(user) else {
            warn!(log, "no prefill: the user is not in the users file"; "user" => user);
            continue;
        };
        let mut opened = 0;
        loop {
            let claim = {
                let _lock = ctx.region.header().lock_rule(rule, pid);
                (table.rule_count(rule) < target).then(|| table.claim_empty(pid)).flatten()
            };
            let Some(claim) = claim else { break };
            if let Some(slot) = table.get(claim.id) {
                slot.set_rule(Some(rule));
            }
            match open(ctx, claim, (index, user, database), password.as_str(), pid, log) {
                Ok(()) => opened += 1,
                Err(reason) => {
                    warn!(log, "prefill stopped"; "user" => user, "database" => database, "reason" => reason);
                    free_failed(ctx, claim, pid);
                    break;
                }
            }
        }
        info!(log, "prefilled"; "user" => user, "database" => database, "connections" => opened);
    }
}

/// Connect, log in and pool one connection in the claimed INIT slot.
fn open(
    ctx: &Context<'_>,
    claim: Claim,
    (index, user, database): (usize, &str, &str),
    password: &str,
    pid: i32,
    log: &slog::Logger,
) -> Result<(), String> {
    let server = ctx.config.servers.get(index).ok_or("no server")?;
    let deadline = Instant::now() + ctx.config.main.authentication_timeout;
    let sock: Sock =
        super::connect::connect_server(server, ctx.config, deadline).map_err(|e| format!("cannot connect: {e}"))?;
    let table = ctx.region.slots();
    let slot = table.get(claim.id).ok_or("no slot")?;
    slot.set_identity(&PackedName::new(user), &PackedName::new(database), index as u32, pgagroal::sys::now_ms());
    let secret = LoginSecret::Password(password.to_string());
    let (started, method) = super::connect::login(&sock, user, database, secret, deadline)
        .map_err(|fail| format!("login failed: {}", fail.describe()))?;
    let kind = if method == 0 { AuthKind::Trust } else { AuthKind::Pooler };
    slot.set_backend(kind, started.backend_pid, started.backend_secret);
    slot.set_server_method(method as u32);
    let request = WorkerRequest::Register {
        id: next_id(),
        slot: claim.id,
        generation: claim.word.generation,
        startup: started.cached,
    };
    match call_on(&ctx.mailbox, &request, Some(&sock), log) {
        Some((WorkerReply::Registered { .. }, _)) => {}
        _ => {
            sock.shutdown();
            return Err("the supervisor did not take the connection".into());
        }
    }
    table.transition(claim.id, claim.word, SlotState::Free, pid).map_err(|e| e.to_string())?;
    ctx.region.notify_release();
    Ok(())
}

/// Give back a slot whose connection could not be made.
fn free_failed(ctx: &Context<'_>, claim: Claim, pid: i32) {
    let table = ctx.region.slots();
    let Some(word) = table.get(claim.id).map(|slot| slot.load()) else { return };
    if word.owner != pid || word.generation != claim.word.generation || word.state != SlotState::Init {
        return;
    }
    if let Ok(removed) = table.transition(claim.id, word, SlotState::Remove, pid)
        && table.transition(claim.id, removed, SlotState::NotInit, pid).is_ok()
    {
        ctx.region.notify_release();
    }
    let _ = ctx.mailbox.send(&WorkerRequest::Killed { slot: claim.id, generation: word.generation }, None);
}
