//! Message contracts, one file per actor kind, carried by
//! [`crate::ipc::Mailbox`]. Every contract has the same shape, taken from a
//! command channel: an actor sends [`Up`] (calls, each with a request id,
//! notices that get no answer, and lifecycle replies) and receives [`Down`]
//! (answers that repeat the id of the call they answer, pushes the
//! supervisor sends on its own, and [`Lifecycle`] messages, common to all).
//!
//! - [`worker`]: client workers.
//! - [`service`]: the periodic services (idle timeout, max connection age,
//!   validation, pool maintenance).
//! - [`management`]: the remote-management actor.
//! - [`metrics`]: the Prometheus metrics actor.
//! - [`pool`]: the part both share: pooled server connections' fds.

pub mod management;
pub mod metrics;
pub mod pool;
pub mod service;
pub mod worker;

/// Identifies a call and its answer (and a ping and its pong).
pub type RequestId = u64;

/// How a call went.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Outcome<T> {
    Ok(T),
    Failure(String),
}

/// Sent by the supervisor to every actor. `R` is what the actor's
/// contract carries on a reload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Lifecycle<R> {
    /// Stop; `graceful` lets the current client (or pass) finish first.
    Shutdown { graceful: bool },
    /// The configuration files were re-read.
    Reload(R),
    /// Liveness check, answered with [`LifecycleReply::Pong`] and the same id.
    Ping { id: RequestId },
}

/// An actor's answer to a lifecycle message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LifecycleReply {
    Pong { id: RequestId },
}

/// Actor to supervisor: `C` the calls of the contract, `N` its notices.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Up<C, N> {
    /// Answered with [`Down::Answer`] carrying the same id.
    Call {
        id: RequestId,
        call: C,
    },
    /// Needs no answer.
    Notice(N),
    Lifecycle(LifecycleReply),
}

/// Supervisor to actor: `A` what calls are answered with, `P` the
/// supervisor's pushes, `R` what a reload carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Down<A, P, R> {
    Answer { id: RequestId, outcome: Outcome<A> },
    Push(P),
    Lifecycle(Lifecycle<R>),
}

impl<A, P, R> Down<A, P, R> {
    /// The call this answers; None for a push or a lifecycle message.
    pub fn answers(&self) -> Option<RequestId> {
        match self {
            Down::Answer { id, .. } => Some(*id),
            Down::Push(_) | Down::Lifecycle(_) => None,
        }
    }
}

/// A contract with no pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum NoPush {}

/// A part of a contract that carries nothing (no calls, so no answers; no
/// notices).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Never {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::{Contract, Mailbox, Received};

    type ToActor = Down<u32, String, u8>;
    type FromActor = Up<String, u8>;

    #[test]
    fn each_end_sends_its_own_direction() {
        let (sup, actor) = Mailbox::<ToActor, FromActor>::pair(Contract::Service).expect("pair");
        actor.send(&Up::Call { id: 7, call: "checkout".into() }, None).expect("send");
        let Received::Message(Up::Call { id, call }, None) = sup.recv().expect("recv") else { panic!("not a call") };
        assert_eq!((id, call.as_str()), (7, "checkout"));
        sup.send(&Down::Answer { id, outcome: Outcome::Ok(3) }, None).expect("answer");
        sup.send(&Down::Lifecycle(Lifecycle::Ping { id: 9 }), None).expect("ping");
        let Received::Message(answer, None) = actor.recv().expect("recv") else { panic!("no answer") };
        assert_eq!(answer.answers(), Some(7));
        let Received::Message(ping, None) = actor.recv().expect("recv") else { panic!("no ping") };
        assert_eq!(ping.answers(), None);
        assert_eq!(ping, Down::Lifecycle(Lifecycle::Ping { id: 9 }));
    }
}
