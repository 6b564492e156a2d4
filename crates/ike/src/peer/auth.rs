//! IKE_AUTH (RFC 7296 §1.2): identities, the pre-shared-key AUTH payload and the first CHILD SA.

use std::time::Instant;

use wire::ike::{
    self, Id, Notify, Payload, Proposal, auth_method, exchange, notify, payload_type as pt,
};

use crate::dh::DhGroup;
use crate::error::{Error, Incompatibility as Inc, Misbehaviour as Mis};
use crate::identity::Identity;
use crate::keys::psk_auth;

use super::*;

impl Peer {
    pub(super) fn local_identity(&self, sa: &IkeSa) -> Identity {
        self.config
            .local_id
            .clone()
            .unwrap_or(Identity::Addr(sa.local.ip()))
    }

    pub(super) fn remote_identity(&self, sa: &IkeSa) -> Identity {
        self.config
            .remote_id
            .clone()
            .unwrap_or(Identity::Addr(sa.remote.ip()))
    }

    /// Whether `id` is an identity the peer may prove: the configured one, or one with a
    /// key of its own.
    fn accepts(&self, sa: &IkeSa, id: &Id) -> bool {
        self.remote_identity(sa).matches(id)
            || self.config.remote_psks.iter().any(|(i, _)| i.matches(id))
    }

    /// AUTH data that `initiator_side` (original initiator or responder) must send, keyed
    /// with `psk`.
    pub(super) fn auth_data(
        &self,
        sa: &IkeSa,
        psk: &[u8],
        from_initiator: bool,
        id: &Id,
    ) -> Vec<u8> {
        let (Some(suite), Some(keys)) = (&sa.suite, &sa.keys) else {
            return Vec::new();
        };
        if from_initiator {
            psk_auth(
                suite.prf,
                psk,
                &sa.init_request,
                &sa.nr,
                &keys.sk_pi,
                &id.body(),
            )
        } else {
            psk_auth(
                suite.prf,
                psk,
                &sa.init_response,
                &sa.ni,
                &keys.sk_pr,
                &id.body(),
            )
        }
    }

    pub(super) fn send_auth(&mut self, idx: usize, now: Instant) {
        let spi_in = self.random_esp_spi();
        let sa = &self.sas[idx];
        let id = self.local_identity(sa).to_payload();
        let auth = self.auth_data(sa, self.config.psk_for_expected(), true, &id);
        let mut payloads = vec![Payload::IdI(id)];
        if let Some(r) = &self.config.remote_id {
            payloads.push(Payload::IdR(r.to_payload()));
        }
        payloads.push(Payload::Auth {
            method: auth_method::SHARED_KEY_MIC,
            data: auth,
        });
        payloads.push(Payload::Notify(Notify::new(
            notify::INITIAL_CONTACT,
            vec![],
        )));
        payloads.push(Payload::Sa(self.esp_proposals(spi_in, None)));
        payloads.push(Payload::TsI(self.config.local_ts.clone()));
        payloads.push(Payload::TsR(self.config.remote_ts.clone()));
        self.send_request(
            idx,
            now,
            exchange::IKE_AUTH,
            &payloads,
            Sent::Auth { spi_in },
        );
    }

    pub(super) fn esp_proposals(&self, spi_in: u32, pfs: Option<DhGroup>) -> Vec<Proposal> {
        self.config
            .esp
            .iter()
            .enumerate()
            .map(|(i, p)| p.to_payload(proposal_number(i), spi_in, pfs))
            .collect()
    }

    pub(super) fn auth_request(
        &mut self,
        idx: usize,
        now: Instant,
        payloads: &[Payload],
    ) -> Result<Vec<Payload>, Error> {
        let sa = &self.sas[idx];
        let id = payloads.iter().find_map(|p| match p {
            Payload::IdI(id) => Some(id),
            _ => None,
        });
        let auth = payloads.iter().find_map(|p| match p {
            Payload::Auth { method, data } => Some((*method, data)),
            _ => None,
        });
        let (Some(id), Some((method, data))) = (id, auth) else {
            return Err(Error::PeerMisbehaved(Mis::MissingPayload(pt::AUTH)));
        };
        if method != auth_method::SHARED_KEY_MIC {
            return Err(Error::PeerIncompatible(Inc::UnsupportedAuthMethod(method)));
        }
        if !self.accepts(sa, id) {
            return Err(Error::PeerIncompatible(Inc::IdentityMismatch));
        }
        // The peer's ID picks the key (RFC 7296 §2.15: the secret associated with it).
        let psk = self.config.psk_for(id);
        let expect = self.auth_data(sa, psk, true, id);
        if !ct_eq(&expect, data) {
            return Err(Error::PeerMisbehaved(Mis::BadAuth));
        }
        let local_id = self.local_identity(sa).to_payload();
        let my_auth = self.auth_data(sa, psk, false, &local_id);
        let replace = ike::notifies(payloads, notify::INITIAL_CONTACT)
            .next()
            .is_some();
        self.sas[idx].state = State::Established;
        self.sas[idx].last_heard = now;
        self.up(idx, now, replace);
        let mut out = vec![
            Payload::IdR(local_id),
            Payload::Auth {
                method: auth_method::SHARED_KEY_MIC,
                data: my_auth,
            },
        ];
        match self.child_request(idx, now, payloads, None) {
            Ok(mut child) => out.append(&mut child),
            Err(e) => {
                self.events.push_back(Event::ChildSaFailed(e.clone()));
                if let Some(n) = e.notify_type() {
                    out.push(Payload::Notify(Notify::new(n, vec![])));
                }
            }
        }
        Ok(out)
    }

    pub(super) fn auth_response(
        &mut self,
        idx: usize,
        now: Instant,
        spi_in: u32,
        payloads: &[Payload],
    ) -> Result<(), Error> {
        if let Some(n) = first_error(payloads)
            && n == notify::AUTHENTICATION_FAILED
        {
            let e = Error::PeerMisbehaved(Mis::ErrorNotify(n));
            self.remove_sa(idx, DownReason::Failed(e.clone()));
            return Err(e);
        }
        let sa = &self.sas[idx];
        let id = payloads.iter().find_map(|p| match p {
            Payload::IdR(id) => Some(id),
            _ => None,
        });
        let auth = payloads.iter().find_map(|p| match p {
            Payload::Auth { method, data } => Some((*method, data)),
            _ => None,
        });
        let result = match (id, auth) {
            (Some(id), Some((auth_method::SHARED_KEY_MIC, data))) => {
                if !self.accepts(sa, id) {
                    Err(Error::PeerIncompatible(Inc::IdentityMismatch))
                } else if !ct_eq(
                    &self.auth_data(sa, self.config.psk_for(id), false, id),
                    data,
                ) {
                    Err(Error::PeerMisbehaved(Mis::BadAuth))
                } else {
                    Ok(())
                }
            }
            (Some(_), Some((m, _))) => Err(Error::PeerIncompatible(Inc::UnsupportedAuthMethod(m))),
            _ => Err(Error::PeerMisbehaved(Mis::MissingPayload(pt::AUTH))),
        };
        if let Err(e) = result {
            self.remove_sa(idx, DownReason::Failed(e.clone()));
            return Err(e);
        }
        self.sas[idx].state = State::Established;
        self.up(idx, now, true);
        if let Err(e) = self.child_response(idx, now, spi_in, None, None, payloads) {
            self.events.push_back(Event::ChildSaFailed(e));
        }
        Ok(())
    }

    /// An IKE SA became established: report it, schedule its rekey, and retire older IKE SAs
    /// with the same peer (a restarted peer leaves stale ones behind).
    pub(super) fn up(&mut self, idx: usize, now: Instant, replace: bool) {
        let jitter = self.jitter();
        let sa = &mut self.sas[idx];
        sa.rekey_at = Some(
            now + self
                .config
                .ike_lifetime
                .saturating_sub(self.config.rekey_margin + jitter),
        );
        let (spi_i, spi_r, remote) = (sa.spi_i, sa.spi_r, sa.remote);
        let Some(suite) = sa.suite else { return };
        self.events.push_back(Event::IkeSaUp {
            spi_i,
            spi_r,
            suite,
            remote,
        });
        if replace {
            // Removing now would shift the index the caller still uses; handle_datagram
            // retires them once the message is processed.
            for s in &self.sas {
                if (s.spi_i, s.spi_r) != (spi_i, spi_r)
                    && matches!(s.state, State::Established | State::Rekeyed)
                {
                    self.replaced.push((s.spi_i, s.spi_r));
                }
            }
        }
    }
}
