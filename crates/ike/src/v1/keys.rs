//! IKEv1 key derivation for pre-shared keys (RFC 2409 §5, §5.5, Appendix B): SKEYID and its
//! three children, the phase 1 authentication hashes, the CBC IVs, quick mode KEYMAT and the
//! NAT-D hashes of RFC 3947.

use std::net::SocketAddr;

use sha1::{Digest, Sha1};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::crypto::{Integ, Prf};

/// The negotiated hash algorithm: its HMAC is the PRF, the plain hash makes IVs and NAT-D.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    Sha1,
    Sha256,
}

impl HashAlg {
    pub const fn prf(self) -> Prf {
        match self {
            Self::Sha1 => Prf::HmacSha1,
            Self::Sha256 => Prf::HmacSha256,
        }
    }

    /// The ESP/IKEv2 integrity algorithm built on the same hash (for reporting and ESP).
    pub const fn integ(self) -> Integ {
        match self {
            Self::Sha1 => Integ::HmacSha1_96,
            Self::Sha256 => Integ::HmacSha256_128,
        }
    }

    pub const fn from_integ(i: Integ) -> Option<Self> {
        match i {
            Integ::HmacSha1_96 => Some(Self::Sha1),
            Integ::HmacSha256_128 => Some(Self::Sha256),
            _ => None,
        }
    }

    pub fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        match self {
            Self::Sha1 => {
                let mut h = Sha1::new();
                parts.iter().for_each(|p| h.update(p));
                h.finalize().to_vec()
            }
            Self::Sha256 => {
                let mut h = Sha256::new();
                parts.iter().for_each(|p| h.update(p));
                h.finalize().to_vec()
            }
        }
    }
}

/// SKEYID and the keys derived from it for one ISAKMP SA.
pub struct Phase1Keys {
    pub skeyid: Zeroizing<Vec<u8>>,
    pub skeyid_d: Zeroizing<Vec<u8>>,
    pub skeyid_a: Zeroizing<Vec<u8>>,
    pub skeyid_e: Zeroizing<Vec<u8>>,
    /// The cipher key: SKEYID_e, stretched by Appendix B when it is too short.
    pub enc_key: Zeroizing<Vec<u8>>,
}

impl core::fmt::Debug for Phase1Keys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Phase1Keys(..)")
    }
}

/// The ISAKMP cookies in header order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cookies {
    pub i: u64,
    pub r: u64,
}

impl Cookies {
    pub fn bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.i.to_be_bytes());
        b[8..].copy_from_slice(&self.r.to_be_bytes());
        b
    }
}

impl Phase1Keys {
    /// RFC 2409 §5: SKEYID = prf(pre-shared-key, Ni_b | Nr_b), then
    /// SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0), SKEYID_a = prf(SKEYID, SKEYID_d | ...
    /// | 1), SKEYID_e = prf(SKEYID, SKEYID_a | ... | 2).
    pub fn derive(
        hash: HashAlg,
        psk: &[u8],
        ni: &[u8],
        nr: &[u8],
        g_xy: &[u8],
        cookies: Cookies,
        key_len: usize,
    ) -> Self {
        let prf = hash.prf();
        let c = cookies.bytes();
        let skeyid = Zeroizing::new(prf.compute(psk, &[ni, nr]));
        let skeyid_d = Zeroizing::new(prf.compute(&skeyid, &[g_xy, &c, &[0]]));
        let skeyid_a = Zeroizing::new(prf.compute(&skeyid, &[&skeyid_d, g_xy, &c, &[1]]));
        let skeyid_e = Zeroizing::new(prf.compute(&skeyid, &[&skeyid_a, g_xy, &c, &[2]]));
        let enc_key = Zeroizing::new(if skeyid_e.len() >= key_len {
            skeyid_e[..key_len].to_vec()
        } else {
            expand(prf, &skeyid_e, key_len)
        });
        Self {
            skeyid,
            skeyid_d,
            skeyid_a,
            skeyid_e,
            enc_key,
        }
    }

    /// HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b) and, with the
    /// roles swapped, HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b).
    pub fn auth_hash(
        &self,
        hash: HashAlg,
        of_initiator: bool,
        t: &Transcript<'_>,
        id_b: &[u8],
    ) -> Vec<u8> {
        let (ci, cr) = (t.cookies.i.to_be_bytes(), t.cookies.r.to_be_bytes());
        let parts: [&[u8]; 6] = if of_initiator {
            [t.g_xi, t.g_xr, &ci, &cr, t.sai_b, id_b]
        } else {
            [t.g_xr, t.g_xi, &cr, &ci, t.sai_b, id_b]
        };
        hash.prf().compute(&self.skeyid, &parts)
    }
}

/// What both authentication hashes of main mode cover besides the identity.
#[derive(Debug, Clone, Copy)]
pub struct Transcript<'a> {
    pub g_xi: &'a [u8],
    pub g_xr: &'a [u8],
    pub cookies: Cookies,
    pub sai_b: &'a [u8],
}

/// What a quick mode contributes to KEYMAT besides the SPI.
#[derive(Debug, Clone, Copy)]
pub struct KeymatSeed<'a> {
    /// g(qm)^xy when the quick mode did PFS.
    pub pfs: Option<&'a [u8]>,
    pub protocol: u8,
    pub ni: &'a [u8],
    pub nr: &'a [u8],
}

/// Appendix B: Ka = K1 | K2 | ..., K1 = prf(K, 0), Kn = prf(K, Kn-1), cut to `len`.
pub fn expand(prf: Prf, key: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + prf.output_len());
    let mut k = prf.compute(key, &[&[0]]);
    loop {
        out.extend_from_slice(&k);
        if out.len() >= len {
            break;
        }
        k = prf.compute(key, &[&k]);
    }
    out.truncate(len);
    out
}

/// Appendix B: the first phase 1 IV is hash(g^xi | g^xr), cut to the cipher block.
pub fn phase1_iv(hash: HashAlg, g_xi: &[u8], g_xr: &[u8], block: usize) -> Vec<u8> {
    let mut iv = hash.digest(&[g_xi, g_xr]);
    iv.truncate(block);
    iv
}

/// Appendix B: quick mode and informational exchanges start from hash(last phase 1 CBC
/// output block | M-ID), cut to the cipher block.
pub fn phase2_iv(hash: HashAlg, last_block: &[u8], mid: u32, block: usize) -> Vec<u8> {
    let mut iv = hash.digest(&[last_block, &mid.to_be_bytes()]);
    iv.truncate(block);
    iv
}

/// §5.5: KEYMAT = K1 | K2 | ..., K1 = prf(SKEYID_d, [g(qm)^xy |] protocol | SPI | Ni_b |
/// Nr_b), Kn = prf(SKEYID_d, Kn-1 | [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b).
pub fn keymat(
    prf: Prf,
    skeyid_d: &[u8],
    seed: &KeymatSeed<'_>,
    spi: u32,
    len: usize,
) -> Zeroizing<Vec<u8>> {
    let spi = spi.to_be_bytes();
    let g = seed.pfs.unwrap_or_default();
    let mut out = Zeroizing::new(Vec::with_capacity(len + prf.output_len()));
    let mut k: Vec<u8> = Vec::new();
    while out.len() < len {
        k = prf.compute(skeyid_d, &[&k, g, &[seed.protocol], &spi, seed.ni, seed.nr]);
        out.extend_from_slice(&k);
    }
    out.truncate(len);
    out
}

/// RFC 3947 §3.2: HASH = hash(CKY-I | CKY-R | IP | Port).
pub fn nat_d(hash: HashAlg, cookies: Cookies, addr: SocketAddr) -> Vec<u8> {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(a) => a.octets().to_vec(),
        std::net::IpAddr::V6(a) => a.octets().to_vec(),
    };
    hash.digest(&[&cookies.bytes(), &ip, &addr.port().to_be_bytes()])
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
