//! IKEv1 SA payloads: our proposals as ISAKMP and ESP transforms with attributes (RFC 2409
//! Appendix A, RFC 2407 §4.5), and the choice of one transform from a peer's offer.
//!
//! In IKEv1 every transform is a complete suite, so an `aes128-sha1-modp1024` proposal
//! becomes one transform per combination of its algorithms. Lifetimes travel inside the
//! transforms: the initiator proposes, the responder accepts what it is offered and keeps the
//! shorter of that and its own.

use std::time::Duration;

use wire::ikev1::{
    Attribute, DOI_IPSEC, Proposal, SIT_IDENTITY_ONLY, Sa, Transform, attr, protocol,
};

use super::keys::HashAlg;
use crate::crypto::{Encr, Integ};
use crate::dh::DhGroup;
use crate::proposal::{ChildSuite, EspProposal, IkeProposal, IkeSuite};

/// The algorithms and lifetime of an ISAKMP SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase1Suite {
    pub encr: Encr,
    pub hash: HashAlg,
    pub group: DhGroup,
    pub lifetime: Duration,
}

impl Phase1Suite {
    /// The same algorithms in the IKEv2 vocabulary the rest of v6gate reports with.
    pub const fn as_ike_suite(&self) -> IkeSuite {
        IkeSuite {
            encr: self.encr,
            prf: self.hash.prf(),
            integ: Some(self.hash.integ()),
            dh: self.group,
        }
    }
}

/// The phase 1 transforms for our proposals, in preference order.
pub fn phase1_sa(proposals: &[IkeProposal], lifetime: Duration) -> Sa {
    let mut transforms = Vec::new();
    for p in proposals {
        for &encr in &p.encr {
            // RFC 2409 Appendix A: AES takes a Key Length attribute, 3DES has one size.
            let cipher = match encr {
                Encr::AesCbc(bits) => vec![
                    basic(attr::ENCRYPTION, attr::ENC_AES_CBC),
                    basic(attr::KEY_LENGTH, bits),
                ],
                Encr::TripleDesCbc => vec![basic(attr::ENCRYPTION, attr::ENC_3DES_CBC)],
                Encr::AesGcm16(_) => continue,
            };
            for hash in p.integ.iter().filter_map(|&i| HashAlg::from_integ(i)) {
                for &group in &p.dh {
                    let number = u8::try_from(transforms.len() + 1).unwrap_or(u8::MAX);
                    let mut attributes = cipher.clone();
                    attributes.extend([
                        basic(attr::HASH, hash_attr(hash)),
                        basic(attr::AUTH_METHOD, attr::AUTH_PSK),
                        basic(attr::GROUP, group.id()),
                        basic(attr::LIFE_TYPE, attr::LIFE_SECONDS),
                        Attribute::integer(attr::LIFE_DURATION, lifetime.as_secs()),
                    ]);
                    transforms.push(Transform {
                        number,
                        id: attr::KEY_IKE,
                        attributes,
                    });
                }
            }
        }
    }
    Sa {
        doi: DOI_IPSEC,
        situation: SIT_IDENTITY_ONLY,
        proposals: vec![Proposal {
            number: 1,
            protocol: protocol::ISAKMP,
            spi: Vec::new(),
            transforms,
        }],
    }
}

/// Reads one phase 1 transform; `None` when it names something v6gate does not do.
pub fn phase1_suite(t: &Transform) -> Option<Phase1Suite> {
    if t.id != attr::KEY_IKE || t.attribute(attr::AUTH_METHOD)? != u64::from(attr::AUTH_PSK) {
        return None;
    }
    let encr = match (
        t.attribute(attr::ENCRYPTION)?,
        t.attribute(attr::KEY_LENGTH),
    ) {
        (7, Some(bits @ (128 | 256))) => Encr::AesCbc(u16::try_from(bits).ok()?),
        (5, None) => Encr::TripleDesCbc,
        _ => return None,
    };
    let hash = match t.attribute(attr::HASH)? {
        2 => HashAlg::Sha1,
        4 => HashAlg::Sha256,
        _ => return None,
    };
    let group = DhGroup::from_id(u16::try_from(t.attribute(attr::GROUP)?).ok()?)?;
    Some(Phase1Suite {
        encr,
        hash,
        group,
        lifetime: lifetime(t, attr::LIFE_TYPE, attr::LIFE_DURATION)?,
    })
}

fn phase1_allowed(ours: &[IkeProposal], s: &Phase1Suite) -> bool {
    ours.iter().any(|p| {
        p.encr.contains(&s.encr) && p.integ.contains(&s.hash.integ()) && p.dh.contains(&s.group)
    })
}

/// The responder's choice: the first offered transform we accept, echoed as the answer SA
/// (same proposal and transform numbers), and the suite with the lifetime we will keep.
pub fn choose_phase1(
    offer: &Sa,
    ours: &[IkeProposal],
    max_life: Duration,
) -> Option<(Sa, Phase1Suite)> {
    for p in offer
        .proposals
        .iter()
        .filter(|p| p.protocol == protocol::ISAKMP)
    {
        for t in &p.transforms {
            if let Some(mut s) = phase1_suite(t).filter(|s| phase1_allowed(ours, s)) {
                let answer = Sa {
                    doi: offer.doi,
                    situation: offer.situation,
                    proposals: vec![Proposal {
                        transforms: vec![t.clone()],
                        ..p.clone()
                    }],
                };
                s.lifetime = s.lifetime.min(max_life);
                return Some((answer, s));
            }
        }
    }
    None
}

/// The initiator's reading of the answer: exactly one transform, one that we offered.
pub fn accepted_phase1(answer: &Sa, ours: &[IkeProposal]) -> Option<Phase1Suite> {
    let [p] = answer.proposals.as_slice() else {
        return None;
    };
    let [t] = p.transforms.as_slice() else {
        return None;
    };
    phase1_suite(t).filter(|s| phase1_allowed(ours, s))
}

/// What a quick mode proposal fixes besides the algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspTerms {
    pub pfs: Option<DhGroup>,
    pub lifetime: Duration,
    /// UDP-encapsulated tunnel mode (a NAT is between the peers).
    pub udp: bool,
}

/// The quick mode SA offering our ESP proposals with our inbound SPI.
pub fn esp_sa(proposals: &[EspProposal], spi_in: u32, terms: EspTerms) -> Sa {
    let mut transforms = Vec::new();
    for p in proposals {
        for &encr in &p.encr {
            let integs: Vec<Option<Integ>> = if encr.is_aead() {
                vec![None]
            } else {
                p.integ.iter().copied().map(Some).collect()
            };
            for integ in integs {
                let number = u8::try_from(transforms.len() + 1).unwrap_or(u8::MAX);
                transforms.push(esp_transform(number, encr, integ, terms));
            }
        }
    }
    Sa {
        doi: DOI_IPSEC,
        situation: SIT_IDENTITY_ONLY,
        proposals: vec![Proposal {
            number: 1,
            protocol: protocol::ESP,
            spi: spi_in.to_be_bytes().to_vec(),
            transforms,
        }],
    }
}

fn esp_transform(number: u8, encr: Encr, integ: Option<Integ>, terms: EspTerms) -> Transform {
    let encap = if terms.udp {
        attr::ENCAP_UDP_TUNNEL
    } else {
        attr::ENCAP_TUNNEL
    };
    let mut attributes = vec![
        basic(attr::SA_LIFE_TYPE, attr::LIFE_SECONDS),
        Attribute::integer(attr::SA_LIFE_DURATION, terms.lifetime.as_secs()),
    ];
    if let Some(g) = terms.pfs {
        attributes.push(basic(attr::SA_GROUP, g.id()));
    }
    attributes.push(basic(attr::ENCAPSULATION, encap));
    if let Some(i) = integ {
        attributes.push(basic(attr::SA_AUTH, esp_auth_attr(i)));
    }
    if encr.has_key_length() {
        attributes.push(basic(attr::SA_KEY_LENGTH, encr.key_bits()));
    }
    let id = match encr {
        Encr::AesGcm16(_) => ESP_AES_GCM_16,
        Encr::AesCbc(_) => attr::ESP_AES_CBC,
        Encr::TripleDesCbc => attr::ESP_3DES,
    };
    Transform {
        number,
        id,
        attributes,
    }
}

/// RFC 4106 §8.4's ESP transform ID for AES-GCM with a 16-byte ICV.
const ESP_AES_GCM_16: u8 = 20;

/// Reads one ESP transform: the suite and the terms it carries.
pub fn esp_suite(t: &Transform) -> Option<(ChildSuite, EspTerms)> {
    let bits = t
        .attribute(attr::SA_KEY_LENGTH)
        .map(u16::try_from)
        .transpose()
        .ok()?;
    let encr = match t.id {
        attr::ESP_AES_CBC => Encr::from_id(wire::ike::transform::ENCR_AES_CBC, bits)?,
        ESP_AES_GCM_16 => Encr::from_id(wire::ike::transform::ENCR_AES_GCM_16, bits)?,
        attr::ESP_3DES => Encr::from_id(wire::ike::transform::ENCR_3DES, bits)?,
        _ => return None,
    };
    let integ = match t.attribute(attr::SA_AUTH) {
        None if encr.is_aead() => None,
        Some(2) if !encr.is_aead() => Some(Integ::HmacSha1_96),
        Some(5) if !encr.is_aead() => Some(Integ::HmacSha256_128),
        Some(6) if !encr.is_aead() => Some(Integ::HmacSha384_192),
        Some(7) if !encr.is_aead() => Some(Integ::HmacSha512_256),
        _ => return None,
    };
    let udp = match t.attribute(attr::ENCAPSULATION)? {
        1 => false,
        3 | 61443 => true,
        _ => return None,
    };
    let pfs = match t.attribute(attr::SA_GROUP) {
        Some(g) => Some(DhGroup::from_id(u16::try_from(g).ok()?)?),
        None => None,
    };
    Some((
        ChildSuite {
            encr,
            integ,
            dh: pfs,
            esn: false,
        },
        EspTerms {
            pfs,
            lifetime: lifetime(t, attr::SA_LIFE_TYPE, attr::SA_LIFE_DURATION)?,
            udp,
        },
    ))
}

fn esp_allowed(ours: &[EspProposal], s: &ChildSuite) -> bool {
    ours.iter().any(|p| {
        p.encr.contains(&s.encr)
            && s.integ.is_none_or(|i| p.integ.contains(&i))
            && match s.dh {
                None => p.dh.is_empty(),
                Some(g) => p.dh.contains(&g),
            }
    })
}

/// The quick mode responder's choice from the initiator's offer: our answer SA (with our
/// inbound SPI), the suite, the terms, and the initiator's SPI (our outbound one).
pub fn choose_esp(
    offer: &Sa,
    ours: &[EspProposal],
    spi_in: u32,
    max_life: Duration,
) -> Option<(Sa, ChildSuite, EspTerms, u32)> {
    for p in offer
        .proposals
        .iter()
        .filter(|p| p.protocol == protocol::ESP)
    {
        let spi_out = u32::from_be_bytes(<[u8; 4]>::try_from(p.spi.as_slice()).ok()?);
        for t in &p.transforms {
            if let Some((s, mut terms)) = esp_suite(t).filter(|(s, _)| esp_allowed(ours, s)) {
                let answer = Sa {
                    doi: offer.doi,
                    situation: offer.situation,
                    proposals: vec![Proposal {
                        spi: spi_in.to_be_bytes().to_vec(),
                        transforms: vec![t.clone()],
                        ..p.clone()
                    }],
                };
                terms.lifetime = terms.lifetime.min(max_life);
                return Some((answer, s, terms, spi_out));
            }
        }
    }
    None
}

/// The quick mode initiator's reading of the answer: the suite, terms and the responder's
/// SPI, if the one transform is one we offered.
pub fn accepted_esp(answer: &Sa, ours: &[EspProposal]) -> Option<(ChildSuite, EspTerms, u32)> {
    let [p] = answer.proposals.as_slice() else {
        return None;
    };
    let [t] = p.transforms.as_slice() else {
        return None;
    };
    if p.protocol != protocol::ESP {
        return None;
    }
    let spi = u32::from_be_bytes(<[u8; 4]>::try_from(p.spi.as_slice()).ok()?);
    let (s, terms) = esp_suite(t).filter(|(s, _)| esp_allowed(ours, s))?;
    Some((s, terms, spi))
}

/// A lifetime in seconds; a transform that gives only a kilobyte limit, or none, gets the
/// RFC 2407 §4.5 default of 8 hours.
fn lifetime(t: &Transform, type_kind: u16, duration_kind: u16) -> Option<Duration> {
    let mut secs = None;
    let mut current_type = None;
    for a in &t.attributes {
        if a.kind() == type_kind {
            current_type = a.value();
        } else if a.kind() == duration_kind && current_type == Some(u64::from(attr::LIFE_SECONDS)) {
            secs = Some(a.value()?);
        }
    }
    Some(Duration::from_secs(secs.unwrap_or(28_800).max(1)))
}

const fn hash_attr(h: HashAlg) -> u16 {
    match h {
        HashAlg::Sha1 => attr::HASH_SHA1,
        HashAlg::Sha256 => attr::HASH_SHA2_256,
    }
}

const fn esp_auth_attr(i: Integ) -> u16 {
    match i {
        Integ::HmacSha1_96 => attr::AUTH_HMAC_SHA1,
        Integ::HmacSha256_128 => attr::AUTH_HMAC_SHA2_256,
        Integ::HmacSha384_192 => 6,
        Integ::HmacSha512_256 => 7,
    }
}

const fn basic(kind: u16, value: u16) -> Attribute {
    Attribute::Basic { kind, value }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_offer_is_the_scapy_transform_and_is_chosen_back() {
        let ours = vec![IkeProposal::parse("aes128-sha1-modp1024").unwrap()];
        let sa = phase1_sa(&ours, Duration::from_secs(28800));
        let mut body = Vec::new();
        wire::ikev1::Payload::Sa(sa.clone()).emit_body(&mut body);
        // The SA body scapy builds for the same offer (wire::ikev1 tests).
        let scapy = "00000001000000010000002c01010001000000240101000080010007800e0080800200028003000180040002800b0001800c7080";
        let hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, scapy);
        let (answer, suite) = choose_phase1(&sa, &ours, Duration::from_secs(3600)).unwrap();
        assert_eq!(suite.lifetime, Duration::from_secs(3600));
        assert_eq!(
            accepted_phase1(&answer, &ours),
            Some(Phase1Suite {
                lifetime: Duration::from_secs(28800),
                ..suite
            })
        );
        let other = vec![IkeProposal::parse("aes256-sha256-modp2048").unwrap()];
        assert!(choose_phase1(&sa, &other, Duration::MAX).is_none());
        assert!(accepted_phase1(&answer, &other).is_none());
    }

    #[test]
    fn esp_offer_with_pfs_round_trips() {
        let ours = vec![EspProposal::parse("aes256-sha256-modp2048").unwrap()];
        let terms = EspTerms {
            pfs: Some(DhGroup::Modp2048),
            lifetime: Duration::from_secs(100_000),
            udp: true,
        };
        let sa = esp_sa(&ours, 0x1111_2222, terms);
        let (answer, suite, got, spi_out) =
            choose_esp(&sa, &ours, 0x3333_4444, Duration::from_secs(3600)).unwrap();
        assert_eq!(spi_out, 0x1111_2222);
        assert_eq!(suite.encr, Encr::AesCbc(256));
        assert_eq!(suite.integ, Some(Integ::HmacSha256_128));
        assert_eq!(got.pfs, Some(DhGroup::Modp2048));
        assert!(got.udp);
        assert_eq!(got.lifetime, Duration::from_secs(3600));
        let (s2, t2, spi) = accepted_esp(&answer, &ours).unwrap();
        assert_eq!((s2, spi), (suite, 0x3333_4444));
        assert_eq!(t2.lifetime, Duration::from_secs(100_000));
        // Without PFS configured, a PFS offer is refused.
        let no_pfs = vec![EspProposal::parse("aes256-sha256").unwrap()];
        assert!(choose_esp(&sa, &no_pfs, 1, Duration::MAX).is_none());
    }

    #[test]
    fn triple_des_travels_without_a_key_length() {
        let ours = vec![IkeProposal::parse("3des-sha1-modp1024").unwrap()];
        let sa = phase1_sa(&ours, Duration::from_secs(28800));
        let mut body = Vec::new();
        wire::ikev1::Payload::Sa(sa.clone()).emit_body(&mut body);
        let hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
        // RFC 2409 Appendix A: Encryption Algorithm (1) = 3DES-CBC (5), and no Key Length (14).
        assert!(hex.contains("80010005"), "{hex}");
        assert!(!hex.contains("800e"), "{hex}");
        let (answer, suite) = choose_phase1(&sa, &ours, Duration::MAX).unwrap();
        assert_eq!(suite.encr, Encr::TripleDesCbc);
        assert!(accepted_phase1(&answer, &ours).is_some());

        let esp = vec![EspProposal::parse("3des-sha1").unwrap()];
        let terms = EspTerms {
            pfs: None,
            lifetime: Duration::from_secs(28800),
            udp: false,
        };
        let sa = esp_sa(&esp, 0x1111_2222, terms);
        // RFC 2407 §4.4.4: ESP_3DES is transform ID 3.
        assert_eq!(sa.proposals[0].transforms[0].id, attr::ESP_3DES);
        let (_, suite, _, _) = choose_esp(&sa, &esp, 1, Duration::MAX).unwrap();
        assert_eq!(suite.encr, Encr::TripleDesCbc);
        // AES is not taken for 3DES, nor the other way round.
        let aes = vec![EspProposal::parse("aes128-sha1").unwrap()];
        assert!(choose_esp(&sa, &aes, 1, Duration::MAX).is_none());
    }
}
