//! Known answers for the IKEv1 key schedule from testdata/kat.py, which computes them with
//! Python's `cryptography` package straight from the RFC 2409 formulas.

use super::*;
use crate::crypto::{Encr, cbc_encrypt};

const G_XI: &str = "c2cf81a83ec55a11cf87a3e7ce77286158af83b5be380f0950635811d19d4052033bd5c90eca8bbe4acb8627c654ceb501f32cf4b0870d1fa74c159db8a52549c512d2899185175599397c7f907030fce1d399edbbc6e1affc38a4a3b3ea9b75deac2b90851067700a57622cde2084d20ce5effa12372d5a00d1925e2b23f547";
const G_XR: &str = "5fa5e82d4aad6f0827401c5fa25115533353bf436547b0732d1f728eca1c2f13574329474d979b61b0e1752a81c9a56ebd5400b31215421ff3d2a17c69b572b0a15d3ddfc46432a253e77d0dcf378c75fff0241f809026badb1a10f1b33cf85c441a5d0f84f450a613eccbdecf31e777f0236ecfdfdaa4ebdd4edfd5aac4533c";
const G_XY: &str = "440ff7f190227cc29c1952c52ac48baec193ade953022632f94adee3d5644e209a4e13294fd333f209125885b66bd5be0f2f4b4aecc9d7adef2b19bda9a658bb72a14b880dffed992c51d23ed648690842109b2f766b0bad0723c9c23e4254f5c146857e26b56f3248cc8fbff4cd13bfc57459576a1127f6f6a5a67ea7f19880";
const SHA1_SKEYID: &str = "e4fe5e06ab1693a875033259c8f9530c89bf1deb";
const SHA1_SKEYID_D: &str = "be4506df1366245c1e98d4e9dbfdf62f0bf6f355";
const SHA1_SKEYID_A: &str = "b0aafe0fc890ee10ab50f515570d263f87642aa3";
const SHA1_SKEYID_E: &str = "02b70ae498201d6e28728ed3010e2fd997ca195e";
const SHA1_ENC_KEY: &str = "9de0f10a02ed8c3cd10f44e437121fc0193ce7d659ee763b31a73ed6f5c11743";
const SHA1_HASH_I: &str = "1b2c6fd669b39187fab1343cec09e6fed4fffffd";
const SHA1_HASH_R: &str = "00a988acd5c2a4b316fc0902911411762e94ebe4";
const SHA1_IV1: &str = "caf7fd88595210c34ffddf1d2fb8ee4a";
const SHA1_MSG5_CT: &str = "1923d38f46e8f91dca5007478b1a60aec1ad14e71098e26613869599b11133cd738424e61d301a9d28d2d18bfe95ea8a";
const SHA1_IV_QM: &str = "d6d22a06428604fdf0963d3e652223fb";
const SHA1_KEYMAT: &str = "fe4ce3063920962aaeb2b7a32936b2b14fbfc99b92d9c8081492008088f873931afd4c856cc0a44be2248e5352e4b3e9ba5b6173";
const SHA1_NAT_D: &str = "8429908900990775f2037b616b593bc8a8495259";
const SHA256_SKEYID: &str = "98d8afb558dd9a21042d47b1bae629db1b33ab1e7fb5b91caaadf33d2efd11f3";
const SHA256_SKEYID_D: &str = "6834bc59e63105d459613b235816ee10b11a5196bce81fc7c01e2050989715de";
const SHA256_SKEYID_A: &str = "ae4caba765c7107893bf6b96f6e8198d36322e56204501c1590c82152bce6a38";
const SHA256_SKEYID_E: &str = "dc0590e5bbb8c22b1c2ed25ff96400ea57b10d2386ecbef86a91db973c34f92d";
const SHA256_ENC_KEY: &str = "dc0590e5bbb8c22b1c2ed25ff96400ea57b10d2386ecbef86a91db973c34f92d";
const SHA256_HASH_I: &str = "c3bc20528113890624429906cbe0fcd58845ab8bba71e10d06a26baf28c582d9";
const SHA256_HASH_R: &str = "34eb809384aeb510ff6b5643943c669a5bfb1f02907e2e69a05707d7d487d306";
const SHA256_IV1: &str = "051ad066b14c8da7999f3fac88cf116c";
const SHA256_MSG5_CT: &str = "e2ecf9185628f3ba9d4f81a3f4b78c20538a0c2c5944ad04bf4043f01239339612f2e4e6630c2a0817c1eaa2123cb3b00e0c73fc435d907cf53020b8be639f7c";
const SHA256_IV_QM: &str = "03cbfe722289e11d0266e4f9dc527874";
const SHA256_KEYMAT: &str = "0e78948e4597615bb0fce8a4aefe77ecaf0222ff0b0796cfcf615627583f89efab9ff0cd7c7014be6e587e3084ef40ef9b69ff3e020b8e5b3819d2c8bdd25e77";
const SHA256_NAT_D: &str = "e7b81d2b4feb8685a7c1fe07f89947587c5d2f96fda000fcb8ffc41a774e9666";

fn h(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const PSK: &[u8] = b"correct horse battery staple";
const COOKIES: Cookies = Cookies {
    i: 0x0102_0304_0506_0708,
    r: 0x1112_1314_1516_1718,
};
const SAI_B: &str = "00000001000000010000002c01010001000000240101000080010007800e0080800200028003000180040002800b0001800c7080";

struct Case {
    hash: HashAlg,
    skeyid: &'static str,
    d: &'static str,
    a: &'static str,
    e: &'static str,
    enc_key: &'static str,
    hash_i: &'static str,
    hash_r: &'static str,
    iv1: &'static str,
    msg5: &'static str,
    iv_qm: &'static str,
    keymat: &'static str,
    nat_d: &'static str,
}

fn check(c: &Case) {
    let ni: Vec<u8> = (0..32).collect();
    let nr: Vec<u8> = (32..64).collect();
    let (g_xi, g_xr, g_xy) = (h(G_XI), h(G_XR), h(G_XY));
    let k = Phase1Keys::derive(c.hash, PSK, &ni, &nr, &g_xy, COOKIES, 32);
    assert_eq!(*k.skeyid, h(c.skeyid));
    assert_eq!(*k.skeyid_d, h(c.d));
    assert_eq!(*k.skeyid_a, h(c.a));
    assert_eq!(*k.skeyid_e, h(c.e));
    assert_eq!(*k.enc_key, h(c.enc_key));
    let sai_b = h(SAI_B);
    let idii = [&[2u8, 0, 0, 0][..], b"a.example"].concat();
    let idir = [&[2u8, 0, 0, 0][..], b"b.example"].concat();
    let t = Transcript {
        g_xi: &g_xi,
        g_xr: &g_xr,
        cookies: COOKIES,
        sai_b: &sai_b,
    };
    let hash_i = k.auth_hash(c.hash, true, &t, &idii);
    assert_eq!(hash_i, h(c.hash_i));
    assert_eq!(k.auth_hash(c.hash, false, &t, &idir), h(c.hash_r));
    let iv1 = phase1_iv(c.hash, &g_xi, &g_xr, 16);
    assert_eq!(iv1, h(c.iv1));
    // Message 5 sealed the way the core seals it: ID, HASH_I, zero padding, CBC.
    let mut plain = vec![8, 0, 0, 4 + idii.len() as u8];
    plain.extend_from_slice(&idii);
    plain.extend_from_slice(&[0, 0, 0, 4 + hash_i.len() as u8]);
    plain.extend_from_slice(&hash_i);
    let sealed = super::super::cipher::seal(Encr::AesCbc(256), &k.enc_key, &iv1, &plain);
    assert_eq!(sealed, h(c.msg5));
    let mut direct = plain.clone();
    direct.resize(plain.len().div_ceil(16) * 16, 0);
    cbc_encrypt(Encr::AesCbc(256), &k.enc_key, &iv1, &mut direct);
    assert_eq!(direct, sealed);
    assert_eq!(
        phase2_iv(c.hash, &sealed[sealed.len() - 16..], 0x0102_0304, 16),
        h(c.iv_qm)
    );
    let need = 32 + c.hash.prf().output_len();
    let seed = KeymatSeed {
        pfs: None,
        protocol: 3,
        ni: &ni,
        nr: &nr,
    };
    let km = keymat(c.hash.prf(), &k.skeyid_d, &seed, 0xc0ff_ee01, need);
    assert_eq!(*km, h(c.keymat));
    assert_eq!(
        nat_d(c.hash, COOKIES, "198.51.100.1:500".parse().unwrap()),
        h(c.nat_d)
    );
}

#[test]
fn sha1_schedule_matches_independent_computation() {
    // SHA-1 gives 20 bytes, so the 32-byte AES-256 key needs Appendix B's stretching.
    check(&Case {
        hash: HashAlg::Sha1,
        skeyid: SHA1_SKEYID,
        d: SHA1_SKEYID_D,
        a: SHA1_SKEYID_A,
        e: SHA1_SKEYID_E,
        enc_key: SHA1_ENC_KEY,
        hash_i: SHA1_HASH_I,
        hash_r: SHA1_HASH_R,
        iv1: SHA1_IV1,
        msg5: SHA1_MSG5_CT,
        iv_qm: SHA1_IV_QM,
        keymat: SHA1_KEYMAT,
        nat_d: SHA1_NAT_D,
    });
}

#[test]
fn sha256_schedule_matches_independent_computation() {
    check(&Case {
        hash: HashAlg::Sha256,
        skeyid: SHA256_SKEYID,
        d: SHA256_SKEYID_D,
        a: SHA256_SKEYID_A,
        e: SHA256_SKEYID_E,
        enc_key: SHA256_ENC_KEY,
        hash_i: SHA256_HASH_I,
        hash_r: SHA256_HASH_R,
        iv1: SHA256_IV1,
        msg5: SHA256_MSG5_CT,
        iv_qm: SHA256_IV_QM,
        keymat: SHA256_KEYMAT,
        nat_d: SHA256_NAT_D,
    });
}

#[test]
fn expansion_is_a_prefix_chain() {
    let a = expand(Prf::HmacSha1, b"k", 20);
    let b = expand(Prf::HmacSha1, b"k", 45);
    assert_eq!(a, b[..20]);
    assert_eq!(b.len(), 45);
    assert_eq!(b[20..40], Prf::HmacSha1.compute(b"k", &[&a])[..]);
}
