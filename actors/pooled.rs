//! Using the pool's server connections from any actor that claims slots
//! (workers and the periodic services): the pool calls to the supervisor
//! (register a new connection, check out the fd of a claimed one) and
//! terminating the connection of a claimed slot.

use crate::net::Sock;
use pgagroal::ipc::{Mailbox, Received};
use pgagroal::msg::pool::{PoolAnswer, PoolCall, PoolNotice};
use pgagroal::msg::{Down, Lifecycle, LifecycleReply, Outcome, RequestId, Up};
use pgagroal::protocol::encode;
use pgagroal::shmem::counters::Event;
use pgagroal::shmem::{Region, SlotId, SlotState, Word};
use serde::de::DeserializeOwned;
use slog::{debug, warn};
use std::fmt::Debug;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

/// The mailbox of an actor that uses pooled connections; `P` and `R` are
/// its contract's pushes and reload payload.
pub type PoolMailbox<P, R> = Mailbox<Up<PoolCall, PoolNotice>, Down<PoolAnswer, P, R>>;

/// A fresh request id for a call to the supervisor.
pub fn next_id() -> RequestId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One call to the supervisor (with an fd, maybe) and its answer: the
/// message that carries the call's id. Answers to earlier calls that timed
/// out are dropped on the way, a ping is answered, and anything else that
/// arrives meanwhile is dropped with a note (a worker gets pushes only while
/// idle; a service's reload is sent again on the next one). Err says why
/// there is no answer.
pub fn call<P: DeserializeOwned + Debug, R: DeserializeOwned + Debug>(
    mailbox: &PoolMailbox<P, R>,
    call: PoolCall,
    fd: Option<&Sock>,
    log: &slog::Logger,
) -> Result<(PoolAnswer, Option<OwnedFd>), String> {
    let want = next_id();
    if let Err(e) = mailbox.send(&Up::Call { id: want, call }, fd.map(|f| f.fd().as_fd())) {
        warn!(log, "mailbox send failed"; "error" => %e);
        return Err(format!("mailbox send failed: {e}"));
    }
    loop {
        match mailbox.recv() {
            Ok(Received::Message(Down::Answer { id, outcome }, fd)) if id == want => {
                return match outcome {
                    Outcome::Ok(answer) => Ok((answer, fd)),
                    Outcome::Failure(reason) => Err(reason),
                };
            }
            Ok(Received::Message(Down::Lifecycle(Lifecycle::Ping { id }), _)) => {
                let _ = mailbox.send(&Up::Lifecycle(LifecycleReply::Pong { id }), None);
            }
            Ok(Received::Message(other, _)) => {
                debug!(log, "mailbox message that does not answer the call dropped"; "message" => ?other);
            }
            Ok(Received::Closed) => {
                warn!(log, "supervisor is gone");
                return Err("supervisor is gone".into());
            }
            Ok(Received::Empty) => {
                warn!(log, "supervisor did not answer in time");
                return Err("supervisor did not answer in time".into());
            }
            Err(e) => {
                warn!(log, "bad message from supervisor"; "error" => %e);
                return Err(format!("bad message from supervisor: {e}"));
            }
        }
    }
}

/// The fd (and replay bytes) of a slot the caller claimed, from the
/// supervisor's copy.
pub fn checkout<P: DeserializeOwned + Debug, R: DeserializeOwned + Debug>(
    mailbox: &PoolMailbox<P, R>,
    id: SlotId,
    word: Word,
    log: &slog::Logger,
) -> Option<(Sock, Vec<u8>)> {
    match call(mailbox, PoolCall::Checkout { slot: id, generation: word.generation }, None, log) {
        Ok((PoolAnswer::CheckedOut { startup }, Some(fd))) => Some((Sock::adopt(fd), startup)),
        Ok((answer, _)) => {
            warn!(log, "supervisor answered checkout without a connection"; "slot" => id.0, "answer" => ?answer);
            None
        }
        Err(reason) => {
            warn!(log, "supervisor refused checkout"; "slot" => id.0, "reason" => reason);
            None
        }
    }
}

/// Register the new connection in the INIT slot `id`; true when the
/// supervisor took its copy (the connection can then be pooled).
pub fn register<P: DeserializeOwned + Debug, R: DeserializeOwned + Debug>(
    mailbox: &PoolMailbox<P, R>,
    id: SlotId,
    word: Word,
    startup: Vec<u8>,
    sock: &Sock,
    log: &slog::Logger,
) -> bool {
    let call_ = PoolCall::Register { slot: id, generation: word.generation, startup };
    matches!(call(mailbox, call_, Some(sock), log), Ok((PoolAnswer::Registered, _)))
}

/// Terminate the connection in a slot the caller holds and free the slot
/// (-> REMOVE -> NOTINIT), telling the supervisor to drop its copy. `clean`
/// means the connection is between messages and may get a Terminate.
pub fn kill<P: DeserializeOwned, R: DeserializeOwned>(
    region: &Region,
    mailbox: &PoolMailbox<P, R>,
    pid: i32,
    (id, word): (SlotId, Word),
    sock: Option<&Sock>,
    clean: bool,
    log: &slog::Logger,
) {
    if let Some(sock) = sock {
        if clean {
            let _ = sock.write(&encode::terminate());
        }
        sock.shutdown();
    }
    // Between messages: closed on purpose; otherwise it broke.
    pgagroal::shmem::counters::record(if clean { Event::ConnectionRemove } else { Event::ConnectionKill });
    let table = region.slots();
    let mut word = word;
    if word.state != SlotState::Remove {
        match table.transition(id, word, SlotState::Remove, pid) {
            Ok(w) => word = w,
            Err(e) => {
                warn!(log, "cannot mark slot for removal"; "slot" => id.0, "error" => %e);
                return;
            }
        }
    }
    if let Err(e) = table.transition(id, word, SlotState::NotInit, pid) {
        warn!(log, "cannot free slot"; "slot" => id.0, "error" => %e);
    } else {
        region.notify_release();
    }
    let _ = mailbox.send(&Up::Notice(PoolNotice::Killed { slot: id, generation: word.generation }), None);
}
