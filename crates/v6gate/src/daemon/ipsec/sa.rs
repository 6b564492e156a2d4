//! A negotiated CHILD SA as the packet thread's ESP SAs: the suite IKE agreed on mapped to
//! the dataplane's, both directions keyed as IKE derived them.

use std::fmt;

use dataplane::esp::{EspError, InboundSa, Integrity, OutboundSa, Suite};
use ike::crypto::{Encr, Integ};

/// Why a CHILD SA could not become ESP SAs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaError {
    /// IKE agreed on a suite the dataplane does not implement.
    Suite { encr: Encr, integ: Option<Integ> },
    /// The keys did not fit the suite.
    Keys {
        direction: &'static str,
        spi: u32,
        error: EspError,
    },
}

impl fmt::Display for SaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Suite { encr, integ } => write!(
                f,
                "ESP suite {encr:?} with {integ:?} is not one the dataplane implements"
            ),
            Self::Keys {
                direction,
                spi,
                error,
            } => write!(f, "{direction} SA {spi:08x}: {error}"),
        }
    }
}

impl std::error::Error for SaError {}

/// The dataplane's suite for the one IKE negotiated.
pub fn esp_suite(suite: &ike::proposal::ChildSuite) -> Result<Suite, SaError> {
    match (suite.encr, suite.integ) {
        (Encr::AesGcm16(key_bits), None) => Ok(Suite::AesGcm16 { key_bits }),
        (Encr::AesCbc(key_bits), Some(Integ::HmacSha1_96)) => Ok(Suite::AesCbc {
            key_bits,
            integrity: Integrity::HmacSha1_96,
        }),
        (Encr::AesCbc(key_bits), Some(Integ::HmacSha256_128)) => Ok(Suite::AesCbc {
            key_bits,
            integrity: Integrity::HmacSha256_128,
        }),
        (Encr::TripleDesCbc, Some(Integ::HmacSha1_96)) => Ok(Suite::TripleDesCbc {
            integrity: Integrity::HmacSha1_96,
        }),
        (Encr::TripleDesCbc, Some(Integ::HmacSha256_128)) => Ok(Suite::TripleDesCbc {
            integrity: Integrity::HmacSha256_128,
        }),
        (encr, integ) => Err(SaError::Suite { encr, integ }),
    }
}

/// Both directions of a CHILD SA, keyed as IKE derived them.
pub fn sa_pair(child: &ike::ChildSaInfo) -> Result<(InboundSa, OutboundSa), SaError> {
    let suite = esp_suite(&child.suite)?;
    let esn = child.suite.esn;
    let inbound = InboundSa::new(child.spi_in, suite, &child.encr_in, &child.integ_in, esn)
        .map_err(|error| SaError::Keys {
            direction: "inbound",
            spi: child.spi_in,
            error,
        })?;
    let outbound = OutboundSa::new(child.spi_out, suite, &child.encr_out, &child.integ_out, esn)
        .map_err(|error| SaError::Keys {
            direction: "outbound",
            spi: child.spi_out,
            error,
        })?;
    Ok((inbound, outbound))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ike::proposal::ChildSuite;

    fn suite(encr: Encr, integ: Option<Integ>) -> ChildSuite {
        ChildSuite {
            encr,
            integ,
            dh: None,
            esn: false,
        }
    }

    /// One end's view of a CHILD SA; `mirror` gives the peer's.
    fn child(suite: ChildSuite) -> ike::ChildSaInfo {
        let key = |seed: u8, len: usize| (0..len).map(|i| seed ^ i as u8).collect::<Vec<u8>>();
        let encr = suite.encr.key_len();
        let integ = suite.integ.map_or(0, Integ::key_len);
        ike::ChildSaInfo {
            spi_in: 0xc000_0001,
            spi_out: 0xc000_0002,
            suite,
            encr_in: key(0x11, encr),
            integ_in: key(0x22, integ),
            encr_out: key(0x33, encr),
            integ_out: key(0x44, integ),
            local_ts: Vec::new(),
            remote_ts: Vec::new(),
            udp_encap: false,
            local: "[2001:db8:0:1::1]:500".parse().unwrap(),
            remote: "[2001:db8:0:2::1]:500".parse().unwrap(),
            replaces: None,
        }
    }

    fn mirror(c: &ike::ChildSaInfo) -> ike::ChildSaInfo {
        let mut m = c.clone();
        std::mem::swap(&mut m.spi_in, &mut m.spi_out);
        std::mem::swap(&mut m.encr_in, &mut m.encr_out);
        std::mem::swap(&mut m.integ_in, &mut m.integ_out);
        m
    }

    #[test]
    fn ike_suites_map_to_the_dataplane_ones() {
        assert_eq!(
            esp_suite(&suite(Encr::AesGcm16(128), None)),
            Ok(Suite::AesGcm16 { key_bits: 128 })
        );
        assert_eq!(
            esp_suite(&suite(Encr::AesCbc(128), Some(Integ::HmacSha1_96))),
            Ok(Suite::AesCbc {
                key_bits: 128,
                integrity: Integrity::HmacSha1_96
            })
        );
        assert_eq!(
            esp_suite(&suite(Encr::AesCbc(256), Some(Integ::HmacSha256_128))),
            Ok(Suite::AesCbc {
                key_bits: 256,
                integrity: Integrity::HmacSha256_128
            })
        );
        assert_eq!(
            esp_suite(&suite(Encr::TripleDesCbc, Some(Integ::HmacSha1_96))),
            Ok(Suite::TripleDesCbc {
                integrity: Integrity::HmacSha1_96
            })
        );
        assert!(esp_suite(&suite(Encr::AesCbc(128), None)).is_err());
        assert!(esp_suite(&suite(Encr::AesCbc(128), Some(Integ::HmacSha384_192))).is_err());
    }

    #[test]
    fn what_one_end_seals_the_other_opens() {
        for s in [
            suite(Encr::AesGcm16(128), None),
            suite(Encr::AesCbc(128), Some(Integ::HmacSha1_96)),
        ] {
            let ours = child(s);
            let (_, mut outbound) = sa_pair(&ours).unwrap();
            let (mut inbound, _) = sa_pair(&mirror(&ours)).unwrap();
            assert_eq!(outbound.spi(), inbound.spi());
            let payload: Vec<u8> = (0..100u8).collect();
            let mut sealed = vec![0xa5; 256];
            let n = outbound.seal(4, &payload, &mut sealed).unwrap();
            let mut out = vec![0x5a; 256];
            let opened = inbound.open(&sealed[..n], &mut out).unwrap();
            assert_eq!((opened.next_header, opened.payload), (4, &payload[..]));
            // Keyed the same way round, the keys do not match: authentication fails.
            let (mut wrong, _) = sa_pair(&ours).unwrap();
            let mut sealed = vec![0; 256];
            let n = outbound.seal(4, &payload, &mut sealed).unwrap();
            sealed[..4].copy_from_slice(&ours.spi_in.to_be_bytes());
            assert!(wrong.open(&sealed[..n], &mut out).is_err());
        }
    }

    #[test]
    fn short_keys_are_refused_with_the_spi() {
        let mut c = child(suite(Encr::AesGcm16(128), None));
        c.encr_out.truncate(5);
        let e = sa_pair(&c).unwrap_err().to_string();
        assert!(e.contains("outbound SA c0000002"), "{e}");
    }
}
