//! Errors by who is at fault, each mapping to the Notify that reports it (RFC 7296 §2.21).

use core::fmt;

use wire::ike::notify;

/// What went wrong with an exchange, classified by who is at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a valid IKE message (syntax, lengths, unknown critical payload).
    InvalidMessage(wire::ike::Error),
    /// A well-formed message that breaks the protocol: wrong payloads for the exchange, a
    /// failed integrity check or AUTH, an unexpected message ID.
    PeerMisbehaved(Misbehaviour),
    /// The peer is correct but we cannot agree: no common proposal, unacceptable traffic
    /// selectors, or an identity we do not accept.
    PeerIncompatible(Incompatibility),
    /// The caller asked for something the state does not allow.
    ApiMisuse(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Misbehaviour {
    MissingPayload(u8),
    BadAuth,
    BadPublicValue,
    DecryptFailed,
    UnexpectedMessageId(u32),
    UnexpectedExchange(u8),
    UnknownSpi,
    ChoseUnofferedProposal,
    ErrorNotify(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Incompatibility {
    NoProposalChosen,
    /// The peer wants a different DH group: retry with it (§1.2).
    InvalidKe(u16),
    TsUnacceptable,
    IdentityMismatch,
    UnsupportedAuthMethod(u8),
}

impl Error {
    /// The error Notify type to send back for this error, if any should be sent.
    pub const fn notify_type(&self) -> Option<u16> {
        match self {
            Self::InvalidMessage(e) => Some(e.notify_type()),
            Self::PeerMisbehaved(m) => match m {
                Misbehaviour::MissingPayload(_) | Misbehaviour::UnexpectedExchange(_) => {
                    Some(notify::INVALID_SYNTAX)
                }
                Misbehaviour::BadAuth => Some(notify::AUTHENTICATION_FAILED),
                Misbehaviour::BadPublicValue => Some(notify::INVALID_SYNTAX),
                Misbehaviour::UnexpectedMessageId(_) => Some(notify::INVALID_MESSAGE_ID),
                Misbehaviour::UnknownSpi => Some(notify::INVALID_IKE_SPI),
                // Silently dropped (§2.21.1), or already an answer to an error.
                Misbehaviour::DecryptFailed
                | Misbehaviour::ChoseUnofferedProposal
                | Misbehaviour::ErrorNotify(_) => None,
            },
            Self::PeerIncompatible(i) => match i {
                Incompatibility::NoProposalChosen => Some(notify::NO_PROPOSAL_CHOSEN),
                Incompatibility::InvalidKe(_) => Some(notify::INVALID_KE_PAYLOAD),
                Incompatibility::TsUnacceptable => Some(notify::TS_UNACCEPTABLE),
                Incompatibility::IdentityMismatch | Incompatibility::UnsupportedAuthMethod(_) => {
                    Some(notify::AUTHENTICATION_FAILED)
                }
            },
            Self::ApiMisuse(_) => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidMessage(e) => write!(f, "invalid IKE message: {e}"),
            Self::PeerMisbehaved(m) => write!(f, "peer misbehaved: {m}"),
            Self::PeerIncompatible(i) => write!(f, "peer incompatible: {i}"),
            Self::ApiMisuse(s) => write!(f, "API misuse: {s}"),
        }
    }
}

impl fmt::Display for Misbehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingPayload(t) => write!(f, "a required payload (type {t}) is missing"),
            Self::BadAuth => f.write_str("its AUTH payload does not prove the pre-shared key"),
            Self::BadPublicValue => f.write_str("its key exchange value is not a valid public key"),
            Self::DecryptFailed => f.write_str("a message failed its integrity check"),
            Self::UnexpectedMessageId(id) => write!(f, "message ID {id} was not expected"),
            Self::UnexpectedExchange(t) => write!(f, "exchange type {t} was not expected here"),
            Self::UnknownSpi => f.write_str("the message names an IKE SA we do not have"),
            Self::ChoseUnofferedProposal => f.write_str("it chose a proposal we did not offer"),
            Self::ErrorNotify(t) => write!(f, "it answered with error notify {t}"),
        }
    }
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoProposalChosen => f.write_str("no proposal in common"),
            Self::InvalidKe(group) => write!(f, "the peer wants Diffie-Hellman group {group}"),
            Self::TsUnacceptable => f.write_str("traffic selectors not acceptable"),
            Self::IdentityMismatch => f.write_str("the peer's identity is not the one expected"),
            Self::UnsupportedAuthMethod(m) => {
                write!(f, "authentication method {m} is not supported")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidMessage(e) => Some(e),
            _ => None,
        }
    }
}

impl From<wire::ike::Error> for Error {
    fn from(e: wire::ike::Error) -> Self {
        Self::InvalidMessage(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_in_plain_words() {
        let bad_auth = Error::PeerMisbehaved(Misbehaviour::BadAuth);
        assert_eq!(
            bad_auth.to_string(),
            "peer misbehaved: its AUTH payload does not prove the pre-shared key"
        );
        let no_proposal = Error::PeerIncompatible(Incompatibility::NoProposalChosen);
        assert_eq!(
            no_proposal.to_string(),
            "peer incompatible: no proposal in common"
        );
        let ke = Error::PeerIncompatible(Incompatibility::InvalidKe(31));
        assert!(ke.to_string().ends_with("Diffie-Hellman group 31"));
    }

    #[test]
    fn each_fault_maps_to_its_notify() {
        assert_eq!(
            Error::from(wire::ike::Error::UnsupportedCritical(99)).notify_type(),
            Some(notify::UNSUPPORTED_CRITICAL_PAYLOAD)
        );
        assert_eq!(
            Error::PeerMisbehaved(Misbehaviour::BadAuth).notify_type(),
            Some(notify::AUTHENTICATION_FAILED)
        );
        assert_eq!(
            Error::PeerIncompatible(Incompatibility::NoProposalChosen).notify_type(),
            Some(notify::NO_PROPOSAL_CHOSEN)
        );
        assert_eq!(
            Error::PeerIncompatible(Incompatibility::InvalidKe(19)).notify_type(),
            Some(notify::INVALID_KE_PAYLOAD)
        );
        assert_eq!(
            Error::PeerMisbehaved(Misbehaviour::DecryptFailed).notify_type(),
            None
        );
        assert_eq!(Error::ApiMisuse("x").notify_type(), None);
        assert!(
            Error::ApiMisuse("not established")
                .to_string()
                .contains("not established")
        );
    }
}
