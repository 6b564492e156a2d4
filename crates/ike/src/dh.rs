//! Diffie-Hellman groups (transform type 4): MODP groups 2, 5 and 14 (RFC 2409, RFC 3526),
//! NIST ECP groups 19 and 20 (RFC 5903) and Curve25519 (RFC 8031).

use core::fmt;

use num_bigint::BigUint;
use rand_core::CryptoRngCore;
use wire::ike::transform as t;
use zeroize::Zeroizing;

/// A Diffie-Hellman group v6gate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhGroup {
    Modp1024,
    /// Group 5, kept for IKEv1 peers that offer nothing newer.
    Modp1536,
    Modp2048,
    Ecp256,
    Ecp384,
    Curve25519,
}

/// RFC 2409 §6.2 (group 2): 2^1024 - 2^960 - 1 + 2^64 * { [2^894 pi] + 129093 }.
const MODP1024_P: &str = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74\
020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437\
4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED\
EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF";

/// RFC 3526 §2 (group 5): 2^1536 - 2^1472 - 1 + 2^64 * { [2^1406 pi] + 741804 }.
const MODP1536_P: &str = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74\
020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437\
4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED\
EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05\
98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB\
9ED529077096966D670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF";

/// The transform ID of group 5 (IANA "Transform Type 4" registry).
const DH_MODP1536: u16 = 5;

/// RFC 3526 §3 (group 14): 2^2048 - 2^1984 - 1 + 2^64 * { [2^1918 pi] + 124476 }.
const MODP2048_P: &str = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74\
020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437\
4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED\
EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05\
98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB\
9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B\
E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718\
3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF";

/// The peer's public value was unusable (wrong length, not on the curve, a small-order
/// point, or outside 2..p-2 for MODP groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPublicValue(pub DhGroup);

impl fmt::Display for BadPublicValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} public value", self.0)
    }
}

impl std::error::Error for BadPublicValue {}

impl DhGroup {
    pub const fn id(self) -> u16 {
        match self {
            Self::Modp1024 => t::DH_MODP1024,
            Self::Modp1536 => DH_MODP1536,
            Self::Modp2048 => t::DH_MODP2048,
            Self::Ecp256 => t::DH_ECP256,
            Self::Ecp384 => t::DH_ECP384,
            Self::Curve25519 => t::DH_CURVE25519,
        }
    }

    pub const fn from_id(id: u16) -> Option<Self> {
        match id {
            t::DH_MODP1024 => Some(Self::Modp1024),
            DH_MODP1536 => Some(Self::Modp1536),
            t::DH_MODP2048 => Some(Self::Modp2048),
            t::DH_ECP256 => Some(Self::Ecp256),
            t::DH_ECP384 => Some(Self::Ecp384),
            t::DH_CURVE25519 => Some(Self::Curve25519),
            _ => None,
        }
    }

    /// Length of the public value in a KE payload.
    pub const fn public_len(self) -> usize {
        match self {
            Self::Modp1024 => 128,
            Self::Modp1536 => 192,
            Self::Modp2048 => 256,
            Self::Ecp256 => 64,
            Self::Ecp384 => 96,
            Self::Curve25519 => 32,
        }
    }

    /// strongSwan's keyword for the group.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Modp1024 => "modp1024",
            Self::Modp1536 => "modp1536",
            Self::Modp2048 => "modp2048",
            Self::Ecp256 => "ecp256",
            Self::Ecp384 => "ecp384",
            Self::Curve25519 => "curve25519",
        }
    }

    /// Generates an ephemeral key pair.
    pub fn generate(self, rng: &mut dyn CryptoRngCore) -> KeyPair {
        let mut rng = rng;
        let secret = match self {
            Self::Modp1024 | Self::Modp1536 | Self::Modp2048 => {
                // A 384-bit exponent exceeds twice the ~100-bit strength of these groups.
                let mut x = Zeroizing::new([0u8; 48]);
                rng.fill_bytes(&mut x[..]);
                Secret::Modp(Zeroizing::new(x.to_vec()))
            }
            Self::Ecp256 => Secret::Ecp256(p256::NonZeroScalar::random(&mut rng)),
            Self::Ecp384 => Secret::Ecp384(p384::NonZeroScalar::random(&mut rng)),
            Self::Curve25519 => {
                Secret::X25519(x25519_dalek::StaticSecret::random_from_rng(&mut rng))
            }
        };
        let public = match &secret {
            Secret::Modp(x) => {
                let p = self.modulus();
                let y = BigUint::from(2u8).modpow(&BigUint::from_bytes_be(x), &p);
                left_pad(&y.to_bytes_be(), self.public_len())
            }
            Secret::Ecp256(s) => {
                let point = p256::PublicKey::from_secret_scalar(s);
                untag(
                    p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&point, false)
                        .as_bytes(),
                )
            }
            Secret::Ecp384(s) => {
                let point = p384::PublicKey::from_secret_scalar(s);
                untag(
                    p384::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&point, false)
                        .as_bytes(),
                )
            }
            Secret::X25519(s) => x25519_dalek::PublicKey::from(s).as_bytes().to_vec(),
        };
        KeyPair {
            group: self,
            secret,
            public,
        }
    }

    fn modulus(self) -> BigUint {
        let hex = match self {
            Self::Modp1024 => MODP1024_P,
            Self::Modp1536 => MODP1536_P,
            _ => MODP2048_P,
        };
        // The constants are valid hex; a failure here is caught by the unit tests.
        BigUint::parse_bytes(hex.as_bytes(), 16).unwrap_or_default()
    }
}

impl fmt::Display for DhGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

enum Secret {
    Modp(Zeroizing<Vec<u8>>),
    Ecp256(p256::NonZeroScalar),
    Ecp384(p384::NonZeroScalar),
    X25519(x25519_dalek::StaticSecret),
}

/// An ephemeral DH key pair; the secret is wiped on drop by the underlying types.
pub struct KeyPair {
    group: DhGroup,
    secret: Secret,
    public: Vec<u8>,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    pub const fn group(&self) -> DhGroup {
        self.group
    }

    /// The public value as it goes in a KE payload.
    pub fn public(&self) -> &[u8] {
        &self.public
    }

    /// The shared secret g^ir (for ECP groups the x coordinate only, RFC 5903 §7).
    pub fn agree(&self, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, BadPublicValue> {
        let bad = BadPublicValue(self.group);
        if peer.len() != self.group.public_len() {
            return Err(bad);
        }
        let shared = match &self.secret {
            Secret::Modp(x) => {
                let p = self.group.modulus();
                let y = BigUint::from_bytes_be(peer);
                // RFC 6989 §2.1: reject 0, 1, p-1 and anything >= p.
                let one = BigUint::from(1u8);
                if y <= one || y >= &p - &one {
                    return Err(bad);
                }
                let z = y.modpow(&BigUint::from_bytes_be(x), &p);
                left_pad(&z.to_bytes_be(), self.group.public_len())
            }
            Secret::Ecp256(s) => {
                let point = p256::PublicKey::from_sec1_bytes(&tag(peer)).map_err(|_| bad)?;
                let z = p256::ecdh::diffie_hellman(s, point.as_affine());
                z.raw_secret_bytes().to_vec()
            }
            Secret::Ecp384(s) => {
                let point = p384::PublicKey::from_sec1_bytes(&tag(peer)).map_err(|_| bad)?;
                let z = p384::ecdh::diffie_hellman(s, point.as_affine());
                z.raw_secret_bytes().to_vec()
            }
            Secret::X25519(s) => {
                let mut b = [0u8; 32];
                b.copy_from_slice(peer);
                let z = s.diffie_hellman(&x25519_dalek::PublicKey::from(b));
                // RFC 8031 §2.3: an all-zero result means a small-order point.
                if !z.was_contributory() {
                    return Err(bad);
                }
                z.as_bytes().to_vec()
            }
        };
        Ok(Zeroizing::new(shared))
    }
}

fn left_pad(bytes: &[u8], len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len.saturating_sub(bytes.len())];
    v.extend_from_slice(bytes);
    v
}

/// SEC1 uncompressed point without its 0x04 tag: the x || y form RFC 5903 puts on the wire.
fn untag(sec1: &[u8]) -> Vec<u8> {
    sec1.get(1..).unwrap_or_default().to_vec()
}

fn tag(xy: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(xy.len() + 1);
    v.push(0x04);
    v.extend_from_slice(xy);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const ALL: [DhGroup; 6] = [
        DhGroup::Modp1024,
        DhGroup::Modp1536,
        DhGroup::Modp2048,
        DhGroup::Ecp256,
        DhGroup::Ecp384,
        DhGroup::Curve25519,
    ];

    #[test]
    fn agreement_for_every_group() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        for g in ALL {
            let a = g.generate(&mut rng);
            let b = g.generate(&mut rng);
            assert_eq!(a.public().len(), g.public_len(), "{g}");
            assert_ne!(a.public(), b.public());
            let za = a.agree(b.public()).unwrap();
            let zb = b.agree(a.public()).unwrap();
            assert_eq!(*za, *zb, "{g}");
            assert_eq!(DhGroup::from_id(g.id()), Some(g));
            // Shared secret lengths: MODP = |p|, ECP = x coordinate, X25519 = 32.
            let expect = match g {
                DhGroup::Ecp256 => 32,
                DhGroup::Ecp384 => 48,
                _ => g.public_len(),
            };
            assert_eq!(za.len(), expect);
        }
    }

    #[test]
    fn rejects_bad_public_values() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        for g in ALL {
            let a = g.generate(&mut rng);
            let n = g.public_len();
            assert!(a.agree(&vec![1u8; n - 1]).is_err(), "{g} short");
            assert!(a.agree(&vec![1u8; n + 1]).is_err(), "{g} long");
            assert!(a.agree(&vec![0u8; n]).is_err(), "{g} zero");
        }
        let a = DhGroup::Modp2048.generate(&mut rng);
        let p = DhGroup::Modp2048.modulus();
        let pm1 = left_pad(&(&p - 1u8).to_bytes_be(), 256);
        assert!(a.agree(&pm1).is_err());
        assert!(a.agree(&left_pad(&[1], 256)).is_err());
        assert!(a.agree(&[0xff; 256]).is_err());
        // A point off the curve.
        let e = DhGroup::Ecp256.generate(&mut rng);
        let mut off = e.public().to_vec();
        off[63] ^= 1;
        assert!(e.agree(&off).is_err());
    }

    /// Rebuilds the MODP primes from their RFC definition (pi computed with Machin's formula)
    /// so that the hex constants are checked against something other than themselves.
    #[test]
    fn modp_primes_match_their_definition() {
        fn arctan_inv(x: u32, one: &BigUint) -> (BigUint, BigUint) {
            // Returns (positive terms, negative terms) of arctan(1/x) * one.
            let x2 = BigUint::from(x) * x;
            let mut term = one / x;
            let (mut pos, mut neg) = (BigUint::default(), BigUint::default());
            let mut n = 1u32;
            let mut add = true;
            while term > BigUint::default() {
                let v = &term / n;
                if add {
                    pos += v;
                } else {
                    neg += v;
                }
                term /= &x2;
                n += 2;
                add = !add;
            }
            (pos, neg)
        }
        fn pi_scaled(bits: u64) -> BigUint {
            let one = BigUint::from(1u8) << (bits + 64);
            let (p5, n5) = arctan_inv(5, &one);
            let (p239, n239) = arctan_inv(239, &one);
            let pi = (p5 * 16u8 + n239 * 4u8) - (n5 * 16u8 + p239 * 4u8);
            pi >> 64
        }
        let one = BigUint::from(1u8);
        let build = |total: u64, low: u64, add: u32| {
            (&one << total) - (&one << (total - 64)) - &one
                + (&one << 64) * (pi_scaled(low) + BigUint::from(add))
        };
        assert_eq!(DhGroup::Modp1024.modulus(), build(1024, 894, 129_093));
        assert_eq!(DhGroup::Modp1536.modulus(), build(1536, 1406, 741_804));
        assert_eq!(DhGroup::Modp2048.modulus(), build(2048, 1918, 124_476));
    }
}
