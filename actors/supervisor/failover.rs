//! Failover: when a worker or maintenance cannot reach the primary and
//! `failover = on`, it marks the server FAILOVER in shared memory; the
//! supervisor then runs `failover_script` (old host, old port, new host,
//! new port) in a helper, and on exit status 0 marks the old server FAILED
//! and the new one PRIMARY, closing the old server's idle connections; on
//! any other outcome both are marked FAILED (as upstream). Clients asking
//! for a new connection meanwhile get 53300 `server failover`. Also the
//! management side: `switch-to` and `clear server`.

use super::Supervisor;
use pgagroal::shmem::SlotState;
use pgagroal::shmem::servers::{self, ServerState};
use slog::{error, info, warn};

/// A failover script running in a helper.
#[derive(Debug, Clone, Copy)]
pub(super) struct Job {
    pub pid: i32,
    pub old: usize,
    pub new: usize,
}

impl Supervisor {
    /// The servers' states at start: the one marked `primary` first.
    pub(super) fn init_servers(&self) {
        let states = self.region.header().servers(self.config.servers.len());
        let marked = self.config.servers.iter().position(|s| s.primary);
        for i in 0..self.config.servers.len() {
            states.set(i, if Some(i) == marked { ServerState::NotInitPrimary } else { ServerState::NotInit });
        }
    }

    /// Start the failover script for a server marked FAILOVER, if none runs.
    pub(super) fn supervise_failover(&mut self) {
        if self.failover.is_some() {
            return;
        }
        let states = self.region.header().servers(self.config.servers.len());
        let all = states.all();
        let Some(old) = all.iter().position(|&s| s == ServerState::Failover) else { return };
        let Some(new) = servers::failover_target(&all, old) else {
            error!(self.log, "failover: no server to fail over to"; "server" => self.server_name(old));
            states.set(old, ServerState::Failed);
            return;
        };
        let (Some(from), Some(to)) = (self.config.servers.get(old).cloned(), self.config.servers.get(new).cloned())
        else {
            return;
        };
        let Some(script) = self.config.main.failover_script.clone() else {
            // The configuration check requires a script with failover = on.
            error!(self.log, "failover: no failover_script");
            states.set(old, ServerState::Failed);
            return;
        };
        warn!(self.log, "failover: running the failover script"; "from" => &from.name, "to" => &to.name,
              "script" => script.display().to_string());
        let pid = self.spawn_helper(move || {
            let status = std::process::Command::new(&script)
                .args([from.host.as_str(), &from.port.to_string(), to.host.as_str(), &to.port.to_string()])
                .stdin(std::process::Stdio::null())
                .status();
            match status {
                Ok(s) => s.code().unwrap_or(1),
                Err(_) => 127,
            }
        });
        match pid {
            Some(pid) => self.failover = Some(Job { pid, old, new }),
            None => {
                error!(self.log, "failover: cannot start the failover script");
                let states = self.region.header().servers(self.config.servers.len());
                states.set(old, ServerState::Failed);
                states.set(new, ServerState::Failed);
            }
        }
    }

    /// The failover script's helper ended (`failure` says how, None for
    /// exit status 0).
    pub(super) fn failover_done(&mut self, job: Job, failure: Option<&str>) {
        let states = self.region.header().servers(self.config.servers.len());
        states.set(job.old, ServerState::Failed);
        match failure {
            None => {
                states.set(job.new, ServerState::Primary);
                info!(self.log, "failover: new primary"; "server" => self.server_name(job.new),
                      "failed" => self.server_name(job.old));
                self.flush_server(job.old);
            }
            Some(how) => {
                states.set(job.new, ServerState::Failed);
                error!(self.log, "failover: the failover script failed; both servers are marked failed"; "how" => how,
                       "from" => self.server_name(job.old), "to" => self.server_name(job.new));
            }
        }
    }

    fn server_name(&self, index: usize) -> String {
        self.config.servers.get(index).map(|s| s.name.clone()).unwrap_or_default()
    }

    fn server_index(&self, name: &str) -> Result<usize, String> {
        self.config.servers.iter().position(|s| s.name == name).ok_or_else(|| format!("no server named '{name}'"))
    }

    /// Close the idle connections to a server that is no longer used; the
    /// ones in use are closed when their clients give them back.
    fn flush_server(&mut self, index: usize) {
        let idle: Vec<_> = self
            .region
            .slots()
            .iter()
            .filter(|(_, slot)| slot.server() as usize == index)
            .map(|(id, slot)| (id, slot.load()))
            .filter(|(_, word)| word.state == SlotState::Free)
            .collect();
        for (id, word) in idle {
            self.close_free(id, word, true);
        }
    }

    /// `switch-to`: make `name` the primary; the old one is marked FAILED
    /// and its idle connections are closed.
    pub(super) fn switch_to(&mut self, name: &str) -> Result<(), String> {
        let new = self.server_index(name)?;
        let old = {
            let states = self.region.header().servers(self.config.servers.len());
            let old = states.all().iter().position(|&s| s == ServerState::Primary).filter(|&old| old != new);
            if let Some(old) = old {
                states.set(old, ServerState::Failed);
            }
            states.set(new, ServerState::Primary);
            old
        };
        if let Some(old) = old {
            self.flush_server(old);
        }
        info!(self.log, "switched primary"; "server" => name, "old" => old.map(|o| self.server_name(o)));
        Ok(())
    }

    /// `clear server`: a FAILED server may be used again.
    pub(super) fn clear_server(&mut self, name: &str) -> Result<(), String> {
        let index = self.server_index(name)?;
        let states = self.region.header().servers(self.config.servers.len());
        if states.change(index, &[ServerState::Failed], ServerState::NotInit) {
            info!(self.log, "server cleared"; "server" => name);
        }
        Ok(())
    }
}
