//! Key derivation (RFC 7296 §2.13-§2.18), PSK authentication (§2.15) and NAT detection
//! hashes (§2.23).

use core::fmt;

use sha1::{Digest, Sha1};
use zeroize::{Zeroize, Zeroizing};

use crate::crypto::{DirectionKeys, Prf};
use crate::proposal::{ChildSuite, IkeSuite};

/// The seven secrets of an IKE SA.
#[derive(Clone, PartialEq, Eq)]
pub struct IkeKeys {
    pub sk_d: Vec<u8>,
    pub sk_ai: Vec<u8>,
    pub sk_ar: Vec<u8>,
    pub sk_ei: Vec<u8>,
    pub sk_er: Vec<u8>,
    pub sk_pi: Vec<u8>,
    pub sk_pr: Vec<u8>,
}

impl Drop for IkeKeys {
    fn drop(&mut self) {
        for k in [
            &mut self.sk_d,
            &mut self.sk_ai,
            &mut self.sk_ar,
            &mut self.sk_ei,
            &mut self.sk_er,
            &mut self.sk_pi,
            &mut self.sk_pr,
        ] {
            k.zeroize();
        }
    }
}

impl fmt::Debug for IkeKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IkeKeys(..)")
    }
}

impl IkeKeys {
    /// Derives keys for a new IKE SA (§2.14):
    /// SKEYSEED = prf(Ni | Nr, g^ir);
    /// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr).
    pub fn derive(
        suite: &IkeSuite,
        shared: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Self {
        let skeyseed = Zeroizing::new(suite.prf.compute(&[ni, nr].concat(), &[shared]));
        Self::expand(suite, &skeyseed, ni, nr, spi_i, spi_r)
    }

    /// Derives keys for an IKE SA that rekeys one whose SK_d is `old_sk_d` (§2.18):
    /// SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr), with the old SA's PRF.
    #[allow(clippy::too_many_arguments)]
    pub fn derive_rekey(
        old_prf: Prf,
        old_sk_d: &[u8],
        suite: &IkeSuite,
        shared: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Self {
        let skeyseed = Zeroizing::new(old_prf.compute(old_sk_d, &[shared, ni, nr]));
        Self::expand(suite, &skeyseed, ni, nr, spi_i, spi_r)
    }

    fn expand(
        suite: &IkeSuite,
        skeyseed: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Self {
        let prf_len = suite.prf.output_len();
        let a = suite.integ.map_or(0, |i| i.key_len());
        let e = suite.encr.key_len();
        let total = 3 * prf_len + 2 * a + 2 * e;
        let seed = [ni, nr, &spi_i.to_be_bytes(), &spi_r.to_be_bytes()].concat();
        // At most 3*64 + 2*64 + 2*36 bytes: far below prf+'s 255-block limit.
        let km = Zeroizing::new(suite.prf.plus(skeyseed, &seed, total).unwrap_or_default());
        let mut at = 0;
        let mut take = |n: usize| {
            let v = km.get(at..at + n).unwrap_or_default().to_vec();
            at += n;
            v
        };
        Self {
            sk_d: take(prf_len),
            sk_ai: take(a),
            sk_ar: take(a),
            sk_ei: take(e),
            sk_er: take(e),
            sk_pi: take(prf_len),
            sk_pr: take(prf_len),
        }
    }

    /// Keys protecting messages sent by the original initiator (`initiator` true) or responder.
    pub fn direction<'a>(&'a self, suite: &IkeSuite, initiator: bool) -> DirectionKeys<'a> {
        let (sk_e, sk_a) = if initiator {
            (&self.sk_ei, &self.sk_ai)
        } else {
            (&self.sk_er, &self.sk_ar)
        };
        DirectionKeys {
            encr: suite.encr,
            integ: suite.integ,
            sk_e,
            sk_a,
        }
    }
}

/// Keys of one CHILD SA, both directions, split as the ESP dataplane needs them.
#[derive(Clone, PartialEq, Eq)]
pub struct ChildKeys {
    /// Encryption key (AES key followed by the 4-byte salt for GCM) initiator -> responder.
    pub encr_i: Vec<u8>,
    pub integ_i: Vec<u8>,
    pub encr_r: Vec<u8>,
    pub integ_r: Vec<u8>,
}

impl Drop for ChildKeys {
    fn drop(&mut self) {
        self.encr_i.zeroize();
        self.integ_i.zeroize();
        self.encr_r.zeroize();
        self.integ_r.zeroize();
    }
}

impl fmt::Debug for ChildKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChildKeys(..)")
    }
}

impl ChildKeys {
    /// KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) (§2.17), taken in the order: initiator's
    /// encryption key, initiator's integrity key, then the responder's.
    pub fn derive(
        prf: Prf,
        sk_d: &[u8],
        suite: &ChildSuite,
        pfs: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
    ) -> Self {
        let e = suite.encr.key_len();
        let a = suite.integ.map_or(0, |i| i.key_len());
        let seed = [pfs.unwrap_or_default(), ni, nr].concat();
        let km = Zeroizing::new(prf.plus(sk_d, &seed, 2 * (e + a)).unwrap_or_default());
        let part = |from: usize, n: usize| km.get(from..from + n).unwrap_or_default().to_vec();
        Self {
            encr_i: part(0, e),
            integ_i: part(e, a),
            encr_r: part(e + a, e),
            integ_r: part(2 * e + a, a),
        }
    }
}

/// The key pad of §2.15 for shared-secret authentication.
const KEY_PAD: &[u8] = b"Key Pad for IKEv2";

/// AUTH payload data for PSK authentication (method 2, §2.15):
/// prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>), where SignedOctets =
/// RealMessage | NonceData (the peer's nonce) | prf(SK_p, IDType | RESERVED | IDData).
pub fn psk_auth(
    prf: Prf,
    psk: &[u8],
    real_message: &[u8],
    peer_nonce: &[u8],
    sk_p: &[u8],
    id_body: &[u8],
) -> Vec<u8> {
    let maced_id = prf.compute(sk_p, &[id_body]);
    let key = Zeroizing::new(prf.compute(psk, &[KEY_PAD]));
    prf.compute(&key, &[real_message, peer_nonce, &maced_id])
}

/// NAT_DETECTION_*_IP data: SHA-1(SPIi | SPIr | IP | Port) (§2.23). SPIr is zero in the
/// IKE_SA_INIT request.
pub fn nat_hash(spi_i: u64, spi_r: u64, addr: std::net::IpAddr, port: u16) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(spi_i.to_be_bytes());
    h.update(spi_r.to_be_bytes());
    match addr {
        std::net::IpAddr::V4(a) => h.update(a.octets()),
        std::net::IpAddr::V6(a) => h.update(a.octets()),
    }
    h.update(port.to_be_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Encr, Integ};
    use crate::dh::DhGroup;
    use hex_literal::hex;

    fn gcm_suite() -> IkeSuite {
        IkeSuite {
            encr: Encr::AesGcm16(128),
            prf: Prf::HmacSha256,
            integ: None,
            dh: DhGroup::Ecp256,
        }
    }

    #[test]
    fn ike_keys_follow_section_2_14() {
        let s = IkeSuite {
            encr: Encr::AesCbc(128),
            prf: Prf::HmacSha256,
            integ: Some(Integ::HmacSha256_128),
            dh: DhGroup::Modp2048,
        };
        let (ni, nr, z) = ([1u8; 32], [2u8; 32], [3u8; 256]);
        let k = IkeKeys::derive(&s, &z, &ni, &nr, 0x1111, 0x2222);
        // Independently: SKEYSEED by HMAC, then prf+ by hand.
        let skeyseed = Prf::HmacSha256.compute(&[&ni[..], &nr[..]].concat(), &[&z]);
        let seed = [
            &ni[..],
            &nr[..],
            &0x1111u64.to_be_bytes(),
            &0x2222u64.to_be_bytes(),
        ]
        .concat();
        let mut stream = Vec::new();
        let mut t: Vec<u8> = Vec::new();
        for n in 1u8..=8 {
            t = Prf::HmacSha256.compute(&skeyseed, &[&t, &seed, &[n]]);
            stream.extend_from_slice(&t);
        }
        let mut at = 0;
        for (got, len) in [
            (&k.sk_d, 32),
            (&k.sk_ai, 32),
            (&k.sk_ar, 32),
            (&k.sk_ei, 16),
            (&k.sk_er, 16),
            (&k.sk_pi, 32),
            (&k.sk_pr, 32),
        ] {
            assert_eq!(got[..], stream[at..at + len]);
            at += len;
        }
        let g = IkeKeys::derive(&gcm_suite(), &z, &ni, &nr, 1, 2);
        assert!(g.sk_ai.is_empty());
        assert_eq!(g.sk_ei.len(), 20, "AES-128 key + 4-byte salt");
    }

    #[test]
    fn rekey_skeyseed_uses_old_sk_d() {
        let s = gcm_suite();
        let k = IkeKeys::derive_rekey(
            Prf::HmacSha256,
            b"old SK_d",
            &s,
            b"gir",
            b"n_i-16-bytes....",
            b"n_r-16-bytes....",
            5,
            6,
        );
        let skeyseed = Prf::HmacSha256.compute(
            b"old SK_d",
            &[b"gir", b"n_i-16-bytes....", b"n_r-16-bytes...."],
        );
        let seed = [
            &b"n_i-16-bytes...."[..],
            b"n_r-16-bytes....",
            &5u64.to_be_bytes(),
            &6u64.to_be_bytes(),
        ]
        .concat();
        assert_eq!(k.sk_d, Prf::HmacSha256.plus(&skeyseed, &seed, 32).unwrap());
    }

    #[test]
    fn child_keymat_order_and_pfs() {
        let suite = ChildSuite {
            encr: Encr::AesCbc(128),
            integ: Some(Integ::HmacSha1_96),
            dh: None,
            esn: false,
        };
        let k = ChildKeys::derive(Prf::HmacSha1, b"skd", &suite, None, b"ni", b"nr");
        let km = Prf::HmacSha1.plus(b"skd", b"ninr", 72).unwrap();
        assert_eq!(k.encr_i, km[..16]);
        assert_eq!(k.integ_i, km[16..36]);
        assert_eq!(k.encr_r, km[36..52]);
        assert_eq!(k.integ_r, km[52..72]);
        let p = ChildKeys::derive(Prf::HmacSha1, b"skd", &suite, Some(b"gir"), b"ni", b"nr");
        assert_eq!(
            p.encr_i,
            Prf::HmacSha1.plus(b"skd", b"girninr", 16).unwrap()
        );
    }

    #[test]
    fn psk_auth_follows_section_2_15() {
        let got = psk_auth(
            Prf::HmacSha256,
            b"secret",
            b"msg1",
            b"nonce_r",
            b"sk_pi",
            &[2, 0, 0, 0, b'a'],
        );
        let key = Prf::HmacSha256.compute(b"secret", &[b"Key Pad for IKEv2"]);
        let id = Prf::HmacSha256.compute(b"sk_pi", &[&[2, 0, 0, 0, b'a']]);
        let expect = Prf::HmacSha256.compute(&key, &[b"msg1", b"nonce_r", &id]);
        assert_eq!(got, expect);
    }

    /// Expected values computed with Python's `hmac`/`hashlib` from the RFC 7296 §2.13-§2.15
    /// formulas, independently of this crate's prf+ and key splitting.
    #[test]
    fn keys_match_an_independent_computation() {
        let ni: Vec<u8> = (0..32).collect();
        let nr: Vec<u8> = (32..64).collect();
        let z = [0xaa; 32];
        let k = IkeKeys::derive(
            &gcm_suite(),
            &z,
            &ni,
            &nr,
            0x0102_0304_0506_0708,
            0x1112_1314_1516_1718,
        );
        assert_eq!(
            k.sk_d,
            hex!("6f34353460d10aa36e430ec3027673b0885ab8c2958840c020786ca612787bd5")
        );
        assert_eq!(k.sk_ei, hex!("bd7633e6e3c35af266e3754bdc3474f8254aa450"));
        assert_eq!(k.sk_er, hex!("ed2c34496ded58b8e22b5953f198f85a6fd4ef95"));
        assert_eq!(
            k.sk_pi,
            hex!("5774d688c17b466f53699d5134c751e616ca8fa019a978360c43d5e261c65199")
        );
        assert_eq!(
            k.sk_pr,
            hex!("f6fe62a2b94e2a8afb3527fbdcbbb71c2b27facb77ef85f7618df338ed9e4f0b")
        );
        let child = ChildSuite {
            encr: Encr::AesGcm16(128),
            integ: None,
            dh: None,
            esn: false,
        };
        let c = ChildKeys::derive(Prf::HmacSha256, &k.sk_d, &child, None, &ni, &nr);
        assert_eq!(c.encr_i, hex!("b7a08794d901a9b01c5e8692200e281fe82411ab"));
        assert_eq!(c.encr_r, hex!("300bef449352212307b0234718190e3522d2f332"));
        let mut id = vec![2, 0, 0, 0];
        id.extend_from_slice(b"a.example");
        let auth = psk_auth(
            Prf::HmacSha256,
            b"correct horse battery staple",
            b"msg1",
            &nr,
            &k.sk_pi,
            &id,
        );
        assert_eq!(
            auth,
            hex!("10eefca50239002eda20abbb273a1d9f78535d4452cfa43a226c47696dd76a72")
        );
    }

    #[test]
    fn nat_hash_known_answer() {
        // SHA-1 over 8+8 bytes of SPIs, 4 bytes of address, 2 of port; value computed with
        // Python's hashlib: sha1(bytes.fromhex("0102030405060708" + "00"*8 + "c6336401" + "01f4")).
        let h = nat_hash(
            0x0102_0304_0506_0708,
            0,
            "198.51.100.1".parse().unwrap(),
            500,
        );
        assert_eq!(h, hex!("3a02de24d181fd88168057d5ab63bd418473444a"));
    }
}
