//! Proposals in strongSwan's syntax (`aes128gcm16-prfsha256-ecp256`), their SA payload form,
//! and selection of one suite from a peer's offer (RFC 7296 §2.7, §3.3).

use core::fmt;

use wire::ike::{Proposal, Transform, protocol, transform as t};

use crate::crypto::{Encr, Integ, Prf};
use crate::dh::DhGroup;

/// One IKE proposal: every listed algorithm is acceptable, in preference order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeProposal {
    pub encr: Vec<Encr>,
    pub prf: Vec<Prf>,
    /// Empty for AEAD ciphers.
    pub integ: Vec<Integ>,
    pub dh: Vec<DhGroup>,
    /// Uses an algorithm kept only for old peers (3DES, MODP-1024, SHA-1); the daemon warns.
    pub legacy: bool,
}

/// One ESP proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspProposal {
    pub encr: Vec<Encr>,
    pub integ: Vec<Integ>,
    /// PFS groups for CREATE_CHILD_SA; empty means no PFS.
    pub dh: Vec<DhGroup>,
    /// Extended sequence numbers offered (ESN transform 1) in preference order.
    pub esn: Vec<bool>,
    pub legacy: bool,
}

/// The algorithms negotiated for an IKE SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IkeSuite {
    pub encr: Encr,
    pub prf: Prf,
    pub integ: Option<Integ>,
    pub dh: DhGroup,
}

/// The algorithms negotiated for a CHILD SA (ESP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChildSuite {
    pub encr: Encr,
    pub integ: Option<Integ>,
    pub dh: Option<DhGroup>,
    pub esn: bool,
}

impl ChildSuite {
    /// Bytes of KEYMAT for one direction: encryption key (with salt for GCM) then integrity key.
    pub fn key_len(&self) -> usize {
        self.encr.key_len() + self.integ.map_or(0, Integ::key_len)
    }
}

/// A proposal string that could not be parsed, naming the offending token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposalError {
    UnknownToken(String),
    /// A non-AEAD cipher without an integrity algorithm, or AEAD with one.
    MissingIntegrity(String),
    /// IKE proposal without a DH group, or with AEAD and no PRF.
    Missing(&'static str, String),
    Empty,
}

impl fmt::Display for ProposalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownToken(t) => write!(f, "unknown algorithm `{t}` in proposal"),
            Self::MissingIntegrity(p) => {
                write!(f, "proposal `{p}`: CBC cipher needs an integrity algorithm")
            }
            Self::Missing(what, p) => write!(f, "proposal `{p}` has no {what}"),
            Self::Empty => f.write_str("empty proposal"),
        }
    }
}

impl std::error::Error for ProposalError {}

enum Token {
    Encr(Encr),
    Integ(Integ),
    Prf(Prf),
    Dh(DhGroup),
    Esn(bool),
}

fn token(s: &str) -> Option<Token> {
    Some(match s {
        "aes128" | "aes" => Token::Encr(Encr::AesCbc(128)),
        "aes192" => Token::Encr(Encr::AesCbc(192)),
        "aes256" => Token::Encr(Encr::AesCbc(256)),
        "aes128gcm16" | "aes128gcm128" => Token::Encr(Encr::AesGcm16(128)),
        "aes256gcm16" | "aes256gcm128" => Token::Encr(Encr::AesGcm16(256)),
        "3des" => Token::Encr(Encr::TripleDesCbc),
        "sha1" | "sha" => Token::Integ(Integ::HmacSha1_96),
        "sha256" | "sha2_256" => Token::Integ(Integ::HmacSha256_128),
        "sha384" | "sha2_384" => Token::Integ(Integ::HmacSha384_192),
        "sha512" | "sha2_512" => Token::Integ(Integ::HmacSha512_256),
        "prfsha1" => Token::Prf(Prf::HmacSha1),
        "prfsha256" => Token::Prf(Prf::HmacSha256),
        "prfsha384" => Token::Prf(Prf::HmacSha384),
        "prfsha512" => Token::Prf(Prf::HmacSha512),
        "modp1024" => Token::Dh(DhGroup::Modp1024),
        "modp1536" => Token::Dh(DhGroup::Modp1536),
        "modp2048" => Token::Dh(DhGroup::Modp2048),
        "ecp256" => Token::Dh(DhGroup::Ecp256),
        "ecp384" => Token::Dh(DhGroup::Ecp384),
        "x25519" | "curve25519" => Token::Dh(DhGroup::Curve25519),
        "esn" => Token::Esn(true),
        "noesn" => Token::Esn(false),
        _ => return None,
    })
}

const fn integ_prf(i: Integ) -> Prf {
    match i {
        Integ::HmacSha1_96 => Prf::HmacSha1,
        Integ::HmacSha256_128 => Prf::HmacSha256,
        Integ::HmacSha384_192 => Prf::HmacSha384,
        Integ::HmacSha512_256 => Prf::HmacSha512,
    }
}

struct Lists {
    encr: Vec<Encr>,
    integ: Vec<Integ>,
    prf: Vec<Prf>,
    dh: Vec<DhGroup>,
    esn: Vec<bool>,
}

fn lists(s: &str) -> Result<Lists, ProposalError> {
    let mut l = Lists {
        encr: vec![],
        integ: vec![],
        prf: vec![],
        dh: vec![],
        esn: vec![],
    };
    if s.trim().is_empty() {
        return Err(ProposalError::Empty);
    }
    for tok in s.trim().split('-') {
        match token(&tok.to_ascii_lowercase()) {
            Some(Token::Encr(e)) => push_unique(&mut l.encr, e),
            Some(Token::Integ(i)) => push_unique(&mut l.integ, i),
            Some(Token::Prf(p)) => push_unique(&mut l.prf, p),
            Some(Token::Dh(d)) => push_unique(&mut l.dh, d),
            Some(Token::Esn(e)) => push_unique(&mut l.esn, e),
            None => return Err(ProposalError::UnknownToken(tok.to_owned())),
        }
    }
    if l.encr.is_empty() {
        return Err(ProposalError::Missing("encryption algorithm", s.to_owned()));
    }
    let aead = l.encr.iter().any(|e| e.is_aead());
    if aead && l.encr.iter().any(|e| !e.is_aead()) {
        return Err(ProposalError::UnknownToken(format!(
            "{s} (AEAD and non-AEAD ciphers mixed)"
        )));
    }
    if aead && !l.integ.is_empty() {
        return Err(ProposalError::MissingIntegrity(s.to_owned()));
    }
    if !aead && l.integ.is_empty() {
        return Err(ProposalError::MissingIntegrity(s.to_owned()));
    }
    Ok(l)
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

fn is_legacy(encr: &[Encr], prf: &[Prf], integ: &[Integ], dh: &[DhGroup]) -> bool {
    encr.contains(&Encr::TripleDesCbc)
        || prf.contains(&Prf::HmacSha1)
        || integ.contains(&Integ::HmacSha1_96)
        || dh.contains(&DhGroup::Modp1024)
}

impl IkeProposal {
    /// Parses strongSwan's IKE proposal syntax. For CBC ciphers the integrity algorithm also
    /// names the PRF unless a `prf...` token is given, as strongSwan does.
    pub fn parse(s: &str) -> Result<Self, ProposalError> {
        let mut l = lists(s)?;
        if l.prf.is_empty() {
            if l.integ.is_empty() {
                return Err(ProposalError::Missing("PRF", s.to_owned()));
            }
            l.prf = l.integ.iter().map(|&i| integ_prf(i)).collect();
        }
        if l.dh.is_empty() {
            return Err(ProposalError::Missing("DH group", s.to_owned()));
        }
        let legacy = is_legacy(&l.encr, &l.prf, &l.integ, &l.dh);
        Ok(Self {
            encr: l.encr,
            prf: l.prf,
            integ: l.integ,
            dh: l.dh,
            legacy,
        })
    }

    /// The proposal used when none is configured: AES-GCM-16, PRF-HMAC-SHA2-256 and the
    /// groups 19, 31 and 14, as ARCHITECTURE.md decides.
    pub fn default_modern() -> Self {
        Self {
            encr: vec![Encr::AesGcm16(128), Encr::AesGcm16(256)],
            prf: vec![Prf::HmacSha256, Prf::HmacSha384],
            integ: vec![],
            dh: vec![DhGroup::Ecp256, DhGroup::Curve25519, DhGroup::Modp2048],
            legacy: false,
        }
    }

    /// SA payload form with the given proposal number and SPI (empty in IKE_SA_INIT,
    /// 8 bytes when rekeying). `dh_first` is moved to the front of the DH list so that it
    /// matches the KE payload sent alongside.
    pub fn to_payload(&self, number: u8, spi: &[u8], dh_first: Option<DhGroup>) -> Proposal {
        let mut transforms: Vec<Transform> = self.encr.iter().map(|&e| encr_transform(e)).collect();
        transforms.extend(self.prf.iter().map(|p| Transform::new(t::PRF, p.id())));
        transforms.extend(self.integ.iter().map(|i| Transform::new(t::INTEG, i.id())));
        transforms.extend(dh_ordered(&self.dh, dh_first).map(|d| Transform::new(t::DH, d.id())));
        Proposal {
            number,
            protocol: protocol::IKE,
            spi: spi.to_vec(),
            transforms,
        }
    }

    /// The first suite this proposal and the peer's proposal `p` share, our order first.
    pub fn select(&self, p: &Proposal) -> Option<IkeSuite> {
        if p.protocol != protocol::IKE {
            return None;
        }
        let offered = Offered::from(p)?;
        let encr = *self.encr.iter().find(|e| offered.encr.contains(e))?;
        let prf = *self.prf.iter().find(|x| offered.prf.contains(x))?;
        let integ = if encr.is_aead() {
            if !offered.integ.is_empty() && !offered.integ.contains(&None) {
                return None;
            }
            None
        } else {
            Some(
                *self
                    .integ
                    .iter()
                    .find(|i| offered.integ.contains(&Some(**i)))?,
            )
        };
        let dh = *self.dh.iter().find(|d| offered.dh.contains(&Some(**d)))?;
        Some(IkeSuite {
            encr,
            prf,
            integ,
            dh,
        })
    }

    /// Whether a suite chosen by a peer is one we offered.
    pub fn allows(&self, s: &IkeSuite) -> bool {
        self.encr.contains(&s.encr)
            && self.prf.contains(&s.prf)
            && match s.integ {
                None => s.encr.is_aead(),
                Some(i) => self.integ.contains(&i),
            }
            && self.dh.contains(&s.dh)
    }
}

impl IkeSuite {
    /// The single-transform proposal a responder returns (§2.7).
    pub fn to_payload(&self, number: u8, spi: &[u8]) -> Proposal {
        let mut transforms = vec![
            encr_transform(self.encr),
            Transform::new(t::PRF, self.prf.id()),
        ];
        if let Some(i) = self.integ {
            transforms.push(Transform::new(t::INTEG, i.id()));
        }
        transforms.push(Transform::new(t::DH, self.dh.id()));
        Proposal {
            number,
            protocol: protocol::IKE,
            spi: spi.to_vec(),
            transforms,
        }
    }

    /// Reads the responder's answer: exactly one transform of each type (§3.3.6).
    pub fn from_accepted(p: &Proposal) -> Option<Self> {
        if p.protocol != protocol::IKE {
            return None;
        }
        let o = Offered::from(p)?;
        if o.encr.len() != 1 || o.prf.len() != 1 || o.dh.len() != 1 || o.integ.len() > 1 {
            return None;
        }
        Some(Self {
            encr: o.encr[0],
            prf: o.prf[0],
            integ: o.integ.first().copied().flatten(),
            dh: o.dh[0]?,
        })
    }
}

impl EspProposal {
    /// Parses strongSwan's ESP proposal syntax, e.g. `aes128gcm16`, `aes128-sha1`,
    /// `aes256-sha256-modp2048` (the group enables PFS on rekey), `aes128gcm16-esn`.
    pub fn parse(s: &str) -> Result<Self, ProposalError> {
        let l = lists(s)?;
        if !l.prf.is_empty() {
            return Err(ProposalError::UnknownToken(format!(
                "{s} (no PRF in ESP proposals)"
            )));
        }
        let legacy = is_legacy(&l.encr, &[], &l.integ, &l.dh);
        Ok(Self {
            encr: l.encr,
            integ: l.integ,
            dh: l.dh,
            esn: if l.esn.is_empty() { vec![false] } else { l.esn },
            legacy,
        })
    }

    pub fn default_modern() -> Self {
        Self {
            encr: vec![Encr::AesGcm16(128), Encr::AesGcm16(256)],
            integ: vec![],
            dh: vec![],
            esn: vec![false],
            legacy: false,
        }
    }

    /// SA payload form for ESP with our inbound SPI. `pfs` says whether DH transforms are
    /// included (not in IKE_AUTH, where the IKE SA's exchange serves, §1.2).
    pub fn to_payload(&self, number: u8, spi: u32, pfs: Option<DhGroup>) -> Proposal {
        let mut transforms: Vec<Transform> = self.encr.iter().map(|&e| encr_transform(e)).collect();
        transforms.extend(self.integ.iter().map(|i| Transform::new(t::INTEG, i.id())));
        if pfs.is_some() {
            transforms.extend(dh_ordered(&self.dh, pfs).map(|d| Transform::new(t::DH, d.id())));
        }
        transforms.extend(
            self.esn
                .iter()
                .map(|&e| Transform::new(t::ESN, if e { t::ESN_YES } else { t::ESN_NO })),
        );
        Proposal {
            number,
            protocol: protocol::ESP,
            spi: spi.to_be_bytes().to_vec(),
            transforms,
        }
    }

    /// First suite shared with the peer's ESP proposal. `want_dh` is the group the peer's KE
    /// payload used (None if the exchange has no KE).
    pub fn select(&self, p: &Proposal, want_dh: Option<DhGroup>) -> Option<ChildSuite> {
        if p.protocol != protocol::ESP || p.spi.len() != 4 {
            return None;
        }
        let o = Offered::from(p)?;
        let encr = *self.encr.iter().find(|e| o.encr.contains(e))?;
        let integ = if encr.is_aead() {
            if !o.integ.is_empty() && !o.integ.contains(&None) {
                return None;
            }
            None
        } else {
            Some(*self.integ.iter().find(|i| o.integ.contains(&Some(**i)))?)
        };
        let dh = match want_dh {
            Some(g) if self.dh.contains(&g) && o.dh.contains(&Some(g)) => Some(g),
            Some(_) => return None,
            None if o.dh.is_empty() || o.dh.contains(&None) => None,
            None => return None,
        };
        let esn_offered = if o.esn.is_empty() { vec![false] } else { o.esn };
        let esn = *self.esn.iter().find(|e| esn_offered.contains(e))?;
        Some(ChildSuite {
            encr,
            integ,
            dh,
            esn,
        })
    }

    pub fn allows(&self, s: &ChildSuite) -> bool {
        self.encr.contains(&s.encr)
            && match s.integ {
                None => s.encr.is_aead(),
                Some(i) => self.integ.contains(&i),
            }
            && s.dh.is_none_or(|d| self.dh.contains(&d))
            && self.esn.contains(&s.esn)
    }
}

impl ChildSuite {
    pub fn to_payload(&self, number: u8, spi: u32) -> Proposal {
        let mut transforms = vec![encr_transform(self.encr)];
        if let Some(i) = self.integ {
            transforms.push(Transform::new(t::INTEG, i.id()));
        }
        if let Some(d) = self.dh {
            transforms.push(Transform::new(t::DH, d.id()));
        }
        transforms.push(Transform::new(
            t::ESN,
            if self.esn { t::ESN_YES } else { t::ESN_NO },
        ));
        Proposal {
            number,
            protocol: protocol::ESP,
            spi: spi.to_be_bytes().to_vec(),
            transforms,
        }
    }

    /// Reads a responder's single-choice ESP proposal; returns the suite and its SPI.
    pub fn from_accepted(p: &Proposal) -> Option<(Self, u32)> {
        if p.protocol != protocol::ESP {
            return None;
        }
        let spi = u32::from_be_bytes(p.spi.as_slice().try_into().ok()?);
        let o = Offered::from(p)?;
        if o.encr.len() != 1 || o.integ.len() > 1 || o.dh.len() > 1 || o.esn.len() > 1 {
            return None;
        }
        Some((
            Self {
                encr: o.encr[0],
                integ: o.integ.first().copied().flatten(),
                dh: o.dh.first().copied().flatten(),
                esn: o.esn.first().copied().unwrap_or(false),
            },
            spi,
        ))
    }
}

fn encr_transform(e: Encr) -> Transform {
    if e.has_key_length() {
        Transform::with_key_length(t::ENCR, e.id(), e.key_bits())
    } else {
        Transform::new(t::ENCR, e.id())
    }
}

fn dh_ordered(dh: &[DhGroup], first: Option<DhGroup>) -> impl Iterator<Item = DhGroup> + '_ {
    first
        .into_iter()
        .chain(dh.iter().copied().filter(move |d| Some(*d) != first))
}

/// The transforms of a peer's proposal that we understand, by type. `None` entries stand for
/// "NONE" transforms (integrity or DH id 0). Unknown transform IDs are skipped (§3.3.6), but an
/// unknown transform *type* makes the proposal unusable.
struct Offered {
    encr: Vec<Encr>,
    prf: Vec<Prf>,
    integ: Vec<Option<Integ>>,
    dh: Vec<Option<DhGroup>>,
    esn: Vec<bool>,
}

impl Offered {
    fn from(p: &Proposal) -> Option<Self> {
        let mut o = Self {
            encr: vec![],
            prf: vec![],
            integ: vec![],
            dh: vec![],
            esn: vec![],
        };
        for tr in &p.transforms {
            // §3.3.6: a transform with an attribute we do not understand is unusable.
            let only_key_len = tr.attributes.iter().all(|a| {
                matches!(a, wire::ike::Attribute::Tv { kind, .. } if *kind == t::ATTR_KEY_LENGTH)
            });
            if !only_key_len {
                continue;
            }
            match tr.kind {
                t::ENCR => o.encr.extend(Encr::from_id(tr.id, tr.key_length())),
                t::PRF => o.prf.extend(Prf::from_id(tr.id)),
                t::INTEG if tr.id == t::AUTH_NONE => o.integ.push(None),
                t::INTEG => o.integ.extend(Integ::from_id(tr.id).map(Some)),
                t::DH if tr.id == t::DH_NONE => o.dh.push(None),
                t::DH => o.dh.extend(DhGroup::from_id(tr.id).map(Some)),
                t::ESN => match tr.id {
                    t::ESN_NO => o.esn.push(false),
                    t::ESN_YES => o.esn.push(true),
                    _ => {}
                },
                _ => return None,
            }
        }
        Some(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strongswan_ike_proposals() {
        let p = IkeProposal::parse("aes128gcm16-prfsha256-modp2048").unwrap();
        assert_eq!(p.encr, [Encr::AesGcm16(128)]);
        assert_eq!(p.prf, [Prf::HmacSha256]);
        assert!(p.integ.is_empty());
        assert_eq!(p.dh, [DhGroup::Modp2048]);
        assert!(!p.legacy);

        let p = IkeProposal::parse("aes256gcm16-prfsha384-ecp384").unwrap();
        assert_eq!(
            (p.encr[0], p.prf[0], p.dh[0]),
            (Encr::AesGcm16(256), Prf::HmacSha384, DhGroup::Ecp384)
        );
        let p = IkeProposal::parse("aes128gcm16-prfsha256-ecp256").unwrap();
        assert_eq!(p.dh, [DhGroup::Ecp256]);
        let p = IkeProposal::parse("aes128gcm16-prfsha256-x25519").unwrap();
        assert_eq!(p.dh, [DhGroup::Curve25519]);

        let p = IkeProposal::parse("aes128-sha1-modp1024").unwrap();
        assert_eq!(p.encr, [Encr::AesCbc(128)]);
        assert_eq!(p.integ, [Integ::HmacSha1_96]);
        assert_eq!(p.prf, [Prf::HmacSha1], "integrity names the PRF");
        assert!(p.legacy);

        let p = IkeProposal::parse("aes256-sha256-modp2048").unwrap();
        assert_eq!(
            (p.encr[0], p.integ[0], p.prf[0]),
            (Encr::AesCbc(256), Integ::HmacSha256_128, Prf::HmacSha256)
        );
        assert!(!p.legacy);
    }

    #[test]
    fn parses_esp_proposals() {
        let p = EspProposal::parse("aes128gcm16").unwrap();
        assert_eq!(
            (p.encr.clone(), p.integ.len(), p.dh.len()),
            (vec![Encr::AesGcm16(128)], 0, 0)
        );
        let p = EspProposal::parse("aes256gcm16").unwrap();
        assert_eq!(p.encr, [Encr::AesGcm16(256)]);
        let p = EspProposal::parse("aes128-sha1").unwrap();
        assert_eq!(p.integ, [Integ::HmacSha1_96]);
        assert!(p.legacy);
        // 3DES only when named, and then as legacy.
        let p = EspProposal::parse("3des-sha256").unwrap();
        assert_eq!((p.encr.clone(), p.legacy), (vec![Encr::TripleDesCbc], true));
        assert!(
            !EspProposal::default_modern()
                .encr
                .contains(&Encr::TripleDesCbc)
        );
        assert!(
            !IkeProposal::default_modern()
                .encr
                .contains(&Encr::TripleDesCbc)
        );
        let p = EspProposal::parse("aes256-sha256-modp2048").unwrap();
        assert_eq!(p.integ, [Integ::HmacSha256_128]);
        assert_eq!(p.dh, [DhGroup::Modp2048]);
        let p = EspProposal::parse("aes128gcm16-ecp256-esn").unwrap();
        assert_eq!((p.dh[0], p.esn.clone()), (DhGroup::Ecp256, vec![true]));
    }

    #[test]
    fn errors_name_the_bad_token() {
        let e = IkeProposal::parse("aes128gcm16-prfsha256-modp9999").unwrap_err();
        assert_eq!(e, ProposalError::UnknownToken("modp9999".into()));
        assert!(e.to_string().contains("modp9999"));
        assert!(matches!(
            IkeProposal::parse("aes128gcm16-prfsha256"),
            Err(ProposalError::Missing("DH group", _))
        ));
        assert!(matches!(
            IkeProposal::parse("aes128gcm16-ecp256"),
            Err(ProposalError::Missing("PRF", _))
        ));
        assert!(matches!(
            EspProposal::parse("aes128"),
            Err(ProposalError::MissingIntegrity(_))
        ));
        assert!(matches!(
            EspProposal::parse("aes128gcm16-sha256"),
            Err(ProposalError::MissingIntegrity(_))
        ));
        assert_eq!(IkeProposal::parse(""), Err(ProposalError::Empty));
        assert!(EspProposal::parse("aes128gcm16-prfsha256").is_err());
    }

    #[test]
    fn selection_agrees_both_ways() {
        let ours = IkeProposal::default_modern();
        let peer = IkeProposal::parse("aes256gcm16-prfsha384-ecp384-ecp256").unwrap();
        let offer = peer.to_payload(1, &[], Some(DhGroup::Ecp384));
        let s = ours.select(&offer).unwrap();
        assert_eq!(
            s,
            IkeSuite {
                encr: Encr::AesGcm16(256),
                prf: Prf::HmacSha384,
                integ: None,
                dh: DhGroup::Ecp256
            }
        );
        let back = IkeSuite::from_accepted(&s.to_payload(1, &[])).unwrap();
        assert_eq!(back, s);
        assert!(peer.allows(&back));

        let legacy = IkeProposal::parse("aes128-sha1-modp1024").unwrap();
        assert_eq!(ours.select(&legacy.to_payload(1, &[], None)), None);
        let s = legacy.select(&legacy.to_payload(1, &[], None)).unwrap();
        assert_eq!(s.integ, Some(Integ::HmacSha1_96));

        let esp = EspProposal::parse("aes128-sha1").unwrap();
        let offer = esp.to_payload(1, 0xc000_0001, None);
        let s = esp.select(&offer, None).unwrap();
        let (back, spi) = ChildSuite::from_accepted(&s.to_payload(1, 0xc000_0002)).unwrap();
        assert_eq!((back, spi), (s, 0xc000_0002));
        assert_eq!(EspProposal::default_modern().select(&offer, None), None);

        let pfs = EspProposal::parse("aes128gcm16-ecp256").unwrap();
        let offer = pfs.to_payload(1, 0xc000_0003, Some(DhGroup::Ecp256));
        assert_eq!(
            pfs.select(&offer, Some(DhGroup::Ecp256)).unwrap().dh,
            Some(DhGroup::Ecp256)
        );
        assert_eq!(pfs.select(&offer, Some(DhGroup::Modp2048)), None);
    }

    #[test]
    fn unknown_transform_ids_are_skipped_unknown_types_reject() {
        let ours = IkeProposal::default_modern();
        let mut offer = ours.to_payload(1, &[], None);
        offer.transforms.insert(0, Transform::new(t::ENCR, 999));
        assert!(ours.select(&offer).is_some());
        offer.transforms.push(Transform::new(77, 1));
        assert!(ours.select(&offer).is_none());
    }
}
