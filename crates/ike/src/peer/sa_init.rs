//! IKE_SA_INIT (RFC 7296 §1.2): proposals, key exchange, nonces, NAT detection and cookies.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use wire::esp::NAT_T_PORT;
use wire::ike::{
    self, HeaderRepr, Ke, Message, Notify, Payload, exchange, flags, notify, payload_type as pt,
};

use crate::crypto::Prf;
use crate::dh::{DhGroup, KeyPair};
use crate::error::{Error, Incompatibility as Inc, Misbehaviour as Mis};
use crate::keys::{IkeKeys, nat_hash};
use crate::proposal::IkeSuite;

use super::*;

impl Peer {
    /// Answers an unparseable IKE_SA_INIT request whose header we can still read with the
    /// Notify §2.5 / §1.5 ask for: UNSUPPORTED_CRITICAL_PAYLOAD naming the payload type, or
    /// INVALID_MAJOR_VERSION. Other errors, and anything on an existing SA, go unanswered.
    pub(super) fn reject_init(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
        e: ike::Error,
    ) {
        let Ok(view) = ike::Header::new_checked(bytes) else {
            return;
        };
        if view.exchange_type() != exchange::IKE_SA_INIT
            || view.is_response()
            || view.responder_spi() != 0
            || view.message_id() != 0
        {
            return;
        }
        let n = match e {
            ike::Error::UnsupportedCritical(t) => {
                Notify::new(notify::UNSUPPORTED_CRITICAL_PAYLOAD, vec![t])
            }
            ike::Error::BadVersion(_) => Notify::new(notify::INVALID_MAJOR_VERSION, vec![]),
            _ => return,
        };
        let header = HeaderRepr {
            initiator_spi: view.initiator_spi(),
            responder_spi: 0,
            next_payload: 0,
            exchange_type: exchange::IKE_SA_INIT,
            flags: flags::RESPONSE,
            message_id: 0,
            length: 0,
        };
        self.transmits.push_back(Transmit {
            local,
            remote,
            payload: Message::emit_plain(&header, &[Payload::Notify(n)]),
        });
    }

    pub(super) fn send_init(&mut self, idx: usize, now: Instant) {
        let sa = &self.sas[idx];
        let Some(dh) = &sa.dh else { return };
        let mut payloads = Vec::new();
        if let Some(c) = &sa.cookie {
            payloads.push(Payload::Notify(Notify::new(notify::COOKIE, c.clone())));
        }
        let group = dh.group();
        let proposals = self
            .config
            .ike
            .iter()
            .enumerate()
            .map(|(i, p)| p.to_payload(proposal_number(i), &[], Some(group)))
            .collect();
        payloads.push(Payload::Sa(proposals));
        payloads.push(Payload::Ke(Ke {
            group: group.id(),
            data: dh.public().to_vec(),
        }));
        payloads.push(Payload::Nonce(sa.ni.clone()));
        payloads.extend(nat_notifies(sa.spi_i, 0, sa.local, sa.remote));
        let header = HeaderRepr {
            initiator_spi: sa.spi_i,
            responder_spi: 0,
            next_payload: 0,
            exchange_type: exchange::IKE_SA_INIT,
            flags: flags::INITIATOR,
            message_id: 0,
            length: 0,
        };
        let bytes = Message::emit_plain(&header, &payloads);
        let sa = &mut self.sas[idx];
        sa.init_request = bytes.clone();
        sa.next_mid = 1;
        sa.pending = Some(Pending {
            mid: 0,
            bytes: bytes.clone(),
            sends: 1,
            next_at: now + self.config.retransmit.timeout(0),
            deadline: None,
            sent: Sent::Init,
        });
        self.transmit(idx, bytes);
    }

    pub(super) fn init_request(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
        msg: &Message,
    ) -> Result<(), Error> {
        let h = msg.header;
        let reply = |payloads: Vec<Payload>| {
            let header = HeaderRepr {
                initiator_spi: h.initiator_spi,
                responder_spi: 0,
                next_payload: 0,
                exchange_type: exchange::IKE_SA_INIT,
                flags: flags::RESPONSE,
                message_id: 0,
                length: 0,
            };
            Transmit {
                local,
                remote,
                payload: Message::emit_plain(&header, &payloads),
            }
        };
        let (Some(sa), Some(ke), Some(ni)) = (
            find_sa(&msg.payloads),
            find_ke(&msg.payloads),
            find_nonce(&msg.payloads),
        ) else {
            return Err(Error::PeerMisbehaved(Mis::MissingPayload(pt::SA)));
        };
        // §2.6: under load, make the initiator prove it can receive at its address.
        let cookie = self.cookie(ni, remote.ip(), h.initiator_spi);
        if self.half_open_count() >= self.config.cookie_threshold {
            let got = msg
                .notifies(notify::COOKIE)
                .next()
                .map(|n| n.data.as_slice());
            if got != Some(cookie.as_slice()) {
                self.transmits
                    .push_back(reply(vec![Payload::Notify(Notify::new(
                        notify::COOKIE,
                        cookie,
                    ))]));
                return Ok(());
            }
        }
        let Some(suite) = sa.iter().find_map(|p| {
            self.config
                .ike
                .iter()
                .find_map(|ours| ours.select(p))
                .map(|s| (s, p.number))
        }) else {
            let n = Notify::new(notify::NO_PROPOSAL_CHOSEN, vec![]);
            self.transmits.push_back(reply(vec![Payload::Notify(n)]));
            return Err(Error::PeerIncompatible(Inc::NoProposalChosen));
        };
        let (suite, number) = suite;
        if ke.group != suite.dh.id() {
            // §1.2: tell the initiator which group we want; keep no state.
            let n = Notify::new(
                notify::INVALID_KE_PAYLOAD,
                suite.dh.id().to_be_bytes().to_vec(),
            );
            self.transmits.push_back(reply(vec![Payload::Notify(n)]));
            return Err(Error::PeerIncompatible(Inc::InvalidKe(suite.dh.id())));
        }
        let dh = suite.dh.generate(&mut *self.rng);
        let shared = dh
            .agree(&ke.data)
            .map_err(|_| Error::PeerMisbehaved(Mis::BadPublicValue))?;
        let spi_r = self.random_ike_spi();
        let nr = self.random_bytes(NONCE_LEN);
        let keys = IkeKeys::derive(&suite, &shared, ni, &nr, h.initiator_spi, spi_r);
        let nat = self.nat_check(msg, h.initiator_spi, local, remote);
        let mut payloads = vec![
            Payload::Sa(vec![suite.to_payload(number, &[])]),
            Payload::Ke(Ke {
                group: suite.dh.id(),
                data: dh.public().to_vec(),
            }),
            Payload::Nonce(nr.clone()),
        ];
        payloads.extend(nat_notifies(h.initiator_spi, spi_r, local, remote));
        let header = HeaderRepr {
            initiator_spi: h.initiator_spi,
            responder_spi: spi_r,
            next_payload: 0,
            exchange_type: exchange::IKE_SA_INIT,
            flags: flags::RESPONSE,
            message_id: 0,
            length: 0,
        };
        let response = Message::emit_plain(&header, &payloads);
        self.sas.push(IkeSa {
            spi_i: h.initiator_spi,
            spi_r,
            initiator: false,
            state: State::HalfOpen,
            suite: Some(suite),
            keys: Some(keys),
            ni: ni.to_vec(),
            nr,
            dh: None,
            cookie: None,
            init_request: bytes[..h.length as usize].to_vec(),
            init_response: response.clone(),
            next_mid: 0,
            peer_mid: 1,
            pending: None,
            queue: VecDeque::new(),
            last_response: Some((0, response.clone())),
            last_request: digest(&bytes[..h.length as usize]),
            children: Vec::new(),
            local,
            remote,
            nat,
            created: now,
            last_heard: now,
            rekey_at: None,
            dying: false,
            ike_rekeyed_by_peer: None,
        });
        let idx = self.sas.len() - 1;
        self.transmit(idx, response);
        Ok(())
    }

    pub(super) fn init_response(
        &mut self,
        idx: usize,
        now: Instant,
        bytes: &[u8],
        msg: &Message,
    ) -> Result<(), Error> {
        if let Some(c) = msg.notifies(notify::COOKIE).next() {
            self.sas[idx].cookie = Some(c.data.clone());
            self.send_init(idx, now);
            return Ok(());
        }
        if let Some(n) = msg.notifies(notify::INVALID_KE_PAYLOAD).next() {
            let want = n
                .data
                .get(..2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .and_then(DhGroup::from_id)
                .filter(|g| self.config.ike.iter().any(|p| p.dh.contains(g)));
            let Some(group) = want else {
                let e = Error::PeerIncompatible(Inc::NoProposalChosen);
                self.remove_sa(idx, DownReason::Failed(e.clone()));
                return Err(e);
            };
            let current = self.sas[idx].dh.as_ref().map(KeyPair::group);
            if current == Some(group) {
                // Asked for the group we used: the peer is confused; stop rather than loop.
                let e = Error::PeerMisbehaved(Mis::ErrorNotify(notify::INVALID_KE_PAYLOAD));
                self.remove_sa(idx, DownReason::Failed(e.clone()));
                return Err(e);
            }
            self.sas[idx].dh = Some(group.generate(&mut *self.rng));
            self.send_init(idx, now);
            return Ok(());
        }
        if let Some(n) = msg.payloads.iter().find_map(|p| match p {
            Payload::Notify(n) if notify::is_error(n.notify_type) => Some(n.notify_type),
            _ => None,
        }) {
            let e = if n == notify::NO_PROPOSAL_CHOSEN {
                Error::PeerIncompatible(Inc::NoProposalChosen)
            } else {
                Error::PeerMisbehaved(Mis::ErrorNotify(n))
            };
            self.remove_sa(idx, DownReason::Failed(e.clone()));
            return Err(e);
        }
        let (Some(sa_p), Some(ke), Some(nr)) = (
            find_sa(&msg.payloads),
            find_ke(&msg.payloads),
            find_nonce(&msg.payloads),
        ) else {
            return Err(Error::PeerMisbehaved(Mis::MissingPayload(pt::SA)));
        };
        let suite = match sa_p {
            [p] => IkeSuite::from_accepted(p),
            _ => None,
        }
        .filter(|s| self.config.ike.iter().any(|o| o.allows(s)))
        .ok_or(Error::PeerMisbehaved(Mis::ChoseUnofferedProposal))?;
        let sa = &self.sas[idx];
        let dh = sa.dh.as_ref().ok_or(Error::ApiMisuse("no DH state"))?;
        if ke.group != suite.dh.id() || dh.group() != suite.dh {
            return Err(Error::PeerMisbehaved(Mis::ChoseUnofferedProposal));
        }
        let shared = dh
            .agree(&ke.data)
            .map_err(|_| Error::PeerMisbehaved(Mis::BadPublicValue))?;
        let h = msg.header;
        let keys = IkeKeys::derive(&suite, &shared, &sa.ni, nr, sa.spi_i, h.responder_spi);
        let nat = self.nat_check(msg, h.initiator_spi, sa.local, sa.remote);
        let sa = &mut self.sas[idx];
        sa.spi_r = h.responder_spi;
        sa.suite = Some(suite);
        sa.keys = Some(keys);
        sa.nr = nr.to_vec();
        sa.dh = None;
        sa.init_response = bytes[..h.length as usize].to_vec();
        sa.pending = None;
        sa.state = State::AuthSent;
        if nat {
            // §2.23: the initiator moves to port 4500 once a NAT is seen.
            sa.nat = true;
            sa.local.set_port(NAT_T_PORT);
            sa.remote.set_port(NAT_T_PORT);
        }
        self.send_auth(idx, now);
        Ok(())
    }

    /// Checks the NAT detection notifies of an IKE_SA_INIT message; returns whether a NAT is
    /// between us and reports it.
    pub(super) fn nat_check(
        &mut self,
        msg: &Message,
        spi_i: u64,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> bool {
        let h = msg.header;
        // Hashes in the request use SPIr 0; the response's use the real SPIr.
        let spi_r = if h.is_response() { h.responder_spi } else { 0 };
        let src = msg
            .notifies(notify::NAT_DETECTION_SOURCE_IP)
            .collect::<Vec<_>>();
        let Some(dst) = msg.notifies(notify::NAT_DETECTION_DESTINATION_IP).next() else {
            return false;
        };
        if src.is_empty() {
            return false;
        }
        let remote_hash = nat_hash(spi_i, spi_r, remote.ip(), remote.port());
        let local_hash = nat_hash(spi_i, spi_r, local.ip(), local.port());
        let remote_behind_nat = !src.iter().any(|n| n.data == remote_hash);
        let local_behind_nat = dst.data != local_hash;
        if local_behind_nat || remote_behind_nat {
            self.events.push_back(Event::NatDetected {
                local_behind_nat,
                remote_behind_nat,
            });
            true
        } else {
            false
        }
    }

    pub(super) fn cookie(&self, ni: &[u8], addr: IpAddr, spi_i: u64) -> Vec<u8> {
        let ip = match addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        // §2.6: <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>).
        let mut c = vec![1u8];
        let mac = Prf::HmacSha256.compute(&self.cookie_secret, &[ni, &ip, &spi_i.to_be_bytes()]);
        c.extend_from_slice(&mac[..16]);
        c
    }
}

pub(super) fn nat_notifies(
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
) -> [Payload; 2] {
    [
        Payload::Notify(Notify::new(
            notify::NAT_DETECTION_SOURCE_IP,
            nat_hash(spi_i, spi_r, local.ip(), local.port()).to_vec(),
        )),
        Payload::Notify(Notify::new(
            notify::NAT_DETECTION_DESTINATION_IP,
            nat_hash(spi_i, spi_r, remote.ip(), remote.port()).to_vec(),
        )),
    ]
}
