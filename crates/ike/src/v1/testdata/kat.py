#!/usr/bin/env python3
"""Known answers for the IKEv1 key schedule (RFC 2409 section 5, 5.5, Appendix B; RFC 3947).

Computed with the `cryptography` package and Python's own modular arithmetic, from the RFC
formulas, independently of the Rust implementation. Run it to regenerate the values that
keys_tests.rs checks:  python3 kat.py
"""
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

P1024 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF", 16)


def prf(alg, key, *parts):
    h = hmac.HMAC(key, alg())
    for p in parts:
        h.update(p)
    return h.finalize()


def digest(alg, *parts):
    h = hashes.Hash(alg())
    for p in parts:
        h.update(p)
    return h.finalize()


def out(name, b):
    print(f'const {name}: &str = "{b.hex()}";')


PSK = b"correct horse battery staple"
NI = bytes(range(32))
NR = bytes(range(32, 64))
CKY_I = bytes.fromhex("0102030405060708")
CKY_R = bytes.fromhex("1112131415161718")
# Diffie-Hellman in group 2 with fixed exponents.
XI, XR = 0x1234567890ABCDEF << 100, 0xFEDCBA0987654321 << 90
g_xi = pow(2, XI, P1024).to_bytes(128, "big")
g_xr = pow(2, XR, P1024).to_bytes(128, "big")
g_xy = pow(int.from_bytes(g_xr, "big"), XI, P1024).to_bytes(128, "big")
assert g_xy == pow(int.from_bytes(g_xi, "big"), XR, P1024).to_bytes(128, "big")
SAI_B = bytes.fromhex("00000001000000010000002c01010001000000240101000080010007800e0080"
                      "800200028003000180040002800b0001800c7080")
IDII_B = bytes([2, 0, 0, 0]) + b"a.example"
IDIR_B = bytes([2, 0, 0, 0]) + b"b.example"
out("G_XI", g_xi)
out("G_XR", g_xr)
out("G_XY", g_xy)

for label, alg, keylen in (("SHA1", hashes.SHA1, 32), ("SHA256", hashes.SHA256, 32)):
    skeyid = prf(alg, PSK, NI, NR)
    d = prf(alg, skeyid, g_xy, CKY_I, CKY_R, b"\x00")
    a = prf(alg, skeyid, d, g_xy, CKY_I, CKY_R, b"\x01")
    e = prf(alg, skeyid, a, g_xy, CKY_I, CKY_R, b"\x02")
    # Appendix B: stretch SKEYID_e when the cipher key is longer.
    if len(e) >= keylen:
        key = e[:keylen]
    else:
        k = prf(alg, e, b"\x00")
        key = k
        while len(key) < keylen:
            k = prf(alg, e, k)
            key += k
        key = key[:keylen]
    hash_i = prf(alg, skeyid, g_xi, g_xr, CKY_I, CKY_R, SAI_B, IDII_B)
    hash_r = prf(alg, skeyid, g_xr, g_xi, CKY_R, CKY_I, SAI_B, IDIR_B)
    iv1 = digest(alg, g_xi, g_xr)[:16]
    # Message 5: ID and HASH_I payloads, zero padded to the block, AES-256-CBC.
    plain = bytes([8, 0, 0, 4 + len(IDII_B)]) + IDII_B
    plain += bytes([0, 0, 0, 4 + len(hash_i)]) + hash_i
    plain += bytes((16 - len(plain) % 16) % 16)
    enc = Cipher(algorithms.AES(key), modes.CBC(iv1)).encryptor()
    ct5 = enc.update(plain) + enc.finalize()
    # Quick mode IV from the last block of the final phase 1 message and M-ID 0x01020304.
    iv_qm = digest(alg, ct5[-16:], bytes.fromhex("01020304"))[:16]
    # KEYMAT for an ESP SPI 0xc0ffee01, AES-256 + HMAC key of the hash length, without PFS.
    spi = bytes.fromhex("c0ffee01")
    need = 32 + len(e)
    km = b""
    k = b""
    while len(km) < need:
        k = prf(alg, d, k, b"\x03", spi, NI, NR)
        km += k
    km = km[:need]
    # NAT-D of 198.51.100.1:500.
    natd = digest(alg, CKY_I, CKY_R, bytes([198, 51, 100, 1]), (500).to_bytes(2, "big"))
    out(f"{label}_SKEYID", skeyid)
    out(f"{label}_SKEYID_D", d)
    out(f"{label}_SKEYID_A", a)
    out(f"{label}_SKEYID_E", e)
    out(f"{label}_ENC_KEY", key)
    out(f"{label}_HASH_I", hash_i)
    out(f"{label}_HASH_R", hash_r)
    out(f"{label}_IV1", iv1)
    out(f"{label}_MSG5_CT", ct5)
    out(f"{label}_IV_QM", iv_qm)
    out(f"{label}_KEYMAT", km)
    out(f"{label}_NAT_D", natd)
