//! Encryption of ISAKMP message bodies (RFC 2408 §3.1 E flag, RFC 2409 Appendix B): CBC
//! with an IV carried over from message to message, never sent on the wire.
//!
//! IKEv1 encrypts without a MAC; a body is authentic only once the HASH inside it verifies.
//! So [`open`] does not advance the caller's IV: it returns the next one, and the caller keeps
//! it only after the hash checked out, or a forged message would break the chain.

use crate::crypto::{DecryptError, Encr, cbc_decrypt, cbc_encrypt};

/// The cipher block, which is also the IV length.
pub const BLOCK: usize = 16;

/// Zero-pads `plain` to whole blocks and encrypts it. The last ciphertext block is the IV of
/// the next message of the exchange.
pub fn seal(encr: Encr, key: &[u8], iv: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut buf = plain.to_vec();
    buf.resize(plain.len().div_ceil(BLOCK) * BLOCK, 0);
    if let Encr::AesCbc(bits) = encr {
        cbc_encrypt(bits, key, iv, &mut buf);
    }
    buf
}

/// Decrypts a body; returns the plaintext (padding included: the payload chain says where it
/// ends) and the IV that follows this message.
pub fn open(
    encr: Encr,
    key: &[u8],
    iv: &[u8],
    body: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), DecryptError> {
    let Encr::AesCbc(bits) = encr else {
        return Err(DecryptError);
    };
    if body.is_empty() || body.len() % BLOCK != 0 || iv.len() != BLOCK {
        return Err(DecryptError);
    }
    let next = body[body.len() - BLOCK..].to_vec();
    let mut buf = body.to_vec();
    cbc_decrypt(bits, key, iv, &mut buf)?;
    Ok((buf, next))
}

/// The IV after a message we sealed.
pub fn last_block(sealed: &[u8]) -> Vec<u8> {
    sealed[sealed.len().saturating_sub(BLOCK)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_iv_chain() {
        let key = [7u8; 16];
        let iv = [1u8; 16];
        for len in [1usize, 15, 16, 17, 64] {
            let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let ct = seal(Encr::AesCbc(128), &key, &iv, &plain);
            assert_eq!(ct.len() % BLOCK, 0);
            let (pt, next) = open(Encr::AesCbc(128), &key, &iv, &ct).unwrap();
            assert_eq!(&pt[..len], &plain[..]);
            assert!(pt[len..].iter().all(|&b| b == 0));
            assert_eq!(next, last_block(&ct));
        }
        assert!(open(Encr::AesCbc(128), &key, &iv, &[0; 15]).is_err());
        assert!(open(Encr::AesCbc(128), &key, &iv, &[]).is_err());
        assert!(open(Encr::AesGcm16(128), &key, &iv, &[0; 16]).is_err());
    }
}
