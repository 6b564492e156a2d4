//! Informational exchanges (RFC 2409 §5.7): notifications and deletes protected by
//! HASH(1) = prf(SKEYID_a, M-ID | N/D), dead peer detection (RFC 3706) and INITIAL-CONTACT,
//! and the unprotected error notifies a peer may send before phase 1 is done.

use std::net::SocketAddr;
use std::time::Instant;

use wire::ikev1::{self, DOI_IPSEC, Delete, Message, Notify, Payload, exchange, notify, protocol};

use super::quick_mode::hashed_chain;
use super::{Peer, Phase1, Probe};
use crate::error::{Error, Misbehaviour as Mis};
use crate::{DownReason, DpdAction};

fn esp_delete(spis: &[u32]) -> Payload {
    Payload::Delete(Delete {
        doi: DOI_IPSEC,
        protocol: protocol::ESP,
        spi_size: 4,
        spis: spis.iter().map(|s| s.to_be_bytes().to_vec()).collect(),
    })
}

/// Notify types below this are errors (RFC 2408 §3.14.1).
const FIRST_STATUS: u16 = 8192;

impl Peer {
    /// Sends one protected informational message over ISAKMP SA `idx`.
    fn send_informational(&mut self, idx: usize, payloads: &[Payload]) {
        let mid = self.random_mid();
        let (prf, key) = {
            let sa = &self.sas[idx];
            match (sa.suite, &sa.keys) {
                (Some(s), Some(k)) => (s.hash.prf(), k.skeyid_a.to_vec()),
                _ => return,
            }
        };
        let chain = hashed_chain(prf, &key, &[&mid.to_be_bytes()], payloads);
        let sa = &self.sas[idx];
        let iv = sa.phase2_iv(mid);
        let (bytes, _) = self.seal_hashed(idx, exchange::INFORMATIONAL, mid, &iv, &chain);
        let (l, r) = (self.sas[idx].local, self.sas[idx].remote);
        self.transmit(l, r, bytes);
    }

    pub(super) fn send_delete_esp(&mut self, _now: Instant, idx: usize, spis: &[u32]) {
        if !spis.is_empty() {
            self.send_informational(idx, &[esp_delete(spis)]);
        }
    }

    pub(super) fn send_delete_isakmp(&mut self, _now: Instant, idx: usize) {
        let d = self.isakmp_delete(idx);
        self.send_informational(idx, &[d]);
    }

    fn isakmp_delete(&self, idx: usize) -> Payload {
        Payload::Delete(Delete {
            doi: DOI_IPSEC,
            protocol: protocol::ISAKMP,
            spi_size: 16,
            spis: vec![self.sas[idx].cookies.bytes().to_vec()],
        })
    }

    fn send_dpd(&mut self, idx: usize, kind: u16, seq: u32) {
        let spi = self.sas[idx].cookies.bytes().to_vec();
        self.send_informational(
            idx,
            &[Payload::Notify(Notify {
                doi: DOI_IPSEC,
                protocol: protocol::ISAKMP,
                notify_type: kind,
                spi,
                data: seq.to_be_bytes().to_vec(),
            })],
        );
    }

    /// Sends the next R-U-THERE of a probe (RFC 3706 §5.5: each with a fresh sequence).
    pub(super) fn probe(&mut self, now: Instant, idx: usize) {
        let Some(dpd) = self.config.dpd else {
            return;
        };
        let sa = &mut self.sas[idx];
        sa.dpd_seq = sa.dpd_seq.wrapping_add(1);
        let seq = sa.dpd_seq;
        let wait = dpd.delay.min(self.config.retransmit.base);
        sa.probe = Some(match sa.probe {
            Some(p) => Probe {
                seq,
                next_at: now + wait,
                ..p
            },
            None => Probe {
                seq,
                first: now,
                next_at: now + wait,
            },
        });
        self.send_dpd(idx, notify::R_U_THERE, seq);
    }

    /// The peer stopped answering: everything with it goes; DPD's action decides what next.
    pub(super) fn peer_dead(&mut self, now: Instant) {
        let restart = self
            .config
            .dpd
            .is_some_and(|d| d.action == DpdAction::Restart);
        let endpoints = self.endpoints.or_else(|| {
            self.current()
                .map(|i| (self.sas[i].local, self.sas[i].remote))
        });
        self.quick.clear();
        self.drop_children();
        for idx in (0..self.sas.len()).rev() {
            self.remove_sa(idx, DownReason::Timeout);
        }
        if restart && let Some((mut local, mut remote)) = endpoints {
            // Back to port 500: NAT detection runs again.
            local.set_port(500);
            remote.set_port(500);
            let _ = self.initiate(now, local, remote);
        }
    }

    pub(super) fn informational(
        &mut self,
        now: Instant,
        _local: SocketAddr,
        _remote: SocketAddr,
        msg: &Message<'_>,
    ) -> Result<(), Error> {
        let h = msg.header;
        if !h.is_encrypted() {
            return self.unprotected_notify(msg);
        }
        let idx = self
            .find_sa(&h)
            .filter(|&i| self.sas[i].state == Phase1::Established)
            .ok_or(Error::PeerMisbehaved(Mis::UnknownSpi))?;
        let iv = { self.sas[idx].phase2_iv(h.message_id) };
        let v = self.open_hashed(idx, msg, &iv, &[&h.message_id.to_be_bytes()])?;
        self.sas[idx].last_heard = now;
        let cookies = self.sas[idx].cookies;
        let mut idx = idx;
        for p in v.payloads {
            match p {
                Payload::Notify(n) if n.notify_type == notify::R_U_THERE => {
                    if let Ok(seq) = <[u8; 4]>::try_from(n.data.as_slice()) {
                        self.send_dpd(idx, notify::R_U_THERE_ACK, u32::from_be_bytes(seq));
                    }
                }
                Payload::Notify(n) if n.notify_type == notify::R_U_THERE_ACK => {
                    let seq = <[u8; 4]>::try_from(n.data.as_slice())
                        .ok()
                        .map(u32::from_be_bytes);
                    let sa = &mut self.sas[idx];
                    if sa.probe.is_some_and(|p| Some(p.seq) == seq) {
                        sa.probe = None;
                    }
                }
                Payload::Notify(n) if n.notify_type == notify::INITIAL_CONTACT => {
                    idx = self.peer_restarted(idx);
                }
                Payload::Delete(d) if d.protocol == protocol::ESP && d.spi_size == 4 => {
                    for spi in &d.spis {
                        let Ok(b) = <[u8; 4]>::try_from(spi.as_slice()) else {
                            continue;
                        };
                        let out = u32::from_be_bytes(b);
                        if let Some(c) = self.children.iter().find(|c| c.info.spi_out == out) {
                            let spi_in = c.info.spi_in;
                            self.remove_child(spi_in);
                        }
                    }
                }
                Payload::Delete(d) if d.protocol == protocol::ISAKMP && d.spi_size == 16 => {
                    for spi in &d.spis {
                        if let Some(i) = self
                            .sas
                            .iter()
                            .position(|s| s.cookies.bytes()[..] == spi[..])
                        {
                            self.remove_sa(i, DownReason::Deleted);
                        }
                    }
                    if self.current().is_none() {
                        // IKEv1 lets ESP SAs outlive their ISAKMP SA, but with none left
                        // nobody could rekey or delete them, and the next main mode would
                        // not make new ones while they exist: they go too.
                        self.quick.clear();
                        self.drop_children();
                    }
                    // Positions moved; nothing after a delete of our own SA is meaningful.
                    if !self.sas.iter().any(|s| s.cookies == cookies) {
                        break;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// An unencrypted notify can only matter while phase 1 is still negotiating, and can be
    /// forged by anyone on the path: it ends an attempt of ours, never an established SA.
    fn unprotected_notify(&mut self, msg: &Message<'_>) -> Result<(), Error> {
        let h = msg.header;
        let Some(idx) = self.sas.iter().position(|s| {
            s.initiator
                && s.state != Phase1::Established
                && s.cookies.i == h.initiator_cookie
                && (s.cookies.r == h.responder_cookie || h.responder_cookie == 0)
        }) else {
            return Err(Error::PeerMisbehaved(Mis::UnknownSpi));
        };
        let parsed = ikev1::parse_payloads(h.next_payload, msg.body).map_err(super::wire_error)?;
        for p in parsed {
            if let Payload::Notify(n) = p.payload
                && n.notify_type < FIRST_STATUS
            {
                let e = Error::PeerMisbehaved(Mis::ErrorNotify(n.notify_type));
                self.remove_sa(idx, DownReason::Failed(e.clone()));
                return Err(e);
            }
        }
        Ok(())
    }
}
