//! Client workers as the supervisor sees them: handing accepted clients to
//! idle workers or forking new ones, and keeping spare workers ready (also
//! when one dies).

use super::children::{Kind, Link, Role};
use super::{Phase, SPARE_WORKERS, Supervisor};
use pgagroal::ipc::{Contract, Mailbox};
use pgagroal::msg::Down;
use pgagroal::msg::worker::{Peer, WorkerPush};
use pgagroal::protocol::encode;
use slog::{debug, error};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

impl Supervisor {
    /// Hand a new client to an idle worker, or fork one for it.
    pub(super) fn dispatch(&mut self, client: OwnedFd, peer: Peer) {
        while let Some(pid) = self.region.header().take_idle() {
            self.starting.remove(&pid);
            let Some(child) = self.children.get(&pid) else { continue };
            if child.epoch != self.epoch {
                // Forked before the last reload: it would serve this client
                // with the old hba rules and users.
                self.shut_down(pid, true);
                continue;
            }
            let Link::Worker(mailbox) = &child.link else { continue };
            match mailbox.send(&Down::Push(WorkerPush::Client { peer }), Some(client.as_fd())) {
                Ok(()) => {
                    drop(client);
                    self.keep_spares();
                    return;
                }
                Err(e) => debug!(self.log, "idle worker did not take a client"; "worker" => pid, "error" => %e),
            }
        }
        self.spawn_worker(Some((client, peer)));
        self.keep_spares();
    }

    /// Fork spare workers until enough are idle or on their way.
    pub(super) fn keep_spares(&mut self) {
        let header = self.region.header();
        self.starting.retain(|&pid| !header.is_idle(pid));
        while self.phase == Phase::Running && self.region.header().idle_count() + self.starting.len() < SPARE_WORKERS {
            match self.spawn_worker(None) {
                Some(pid) => {
                    self.starting.insert(pid);
                }
                None => return,
            }
        }
    }

    /// Number of workers running.
    pub(super) fn worker_count(&self) -> usize {
        self.children.values().filter(|c| c.kind == Kind::Worker).count()
    }

    fn spawn_worker(&mut self, first: Option<(OwnedFd, Peer)>) -> Option<i32> {
        let (ours, theirs) = match Mailbox::pair(Contract::Worker) {
            Ok(pair) => pair,
            Err(e) => {
                error!(self.log, "cannot create a worker mailbox"; "error" => %e);
                return None;
            }
        };
        match self.spawn(Role::Worker { first, mailbox: theirs }, Link::Worker(ours)) {
            Ok(pid) => Some(pid),
            Err(Role::Worker { first: Some((client, _)), .. }) => {
                let refusal = encode::error_response("FATAL", "53300", "cannot start a worker for this connection");
                // SAFETY: a plain non-blocking send on the accepted socket.
                unsafe {
                    libc::send(
                        client.as_raw_fd(),
                        refusal.as_ptr().cast(),
                        refusal.len(),
                        libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                    )
                };
                None
            }
            Err(_) => None,
        }
    }
}
