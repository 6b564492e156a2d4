//! Hands this crate's sockets to the tokio reactor.
//!
//! `AsyncFd` registration is `unsafe` because the reactor needs the descriptor to stay open and
//! the same for as long as it is registered. Only types of this crate that own their
//! descriptor (open it, close it on drop, never swap it) can be registered here, which is what
//! makes the one `unsafe` call below sound.

use std::io;
use std::os::fd::AsRawFd;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

mod sealed {
    pub trait Sealed {}
}

/// A socket of this crate that owns its descriptor for its whole life.
pub trait OwnedSocket: AsRawFd + sealed::Sealed {}

impl sealed::Sealed for crate::ping::PingSocket {}
impl OwnedSocket for crate::ping::PingSocket {}

/// Registers `socket` for readability with the current tokio runtime.
pub fn register<T: OwnedSocket>(socket: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `OwnedSocket` is sealed to types of this crate that own their descriptor: it
    // stays open and unchanged until the socket is dropped, which happens only after the
    // `AsyncFd` that owns it is dropped or unwrapped.
    unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }.map_err(io::Error::from)
}
