//! Authentication without I/O: SCRAM-SHA-256 in both roles, MD5, stored
//! secrets and the SASL message formats. Nonces and salts are arguments, so
//! every exchange replays as a test; the worker's I/O code only drives these
//! state machines.

pub mod policy;
