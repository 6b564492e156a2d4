//! Encryption of ISAKMP message bodies (RFC 2408 §3.1 E flag, RFC 2409 Appendix B): CBC
//! with an IV carried over from message to message, never sent on the wire.
//!
//! IKEv1 encrypts without a MAC; a body is authentic only once the HASH inside it verifies.
//! So [`open`] does not advance the caller's IV: it returns the next one, and the caller keeps
//! it only after the hash checked out, or a forged message would break the chain.

use crate::crypto::{DecryptError, Encr, cbc_decrypt, cbc_encrypt};

/// The cipher block of a phase 1 cipher, which is also its IV length: 16 for AES, 8 for 3DES.
pub const fn block(encr: Encr) -> usize {
    encr.block_len()
}

/// Zero-pads `plain` to whole blocks and encrypts it. The last ciphertext block is the IV of
/// the next message of the exchange.
pub fn seal(encr: Encr, key: &[u8], iv: &[u8], plain: &[u8]) -> Vec<u8> {
    let b = block(encr);
    let mut buf = plain.to_vec();
    buf.resize(plain.len().div_ceil(b) * b, 0);
    cbc_encrypt(encr, key, iv, &mut buf);
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
    let b = block(encr);
    if encr.is_aead() || body.is_empty() || body.len() % b != 0 || iv.len() != b {
        return Err(DecryptError);
    }
    let next = body[body.len() - b..].to_vec();
    let mut buf = body.to_vec();
    cbc_decrypt(encr, key, iv, &mut buf)?;
    Ok((buf, next))
}

/// The IV after a message we sealed with `encr`.
pub fn last_block(encr: Encr, sealed: &[u8]) -> Vec<u8> {
    sealed[sealed.len().saturating_sub(block(encr))..].to_vec()
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
            assert_eq!(ct.len() % 16, 0);
            let (pt, next) = open(Encr::AesCbc(128), &key, &iv, &ct).unwrap();
            assert_eq!(&pt[..len], &plain[..]);
            assert!(pt[len..].iter().all(|&b| b == 0));
            assert_eq!(next, last_block(Encr::AesCbc(128), &ct));
        }
        assert!(open(Encr::AesCbc(128), &key, &iv, &[0; 15]).is_err());
        assert!(open(Encr::AesCbc(128), &key, &iv, &[]).is_err());
        assert!(open(Encr::AesGcm16(128), &key, &iv, &[0; 16]).is_err());
    }
}
