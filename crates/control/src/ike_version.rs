//! `[tunnel.ike] version`: which IKE a tunnel speaks, and what IKEv1 can carry.
//!
//! IKEv1 (RFC 2409) is there for peers that speak nothing newer (older YAMAHA RTX and NEC IX,
//! libreswan-era gateways): main mode with pre-shared keys and quick mode. Its phase 1 has
//! no AEAD ciphers and no separate PRF, and ESP moves to UDP 4500 only when NAT detection
//! finds a NAT, so some settings that IKEv2 accepts are refused here by key.

use ike::crypto::{Encr, Integ};
use ike::dh::DhGroup;
use ike::proposal::{EspProposal, IkeProposal};

use crate::file::Int;
use crate::ipsec::{Encap, IkeVersion, IpsecConfig};

/// A problem with one key, for the validator to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub key: String,
    pub message: String,
}

/// What the IKEv1 core can negotiate in phase 1 and quick mode.
const V1_GROUPS: [DhGroup; 4] = [
    DhGroup::Modp1024,
    DhGroup::Modp1536,
    DhGroup::Modp2048,
    DhGroup::Ecp256,
];

/// Proposals for a `version = 1` tunnel that names none (IKEv2's defaults are AEAD, which
/// IKEv1's phase 1 cannot carry).
pub const V1_DEFAULT_IKE: &str = "aes256-sha256-modp2048";
pub const V1_DEFAULT_ESP: &str = "aes256-sha256";

/// Reads `version` into `config` and checks the rest of `config` against it. `*_given` say
/// whether the proposals were written or are defaults.
pub(crate) fn apply(
    prefix: &str,
    version: Option<Int>,
    proposals_given: bool,
    esp_given: bool,
    config: &mut IpsecConfig,
) -> Vec<Finding> {
    let key = |field: &str| format!("{prefix}.{field}");
    let mut findings = Vec::new();
    config.version = match version {
        None | Some(Int(2)) => IkeVersion::V2,
        Some(Int(1)) => IkeVersion::V1,
        Some(Int(n)) => {
            findings.push(Finding {
                key: key("version"),
                message: format!("expected 1 or 2, found {n}"),
            });
            return findings;
        }
    };
    if config.version == IkeVersion::V2 {
        return findings;
    }
    if !proposals_given && let Ok(p) = IkeProposal::parse(V1_DEFAULT_IKE) {
        config.proposals = vec![p];
    }
    if !esp_given && let Ok(p) = EspProposal::parse(V1_DEFAULT_ESP) {
        config.esp_proposals = vec![p];
    }
    for (i, p) in config.proposals.iter().enumerate() {
        let ok = p
            .encr
            .iter()
            .all(|e| matches!(e, Encr::AesCbc(128 | 256) | Encr::TripleDesCbc))
            && p.integ
                .iter()
                .all(|i| matches!(i, Integ::HmacSha1_96 | Integ::HmacSha256_128))
            && p.dh.iter().all(|g| V1_GROUPS.contains(g));
        if !ok {
            findings.push(Finding {
                key: format!("{}[{i}]", key("proposals")),
                message: "IKEv1 (version = 1) phase 1 takes aes128, aes256 (or 3des) with \
                          sha1 or sha256 and modp1024, modp1536, modp2048 or ecp256"
                    .into(),
            });
        }
    }
    for (i, p) in config.esp_proposals.iter().enumerate() {
        if !p.dh.iter().all(|g| V1_GROUPS.contains(g)) {
            findings.push(Finding {
                key: format!("{}[{i}]", key("esp_proposals")),
                message: "IKEv1 (version = 1) quick mode does PFS with modp1024, modp1536, \
                          modp2048 or ecp256"
                    .into(),
            });
        }
    }
    if config.encap == Encap::Udp {
        findings.push(Finding {
            key: key("encap"),
            message: "IKEv1 (version = 1) moves ESP to UDP 4500 only when NAT detection finds \
                      a NAT; leave encap at \"auto\""
                .into(),
        });
    }
    findings
}
