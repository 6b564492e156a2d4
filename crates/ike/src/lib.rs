//! Sans-IO IKEv2 (RFC 7296) for v6gate: proposals in strongSwan syntax, key derivation, and
//! the IKE SA state machine that negotiates ESP CHILD SAs.
#![forbid(unsafe_code)]

pub mod crypto;
pub mod dh;
mod error;
pub mod identity;
pub mod keys;
mod peer;
pub mod proposal;

pub use error::{Error, Incompatibility, Misbehaviour};
pub use identity::Identity;
pub use peer::{
    ChildSaInfo, Config, DownReason, Dpd, DpdAction, Event, Peer, Retransmit, Transmit,
};

#[cfg(test)]
mod tests;
