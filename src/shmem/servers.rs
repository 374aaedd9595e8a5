//! The configured servers' states in shared memory, and the pure rules
//! that read them: which server new connections go to, and which one a
//! failover moves to. The states are upstream's: a server not yet used
//! (marked `primary` in its section or not), the primary, a replica, one
//! being failed over, and a failed one (until `clear server`).

use std::sync::atomic::{AtomicU8, Ordering};

/// A server's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ServerState {
    /// Not connected to yet.
    NotInit = 0,
    /// Not connected to yet; its section says `primary = on`.
    NotInitPrimary = 1,
    /// New connections go here.
    Primary = 2,
    Replica = 3,
    /// Could not be reached; the failover script is running.
    Failover = 4,
    /// Failed over from (or a failover to it failed); used again only
    /// after `clear server`.
    Failed = 5,
}

impl ServerState {
    pub fn from_u8(v: u8) -> ServerState {
        match v {
            1 => ServerState::NotInitPrimary,
            2 => ServerState::Primary,
            3 => ServerState::Replica,
            4 => ServerState::Failover,
            5 => ServerState::Failed,
            _ => ServerState::NotInit,
        }
    }

    /// As `status` shows it.
    pub fn name(self) -> &'static str {
        match self {
            ServerState::NotInit => "Not init",
            ServerState::NotInitPrimary => "Not init (primary)",
            ServerState::Primary => "Primary",
            ServerState::Replica => "Replica",
            ServerState::Failover => "Failover",
            ServerState::Failed => "Failed",
        }
    }

    /// As upstream's metrics label it.
    pub fn label(self) -> &'static str {
        match self {
            ServerState::NotInit | ServerState::NotInitPrimary => "not_init",
            ServerState::Primary => "primary",
            ServerState::Replica => "replica",
            ServerState::Failover => "failover",
            ServerState::Failed => "failed",
        }
    }

    fn usable(self) -> bool {
        !matches!(self, ServerState::Failover | ServerState::Failed)
    }
}

/// The server new connections go to: the primary, else the one marked
/// primary, else the first that is neither failed nor failing over.
pub fn primary(states: &[ServerState]) -> Option<usize> {
    let find = |want: ServerState| states.iter().position(|&s| s == want);
    find(ServerState::Primary)
        .or_else(|| find(ServerState::NotInitPrimary))
        .or_else(|| states.iter().position(|s| s.usable()))
}

/// Servers a new connection may try in turn while no server is known to be
/// the primary (the first reachable becomes it): the one marked primary
/// first, then the others in order. Empty once there is a primary.
pub fn candidates(states: &[ServerState]) -> Vec<usize> {
    if states.contains(&ServerState::Primary) {
        return Vec::new();
    }
    let marked = states.iter().position(|&s| s == ServerState::NotInitPrimary);
    marked.into_iter().chain((0..states.len()).filter(|&i| Some(i) != marked && states[i].usable())).collect()
}

/// Where a failover from `old` goes: the first other server not used yet
/// or a replica.
pub fn failover_target(states: &[ServerState], old: usize) -> Option<usize> {
    states.iter().enumerate().position(|(i, s)| {
        i != old && matches!(s, ServerState::NotInit | ServerState::NotInitPrimary | ServerState::Replica)
    })
}

/// The shared array of states, one per configured server.
pub struct ServerStates<'a> {
    pub(crate) cells: &'a [AtomicU8],
}

impl ServerStates<'_> {
    pub fn get(&self, i: usize) -> ServerState {
        self.cells.get(i).map_or(ServerState::Failed, |c| ServerState::from_u8(c.load(Ordering::Acquire)))
    }

    pub fn set(&self, i: usize, state: ServerState) {
        if let Some(c) = self.cells.get(i) {
            c.store(state as u8, Ordering::Release);
        }
    }

    /// `from -> to` if the server is in one of `from`; true when done.
    pub fn change(&self, i: usize, from: &[ServerState], to: ServerState) -> bool {
        let Some(c) = self.cells.get(i) else { return false };
        from.iter().any(|&f| c.compare_exchange(f as u8, to as u8, Ordering::AcqRel, Ordering::Acquire).is_ok())
    }

    pub fn all(&self) -> Vec<ServerState> {
        (0..self.cells.len()).map(|i| self.get(i)).collect()
    }

    /// The server new connections go to now (see [`primary`]).
    pub fn primary(&self) -> Option<usize> {
        primary(&self.all())
    }
}

#[cfg(test)]
mod tests {
    use super::ServerState::*;
    use super::*;

    #[test]
    fn the_primary_is_known_else_marked_else_first_usable() {
        assert_eq!(primary(&[NotInit, Primary]), Some(1));
        assert_eq!(primary(&[NotInit, NotInitPrimary]), Some(1));
        assert_eq!(primary(&[Failed, Failover, NotInit]), Some(2));
        assert_eq!(primary(&[Failed, Failover]), None);
        assert_eq!(primary(&[]), None);
    }

    #[test]
    fn candidates_only_while_no_primary() {
        assert_eq!(candidates(&[NotInit, NotInitPrimary, Failed, NotInit]), vec![1, 0, 3]);
        assert_eq!(candidates(&[NotInit, Primary]), Vec::<usize>::new());
    }

    #[test]
    fn failover_goes_to_the_next_unused_or_replica() {
        assert_eq!(failover_target(&[Failover, NotInit], 0), Some(1));
        assert_eq!(failover_target(&[Failed, Failover, Replica], 1), Some(2));
        assert_eq!(failover_target(&[Failover, Failed], 0), None);
    }
}
