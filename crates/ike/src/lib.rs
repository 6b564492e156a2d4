//! Sans-IO IKEv2 (RFC 7296) for v6gate: proposals in strongSwan syntax, key derivation, and
//! the IKE SA state machine that negotiates ESP CHILD SAs.
#![forbid(unsafe_code)]

pub mod crypto;
pub mod dh;
mod error;
pub mod keys;
pub mod proposal;

pub use error::{Error, Incompatibility, Misbehaviour};
