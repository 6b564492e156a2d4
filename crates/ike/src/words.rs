//! How algorithms, proposals and failures read to a person: suites in strongSwan's proposal
//! syntax (`aes128-sha1-modp1024`), IKE failures in plain words with the RFC 7296 Notify name.
//!
//! Every spelling written here parses back with [`IkeProposal::parse`] /
//! [`EspProposal::parse`] to what it was made from, so a suite copied out of a log can be
//! pasted into a config.

use core::fmt;

use wire::ike::notify;

use crate::crypto::{Encr, Integ, Prf};
use crate::error::{Error, Incompatibility, Misbehaviour};
use crate::peer::DownReason;
use crate::proposal::{ChildSuite, EspProposal, IkeProposal, IkeSuite};

impl fmt::Display for Encr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AesCbc(bits) => write!(f, "aes{bits}"),
            Self::AesGcm16(bits) => write!(f, "aes{bits}gcm16"),
            Self::TripleDesCbc => f.write_str("3des"),
        }
    }
}

impl fmt::Display for Integ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HmacSha1_96 => "sha1",
            Self::HmacSha256_128 => "sha256",
            Self::HmacSha384_192 => "sha384",
            Self::HmacSha512_256 => "sha512",
        })
    }
}

impl fmt::Display for Prf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HmacSha1 => "prfsha1",
            Self::HmacSha256 => "prfsha256",
            Self::HmacSha384 => "prfsha384",
            Self::HmacSha512 => "prfsha512",
        })
    }
}

/// Writes `items` joined by `-`, after a `-` unless `first`.
fn dashed<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    first: &mut bool,
    items: impl IntoIterator<Item = T>,
) -> fmt::Result {
    for item in items {
        if !*first {
            f.write_str("-")?;
        }
        *first = false;
        write!(f, "{item}")?;
    }
    Ok(())
}

impl fmt::Display for IkeProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        dashed(f, &mut first, &self.encr)?;
        dashed(f, &mut first, &self.integ)?;
        dashed(f, &mut first, &self.prf)?;
        dashed(f, &mut first, self.dh.iter().map(|d| d.name()))
    }
}

impl fmt::Display for EspProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        dashed(f, &mut first, &self.encr)?;
        dashed(f, &mut first, &self.integ)?;
        dashed(f, &mut first, self.dh.iter().map(|d| d.name()))?;
        // No ESN token is the same as `noesn`, strongSwan's default.
        if self.esn != [false] {
            dashed(
                f,
                &mut first,
                self.esn.iter().map(|e| if *e { "esn" } else { "noesn" }),
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for IkeSuite {
    /// `aes128gcm16-prfsha256-modp2048`, `aes128-sha1-prfsha1-modp1024`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.encr)?;
        if let Some(integ) = self.integ {
            write!(f, "-{integ}")?;
        }
        write!(f, "-{}-{}", self.prf, self.dh.name())
    }
}

impl fmt::Display for ChildSuite {
    /// `aes128gcm16`, `aes128-sha1`, with `-modp2048` when PFS and `-esn` when negotiated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.encr)?;
        if let Some(integ) = self.integ {
            write!(f, "-{integ}")?;
        }
        if let Some(dh) = self.dh {
            write!(f, "-{}", dh.name())?;
        }
        if self.esn {
            f.write_str("-esn")?;
        }
        Ok(())
    }
}

/// The RFC 7296 §3.10.1 name of a Notify message type, as strongSwan and Wireshark print it.
pub fn notify_name(notify_type: u16) -> Option<&'static str> {
    Some(match notify_type {
        notify::UNSUPPORTED_CRITICAL_PAYLOAD => "UNSUPPORTED_CRITICAL_PAYLOAD",
        notify::INVALID_IKE_SPI => "INVALID_IKE_SPI",
        notify::INVALID_MAJOR_VERSION => "INVALID_MAJOR_VERSION",
        notify::INVALID_SYNTAX => "INVALID_SYNTAX",
        notify::INVALID_MESSAGE_ID => "INVALID_MESSAGE_ID",
        notify::INVALID_SPI => "INVALID_SPI",
        notify::NO_PROPOSAL_CHOSEN => "NO_PROPOSAL_CHOSEN",
        notify::INVALID_KE_PAYLOAD => "INVALID_KE_PAYLOAD",
        notify::AUTHENTICATION_FAILED => "AUTHENTICATION_FAILED",
        notify::SINGLE_PAIR_REQUIRED => "SINGLE_PAIR_REQUIRED",
        notify::NO_ADDITIONAL_SAS => "NO_ADDITIONAL_SAS",
        notify::INTERNAL_ADDRESS_FAILURE => "INTERNAL_ADDRESS_FAILURE",
        notify::FAILED_CP_REQUIRED => "FAILED_CP_REQUIRED",
        notify::TS_UNACCEPTABLE => "TS_UNACCEPTABLE",
        notify::INVALID_SELECTORS => "INVALID_SELECTORS",
        notify::TEMPORARY_FAILURE => "TEMPORARY_FAILURE",
        notify::CHILD_SA_NOT_FOUND => "CHILD_SA_NOT_FOUND",
        _ => return None,
    })
}

/// What an error Notify from the peer means for the person running the gateway.
fn peer_refused(notify_type: u16) -> String {
    let why = match notify_type {
        notify::AUTHENTICATION_FAILED => {
            "the peer rejected our authentication: the pre-shared keys or identities differ"
        }
        notify::NO_PROPOSAL_CHOSEN => {
            "the peer accepts none of our proposals: the suites (proposals / esp_proposals) \
             have nothing in common"
        }
        notify::TS_UNACCEPTABLE => {
            "the peer does not accept our traffic selectors: local_subnets and routes do not \
             mirror its subnets"
        }
        notify::INVALID_KE_PAYLOAD => "the peer wants another Diffie-Hellman group",
        notify::TEMPORARY_FAILURE => "the peer is busy (a rekey collided); it will be retried",
        notify::INVALID_SYNTAX => "the peer could not parse our message",
        _ => "the peer refused the exchange",
    };
    match notify_name(notify_type) {
        Some(name) => format!("{why} ({name})"),
        None => format!("{why} (notify {notify_type})"),
    }
}

impl Error {
    /// The failure in plain words, naming the RFC 7296 Notify involved; for logs and
    /// `status`, where [`Error`]'s `Display` is for developers.
    pub fn plain(&self) -> String {
        match self {
            Self::InvalidMessage(e) => format!("the peer sent a malformed IKE message: {e}"),
            Self::PeerMisbehaved(m) => match m {
                Misbehaviour::ErrorNotify(n) => peer_refused(*n),
                Misbehaviour::BadAuth => "the peer's authentication does not verify: the \
                                          pre-shared keys differ (AUTHENTICATION_FAILED)"
                    .to_owned(),
                Misbehaviour::DecryptFailed => {
                    "a message from the peer did not decrypt: the keys differ".to_owned()
                }
                Misbehaviour::ChoseUnofferedProposal => {
                    "the peer chose a suite we did not offer".to_owned()
                }
                Misbehaviour::MissingPayload(p) => {
                    format!("the peer's message lacks payload {p} (INVALID_SYNTAX)")
                }
                Misbehaviour::BadPublicValue => {
                    "the peer's Diffie-Hellman value is unusable (INVALID_SYNTAX)".to_owned()
                }
                Misbehaviour::UnexpectedMessageId(id) => {
                    format!("the peer sent message ID {id} out of order (INVALID_MESSAGE_ID)")
                }
                Misbehaviour::UnexpectedExchange(x) => {
                    format!("the peer sent exchange type {x} at the wrong time (INVALID_SYNTAX)")
                }
                Misbehaviour::UnknownSpi => {
                    "the peer talks about an IKE SA we do not know (INVALID_IKE_SPI)".to_owned()
                }
            },
            Self::PeerIncompatible(i) => match i {
                Incompatibility::NoProposalChosen => {
                    "none of the peer's proposals is in ours: compare the suites \
                     (NO_PROPOSAL_CHOSEN)"
                        .to_owned()
                }
                Incompatibility::InvalidKe(g) => format!(
                    "the peer wants Diffie-Hellman group {g}; retrying with it \
                     (INVALID_KE_PAYLOAD)"
                ),
                Incompatibility::TsUnacceptable => {
                    "the peer's subnets do not match local_subnets and routes (TS_UNACCEPTABLE)"
                        .to_owned()
                }
                Incompatibility::IdentityMismatch => {
                    "the peer's identity is not remote_id (AUTHENTICATION_FAILED)".to_owned()
                }
                Incompatibility::UnsupportedAuthMethod(m) => format!(
                    "the peer authenticates with method {m}, not a pre-shared key \
                     (AUTHENTICATION_FAILED)"
                ),
            },
            Self::ApiMisuse(s) => format!("internal error: {s}"),
        }
    }
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Deleted => f.write_str("deleted"),
            Self::Timeout => f.write_str("the peer stopped answering"),
            Self::Replaced => f.write_str("replaced by a new IKE SA with the same peer"),
            Self::Failed(e) => f.write_str(&e.plain()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dh::DhGroup;

    #[test]
    fn suites_read_in_strongswan_syntax() {
        let ike = IkeSuite {
            encr: Encr::AesCbc(128),
            prf: Prf::HmacSha1,
            integ: Some(Integ::HmacSha1_96),
            dh: DhGroup::Modp1024,
        };
        assert_eq!(ike.to_string(), "aes128-sha1-prfsha1-modp1024");
        let child = ChildSuite {
            encr: Encr::AesGcm16(256),
            integ: None,
            dh: Some(DhGroup::Ecp256),
            esn: true,
        };
        assert_eq!(child.to_string(), "aes256gcm16-ecp256-esn");
    }

    #[test]
    fn proposals_round_trip_through_their_spelling() {
        for text in [
            "aes128gcm16-prfsha256-modp2048",
            "aes128-sha1-prfsha1-modp1024",
            "aes256-aes128-sha256-sha1-prfsha256-prfsha1-ecp256-curve25519",
        ] {
            let p = IkeProposal::parse(text).unwrap();
            assert_eq!(p.to_string(), text);
            assert_eq!(IkeProposal::parse(&p.to_string()).unwrap(), p);
        }
        for text in [
            "aes128gcm16",
            "aes128-sha1",
            "aes256-sha256-modp2048-esn-noesn",
        ] {
            let p = EspProposal::parse(text).unwrap();
            assert_eq!(EspProposal::parse(&p.to_string()).unwrap(), p, "{text}");
        }
    }

    #[test]
    fn peer_refusals_name_the_notify() {
        let e = Error::PeerMisbehaved(Misbehaviour::ErrorNotify(notify::AUTHENTICATION_FAILED));
        assert_eq!(
            e.plain(),
            "the peer rejected our authentication: the pre-shared keys or identities differ \
             (AUTHENTICATION_FAILED)"
        );
        let down = DownReason::Failed(Error::PeerMisbehaved(Misbehaviour::ErrorNotify(
            notify::NO_PROPOSAL_CHOSEN,
        )));
        assert!(down.to_string().ends_with("(NO_PROPOSAL_CHOSEN)"), "{down}");
        assert_eq!(notify_name(24), Some("AUTHENTICATION_FAILED"));
        assert_eq!(notify_name(16384), None);
        let odd = Error::PeerMisbehaved(Misbehaviour::ErrorNotify(9999)).plain();
        assert!(odd.contains("notify 9999"), "{odd}");
    }
}
