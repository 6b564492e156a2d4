//! What both versions' cores offer a shell that drives either one: datagrams, ESP liveness
//! and timeouts in; transmits, timers and events out; the SAs it holds. [`crate::Peer`] and
//! [`crate::v1::Peer`] implement it with their own methods of the same names.

use std::net::SocketAddr;
use std::time::Instant;

use crate::{ChildSaInfo, Error, Event, Transmit};

pub trait Core {
    fn initiate(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<(), Error>;
    fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), Error>;
    fn handle_esp_received(&mut self, now: Instant, spi_in: u32);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_timeout(&self) -> Option<Instant>;
    fn poll_transmit(&mut self) -> Option<Transmit>;
    fn poll_event(&mut self) -> Option<Event>;
    fn rekey_child(&mut self, now: Instant, spi_in: u32) -> Result<(), Error>;
    fn delete(&mut self, now: Instant);
    fn is_established(&self) -> bool;
    fn ike_sa_count(&self) -> usize;
    fn half_open_count(&self) -> usize;
    fn child_sas(&self) -> impl Iterator<Item = &ChildSaInfo>;
}

/// Implements [`Core`] for a peer type by its inherent methods.
macro_rules! core_by_inherent_methods {
    ($peer:ty) => {
        impl Core for $peer {
            fn initiate(
                &mut self,
                now: Instant,
                local: SocketAddr,
                remote: SocketAddr,
            ) -> Result<(), Error> {
                <$peer>::initiate(self, now, local, remote)
            }
            fn handle_datagram(
                &mut self,
                now: Instant,
                local: SocketAddr,
                remote: SocketAddr,
                bytes: &[u8],
            ) -> Result<(), Error> {
                <$peer>::handle_datagram(self, now, local, remote, bytes)
            }
            fn handle_esp_received(&mut self, now: Instant, spi_in: u32) {
                <$peer>::handle_esp_received(self, now, spi_in);
            }
            fn handle_timeout(&mut self, now: Instant) {
                <$peer>::handle_timeout(self, now);
            }
            fn poll_timeout(&self) -> Option<Instant> {
                <$peer>::poll_timeout(self)
            }
            fn poll_transmit(&mut self) -> Option<Transmit> {
                <$peer>::poll_transmit(self)
            }
            fn poll_event(&mut self) -> Option<Event> {
                <$peer>::poll_event(self)
            }
            fn rekey_child(&mut self, now: Instant, spi_in: u32) -> Result<(), Error> {
                <$peer>::rekey_child(self, now, spi_in)
            }
            fn delete(&mut self, now: Instant) {
                <$peer>::delete(self, now);
            }
            fn is_established(&self) -> bool {
                <$peer>::is_established(self)
            }
            fn ike_sa_count(&self) -> usize {
                <$peer>::ike_sa_count(self)
            }
            fn half_open_count(&self) -> usize {
                <$peer>::half_open_count(self)
            }
            fn child_sas(&self) -> impl Iterator<Item = &ChildSaInfo> {
                <$peer>::child_sas(self)
            }
        }
    };
}

core_by_inherent_methods!(crate::Peer);
core_by_inherent_methods!(crate::v1::Peer);
