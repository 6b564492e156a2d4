//! What an ipsec tunnel negotiates (`[tunnel.ike]`), and how much room ESP leaves for inner
//! packets.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use ike::crypto::{Encr, Integ};
use ike::proposal::{EspProposal, IkeProposal};
use ike::{DpdAction, Identity};

/// UDP header in front of ESP when it is encapsulated for NAT traversal (RFC 3948).
pub const UDP_HEADER_LEN: u16 = 8;
/// ESP header: SPI and sequence number (RFC 4303 §2).
pub const ESP_HEADER_LEN: u16 = 8;
/// ESP trailer: pad length and next header (RFC 4303 §2.4).
pub const ESP_TRAILER_LEN: u16 = 2;

/// `[tunnel.ike]` of a `mode = "ipsec"` tunnel, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpsecConfig {
    pub psk: Psk,
    /// `None` = our outer address, sent as an IP address identity.
    pub local_id: Option<Identity>,
    /// `None` = the peer must prove the outer address it talks from.
    pub remote_id: Option<Identity>,
    /// `[[tunnel.ike.remote_psk]]`: peers that prove one of these identities use its key
    /// instead of `psk` (and are accepted besides `remote_id`). IKEv1 can only use address
    /// identities here: main mode needs the key before the peer's ID arrives.
    pub remote_psks: Vec<(Identity, Psk)>,
    /// IKE SA proposals in preference order; never empty.
    pub proposals: Vec<IkeProposal>,
    /// ESP proposals in preference order; never empty, and every suite in them is one the
    /// dataplane implements.
    pub esp_proposals: Vec<EspProposal>,
    /// Some proposal allows an algorithm kept only for old peers (SHA-1, MODP-1024): the
    /// daemon logs it at start.
    pub legacy: bool,
    pub start: IkeStart,
    pub encap: Encap,
    pub dpd_delay: Duration,
    pub dpd_timeout: Duration,
    pub dpd_action: DpdAction,
    pub ike_lifetime: Duration,
    pub child_lifetime: Duration,
    pub version: IkeVersion,
}

/// Where the pre-shared key comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum Psk {
    /// A file holding the key (trailing newline ignored); relative paths are resolved against
    /// the config file's directory when validating.
    File(PathBuf),
    /// Written in the config itself (validation warns: configs get shared and backed up).
    Inline(String),
}

impl std::fmt::Debug for Psk {
    /// Never prints an inline key: configs end up in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Inline(_) => f.write_str("Inline(..)"),
        }
    }
}

impl Psk {
    /// The key bytes: the file's content without its trailing line break, or the inline text.
    pub fn read(&self) -> io::Result<Vec<u8>> {
        match self {
            Self::File(path) => {
                let mut bytes = std::fs::read(path)?;
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                if bytes.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} is empty", path.display()),
                    ));
                }
                Ok(bytes)
            }
            Self::Inline(text) => Ok(text.as_bytes().to_vec()),
        }
    }
}

/// Who starts the IKE SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IkeStart {
    /// Initiate at start, and again (with backoff) whenever the SA is lost.
    Auto,
    /// Wait for the peer to initiate.
    Respond,
}

impl IkeStart {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Respond => "respond",
        }
    }
}

/// How ESP travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encap {
    /// Raw ESP (protocol 50), moving to UDP 4500 when IKE detects a NAT.
    Auto,
    /// Always ESP in UDP 4500 (RFC 3948), for paths whose firewalls pass only UDP.
    Udp,
}

impl Encap {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Udp => "udp",
        }
    }
}

impl IpsecConfig {
    /// The largest inner packet that fits `room` bytes behind the outer IP header with every
    /// ESP suite the proposals allow (the worst one decides), see [`esp_fits`].
    ///
    /// The UDP header of NAT traversal is always reserved, with `encap = "auto"` too: a NAT
    /// found later moves ESP into UDP, and the TUN device's MTU must not change under running
    /// connections for it.
    pub fn inner_fits(&self, room: u16) -> u16 {
        self.esp_suites()
            .map(|(encr, integ)| esp_fits(room.saturating_sub(UDP_HEADER_LEN), encr, integ))
            .min()
            .unwrap_or(0)
    }

    /// Every (cipher, integrity) pair the ESP proposals allow.
    fn esp_suites(&self) -> impl Iterator<Item = (Encr, Option<Integ>)> + '_ {
        self.esp_proposals.iter().flat_map(|p| {
            p.encr.iter().flat_map(move |e| {
                if p.integ.is_empty() {
                    vec![(*e, None)]
                } else {
                    p.integ.iter().map(|i| (*e, Some(*i))).collect()
                }
            })
        })
    }
}

/// The largest inner packet that ESP with `encr` and `integ` fits into `room` bytes:
///
/// ```text
/// room >= ESP header 8 + IV + roundup(inner + trailer 2, align) + ICV
/// inner = rounddown(room - 8 - IV - ICV, align) - 2
/// ```
///
/// `align` is the cipher block (16 for AES-CBC) or 4 for GCM (RFC 4303 §2.4). AES-GCM-16:
/// IV 8, ICV 16; AES-CBC: IV 16, ICV 12 (SHA1-96), 16 (SHA256-128), 24, 32.
pub fn esp_fits(room: u16, encr: Encr, integ: Option<Integ>) -> u16 {
    let icv = integ.map_or(encr.aead_icv_len(), Integ::icv_len);
    let framing = wire::esp::Framing::new(encr.iv_len(), icv, encr.block_len());
    framing.max_payload(usize::from(room)) as u16
}

/// The IKE version of an ipsec tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IkeVersion {
    /// RFC 2409 main mode (PSK) and quick mode.
    V1,
    /// RFC 7296, the default.
    #[default]
    V2,
}

impl IkeVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "1",
            Self::V2 => "2",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(esp: &[&str]) -> IpsecConfig {
        IpsecConfig {
            psk: Psk::Inline("x".into()),
            local_id: None,
            remote_id: None,
            remote_psks: Vec::new(),
            proposals: vec![IkeProposal::default_modern()],
            esp_proposals: esp.iter().map(|s| EspProposal::parse(s).unwrap()).collect(),
            legacy: false,
            start: IkeStart::Auto,
            encap: Encap::Auto,
            dpd_delay: Duration::from_secs(30),
            dpd_timeout: Duration::from_secs(150),
            dpd_action: DpdAction::Restart,
            ike_lifetime: Duration::from_secs(3600),
            child_lifetime: Duration::from_secs(3600),
            version: IkeVersion::V2,
        }
    }

    #[test]
    fn gcm_fits_by_hand() {
        // 1500 - 40 (IPv6) - 8 (UDP) = 1452; 1452 - 8 - 8 - 16 = 1420, a multiple of 4; - 2.
        assert_eq!(config(&["aes128gcm16"]).inner_fits(1460), 1418);
    }

    #[test]
    fn cbc_sha1_fits_by_hand() {
        // 1452 - 8 - 16 - 12 = 1416 = 88 * 16 + 8 -> 1408 - 2.
        assert_eq!(config(&["aes128-sha1"]).inner_fits(1460), 1406);
        // SHA-256: 1452 - 40 = 1412 -> 1408 - 2 as well; 1 byte less room loses a block.
        assert_eq!(config(&["aes128-sha256"]).inner_fits(1460), 1406);
        assert_eq!(config(&["aes128-sha256"]).inner_fits(1443), 1390);
    }

    #[test]
    fn the_worst_suite_decides() {
        let both = config(&["aes128gcm16", "aes256-sha256"]);
        assert_eq!(both.inner_fits(1460), 1406);
    }

    #[test]
    fn fits_is_exact_against_the_esp_arithmetic() {
        // Sealing `fits` bytes must fill at most `room`, and one more byte must not fit.
        for (encr, integ) in [
            (Encr::AesGcm16(128), None),
            (Encr::AesCbc(128), Some(Integ::HmacSha1_96)),
            (Encr::AesCbc(256), Some(Integ::HmacSha256_128)),
        ] {
            let iv = encr.iv_len();
            let icv = integ.map_or(encr.aead_icv_len(), Integ::icv_len);
            let align = encr.block_len().max(4);
            let sealed = |n: usize| 8 + iv + (n + 2).div_ceil(align) * align + icv;
            for room in 100u16..1600 {
                let fits = usize::from(esp_fits(room, encr, integ));
                assert!(sealed(fits) <= usize::from(room), "{encr:?} {room}");
                assert!(sealed(fits + 1) > usize::from(room), "{encr:?} {room}");
            }
        }
    }

    #[test]
    fn tiny_rooms_saturate() {
        assert_eq!(config(&["aes128gcm16"]).inner_fits(10), 0);
    }

    #[test]
    fn inline_psk_is_not_printed() {
        let text = format!("{:?}", Psk::Inline("hunter2".into()));
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn psk_file_loses_its_line_break() {
        let dir = std::env::temp_dir().join(format!("v6gate-psk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.psk");
        std::fs::write(&path, b"secret\n").unwrap();
        assert_eq!(Psk::File(path.clone()).read().unwrap(), b"secret");
        std::fs::write(&path, b"\n").unwrap();
        assert!(Psk::File(path.clone()).read().is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
