//! The passes that look at FREE connections: idle timeout and max
//! connection age close them, validation sends each an empty query. Each
//! claims a slot by compare-and-swap from the word the policy saw, so a
//! slot that changed hands since is left alone, and never touches one in
//! use.

use super::Context;
use crate::net::Sock;
use crate::pooled::{checkout, kill};
use crate::worker::reset::check_alive;
use pgagroal::pool::{self, SlotView};
use pgagroal::shmem::SlotState;
use pgagroal::shmem::counters::Event;
use slog::{debug, info, warn};

/// Close FREE connections idle longer than `idle_timeout`, keeping each
/// limit entry's `min_size`.
pub fn idle(ctx: &Context<'_>) -> bool {
    let slots = SlotView::snapshot(&ctx.region.slots());
    let timeout = ctx.settings.config.main.idle_timeout;
    let floor = |rule: usize| ctx.settings.limits.entries.get(rule).map_or(0, |e| e.min_size);
    for view in pool::idle_expired(&slots, pgagroal::sys::now_ms(), timeout, floor) {
        close(ctx, view, SlotState::IdleCheck, "idle_timeout");
    }
    false
}

/// Close FREE connections older than `max_connection_age`.
pub fn max_age(ctx: &Context<'_>) -> bool {
    let slots = SlotView::snapshot(&ctx.region.slots());
    let age = ctx.settings.config.main.max_connection_age;
    for view in pool::aged_out(&slots, pgagroal::sys::now_ms(), age) {
        close(ctx, view, SlotState::MaxConnectionAge, "max_connection_age");
    }
    false
}

/// Claim a FREE slot as `state`, then terminate its connection.
fn close(ctx: &Context<'_>, view: SlotView, state: SlotState, why: &str) {
    let table = ctx.region.slots();
    let Some(slot) = table.get(view.id) else { return };
    let Ok(word) = table.transition(view.id, view.word, state, ctx.pid) else {
        debug!(ctx.log, "slot changed hands before the service claimed it"; "slot" => view.id.0);
        return;
    };
    pgagroal::fail_point!("service-mid-claim");
    // A TLS connection's record state is in the worker that made it: it
    // can only be shut down, not sent a Terminate.
    let plain = slot.usable_by(ctx.pid);
    let sock = checkout(&ctx.mailbox, view.id, word, &ctx.log).map(|(sock, _)| sock);
    kill(ctx.region, &ctx.mailbox, ctx.pid, (view.id, word), sock.as_ref(), plain, &ctx.log);
    let event = if state == SlotState::IdleCheck { Event::ConnectionIdleTimeout } else { Event::ConnectionMaxAge };
    pgagroal::shmem::counters::record(event);
    info!(ctx.log, "closed server connection"; "slot" => view.id.0, "reason" => why);
}

/// `validation = background`: check every FREE connection not used for a
/// `background_interval`; close the ones that do not answer.
pub fn validate(ctx: &Context<'_>) -> bool {
    let table = ctx.region.slots();
    let slots = SlotView::snapshot(&table);
    let interval = ctx.settings.config.main.background_interval;
    for view in pool::due_for_validation(&slots, pgagroal::sys::now_ms(), interval) {
        let Some(slot) = table.get(view.id) else { continue };
        // TLS connections can only be spoken to by the worker that made them.
        if !slot.usable_by(ctx.pid) {
            continue;
        }
        let Ok(word) = table.transition(view.id, view.word, SlotState::Validation, ctx.pid) else { continue };
        pgagroal::fail_point!("service-mid-claim");
        let owed = slot.take_reset_pending();
        let sock: Option<Sock> = checkout(&ctx.mailbox, view.id, word, &ctx.log).map(|(sock, _)| sock);
        if sock.as_ref().is_some_and(|sock| check_alive(sock, owed)) {
            match table.transition(view.id, word, SlotState::Free, ctx.pid) {
                Ok(_) => ctx.region.notify_release(),
                Err(e) => warn!(ctx.log, "cannot return a validated slot"; "slot" => view.id.0, "error" => %e),
            }
        } else {
            warn!(ctx.log, "server connection failed validation; closing it"; "slot" => view.id.0);
            pgagroal::shmem::counters::record(Event::ConnectionInvalid);
            kill(ctx.region, &ctx.mailbox, ctx.pid, (view.id, word), sock.as_ref(), false, &ctx.log);
        }
    }
    false
}
