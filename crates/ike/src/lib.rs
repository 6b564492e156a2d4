//! Sans-IO IKEv2 (RFC 7296) for v6gate: proposals in strongSwan syntax, key derivation, and
//! the IKE SA state machine that negotiates ESP CHILD SAs.
//!
//! Rooms: `proposal` (strongSwan proposal strings, SA payloads, selection), `crypto` (PRF,
//! prf+, integrity, SK payload protection), `dh` (groups 2, 14, 19, 20, 31), `keys`
//! (SKEYSEED, SK_*, CHILD KEYMAT, PSK AUTH, NAT hashes), `identity` (IDs and traffic selector
//! narrowing), `peer` (the state machine), `v1` (IKEv1 main and quick mode). The wire format
//! lives in `wire::ike`; ESP itself in `dataplane::esp`. [`Core`] is what the peers of both
//! versions offer a shell that drives either one.
//!
//! A [`Peer`] is driven with datagrams and the current time, and answers with datagrams,
//! timers and events; it never touches a socket or a clock:
//!
//! ```
//! use std::time::Instant;
//! use ike::{Config, Event, Peer};
//! use ike::proposal::{EspProposal, IkeProposal};
//! use rand_core::OsRng;
//! use wire::ike::TrafficSelector;
//!
//! let ts = |a: &str, b: &str| TrafficSelector::range(a.parse().unwrap(), b.parse().unwrap());
//! let mut config = Config::new(
//!     b"shared secret",
//!     vec![ts("198.18.1.0", "198.18.1.255")],
//!     vec![ts("198.18.2.0", "198.18.2.255")],
//! );
//! config.ike = vec![IkeProposal::parse("aes128gcm16-prfsha256-ecp256")?];
//! config.esp = vec![EspProposal::parse("aes128gcm16")?];
//!
//! let mut peer = Peer::new(config, Box::new(OsRng));
//! let now = Instant::now();
//! peer.initiate(now, "198.51.100.1:500".parse()?, "203.0.113.1:500".parse()?)?;
//! let first = peer.poll_transmit().expect("IKE_SA_INIT request");
//! assert_eq!(first.remote.port(), 500);
//! // ... send it, feed answers to `handle_datagram`, call `handle_timeout` at
//! // `poll_timeout`, and install what `poll_event` reports:
//! while let Some(event) = peer.poll_event() {
//!     if let Event::ChildSaEstablished(child) = event {
//!         println!("install SPI {:#x} -> {:#x}", child.spi_in, child.spi_out);
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod crypto;
pub mod dh;
mod driving;
mod error;
pub mod identity;
pub mod keys;
mod peer;
pub mod proposal;
pub mod v1;
pub mod words;

pub use driving::Core;
pub use error::{Error, Incompatibility, Misbehaviour};
pub use identity::Identity;
pub use peer::{
    Backoff, ChildSaInfo, Config, DownReason, Dpd, DpdAction, Event, Peer, RECOVERY_INTERVAL,
    Reinitiation, Retransmit, Transmit,
};

#[cfg(test)]
mod tests;
