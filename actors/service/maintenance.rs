//! Pool maintenance: on its first pass, right after start, the service
//! opens each limit entry's `initial_size` connections (entries naming a
//! database and a user of the users file), logging in with the user's
//! stored password, registers them with the supervisor and leaves them
//! FREE, so the first clients find them ready; later passes keep each
//! entry at its `min_size`. A server that cannot be reached or refuses the
//! login ends the entry's pass with a warning, and the next pass waits
//! longer (see `pgagroal::pool::next_pass`).

use super::Context;
use crate::net::Sock;
use crate::pooled::register;
use crate::worker::connect;
use pgagroal::auth::login::LoginSecret;
use pgagroal::pool::{self, SlotView};
use pgagroal::shmem::servers::ServerState;
use pgagroal::shmem::{AuthKind, Claim, PackedName, SlotState};
use slog::{info, warn};
use std::time::Instant;

/// One pass; true when a connection could not be opened.
pub fn run(ctx: &Context<'_>, first: bool) -> bool {
    let config = &ctx.settings.config;
    let states = ctx.region.header().servers(config.servers.len());
    // Connections go to the primary once one is known, and not while a
    // failover runs.
    if states.all().contains(&pgagroal::shmem::servers::ServerState::Failover) {
        return false;
    }
    let Some(index) = states.primary() else { return false };
    let table = ctx.region.slots();
    let targets: Vec<(usize, u32)> = ctx
        .settings
        .limits
        .prefill()
        .map(|(rule, _, _, initial)| {
            let min = ctx.settings.limits.entries.get(rule).map_or(0, |e| e.min_size);
            (rule, if first { initial.max(min) } else { min })
        })
        .collect();
    let missing = pool::deficits(&SlotView::snapshot(&table), &targets);
    if missing.is_empty() {
        return false;
    }
    if ctx.tls.servers.get(index).is_some_and(|tls| tls.is_some()) {
        if first {
            warn!(ctx.log, "no prefill: TLS server connections can only be used by the worker that made them");
        }
        return false;
    }
    let mut failed = false;
    for (rule, _) in missing {
        let Some((_, database, user, _)) = ctx.settings.limits.prefill().find(|(r, ..)| *r == rule) else { continue };
        let target = targets.iter().find(|(r, _)| *r == rule).map_or(0, |(_, t)| *t);
        let Some(login) = ctx.settings.logins.iter().find(|l| l.user == user) else {
            warn!(ctx.log, "no prefill: the user is not in the users file"; "user" => user);
            continue;
        };
        let mut opened = 0;
        loop {
            let claim = {
                let _lock = ctx.region.header().lock_rule(rule, ctx.pid);
                (table.rule_count(rule) < target).then(|| table.claim_empty(ctx.pid)).flatten()
            };
            let Some(claim) = claim else { break };
            if let Some(slot) = table.get(claim.id) {
                slot.set_rule(Some(rule));
            }
            pgagroal::fail_point!("service-mid-claim");
            match open(ctx, claim, (index, user, database), &login.password) {
                Ok(()) => opened += 1,
                Err(reason) => {
                    warn!(ctx.log, "could not open a pool connection"; "user" => user, "database" => database, "reason" => reason);
                    free_failed(ctx, claim);
                    failed = true;
                    break;
                }
            }
        }
        if opened > 0 {
            info!(ctx.log, "opened pool connections"; "user" => user, "database" => database, "connections" => opened);
        }
    }
    failed
}

/// Connect, log in and pool one connection in the claimed INIT slot.
fn open(
    ctx: &Context<'_>,
    claim: Claim,
    (index, user, database): (usize, &str, &str),
    password: &str,
) -> Result<(), String> {
    let config = &ctx.settings.config;
    let server = config.servers.get(index).ok_or("no server")?;
    let deadline = Instant::now() + config.main.authentication_timeout;
    let states = ctx.region.header().servers(config.servers.len());
    let sock: Sock = match connect::connect_server(server, config, deadline) {
        Ok(sock) => sock,
        Err(e) => {
            // An unreachable primary is failed over even with no client
            // asking (see worker/create.rs).
            let from = [ServerState::Primary, ServerState::NotInit, ServerState::NotInitPrimary];
            if config.main.failover && states.change(index, &from, ServerState::Failover) {
                warn!(ctx.log, "server unreachable: failover"; "server" => &server.name);
            }
            return Err(format!("cannot connect: {e}"));
        }
    };
    if states.change(index, &[ServerState::NotInit, ServerState::NotInitPrimary], ServerState::Primary) {
        info!(ctx.log, "server is the primary"; "server" => &server.name);
    }
    let table = ctx.region.slots();
    let slot = table.get(claim.id).ok_or("no slot")?;
    slot.set_identity(&PackedName::new(user), &PackedName::new(database), index as u32, pgagroal::sys::now_ms());
    let secret = LoginSecret::Password(password.to_string());
    let (started, method) = connect::login(&sock, user, database, secret, deadline)
        .map_err(|fail| format!("login failed: {}", fail.describe()))?;
    let kind = if method == 0 { AuthKind::Trust } else { AuthKind::Pooler };
    slot.set_backend(kind, started.backend_pid, started.backend_secret);
    slot.set_server_method(method as u32);
    if !register(&ctx.mailbox, claim.id, claim.word, started.cached, &sock, &ctx.log) {
        sock.shutdown();
        return Err("the supervisor did not take the connection".into());
    }
    table.transition(claim.id, claim.word, SlotState::Free, ctx.pid).map_err(|e| e.to_string())?;
    ctx.region.notify_release();
    Ok(())
}

/// Give back a slot whose connection could not be made.
fn free_failed(ctx: &Context<'_>, claim: Claim) {
    let table = ctx.region.slots();
    let Some(word) = table.get(claim.id).map(|slot| slot.load()) else { return };
    if word.owner != ctx.pid || word.generation != claim.word.generation || word.state != SlotState::Init {
        return;
    }
    crate::pooled::kill(ctx.region, &ctx.mailbox, ctx.pid, (claim.id, word), None, false, &ctx.log);
}
