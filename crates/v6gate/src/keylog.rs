//! `[gateway] key_log`: the keys of every IKEv2 SA and CHILD SA, written for Wireshark so a
//! capture of the tunnel (IKE, raw ESP or ESP in UDP 4500) can be decrypted and read. Off
//! unless configured; whoever can read the files can read the tunnel's traffic, so the daemon
//! says so loudly.
//!
//! The directory holds the two tables strongSwan's save-keys plugin writes, in Wireshark's
//! layouts: `esp_sa`, one line per direction,
//! `"IPv6","SRC","DST","0xSPI","ENCRYPTION","0xKEY","AUTHENTICATION","0xKEY"`, and
//! `ikev2_decryption_table`, one line per IKE SA,
//! `SPIi,SPIr,SK_ei,SK_er,"ENCRYPTION",SK_ai,SK_ar,"INTEGRITY"`. Each file is opened without
//! following symbolic links, created 0600, and must belong to the daemon's user.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use ike::ChildSaInfo;
use ike::crypto::{Encr, Integ};
use ike::keys::IkeKeys;
use ike::proposal::IkeSuite;
use tracing::warn;

/// Name of the ESP table in the key log directory (Wireshark's own name for it).
pub const ESP_SA: &str = "esp_sa";
/// Name of the IKEv2 table (Wireshark's own name for it).
pub const IKEV2_TABLE: &str = "ikev2_decryption_table";

struct Files {
    esp: Mutex<File>,
    ike: Mutex<File>,
}

static KEY_LOG: OnceLock<Files> = OnceLock::new();

/// Opens (or creates) both tables in `dir` for the daemon's lifetime. Refuses a directory or
/// file that is a symbolic link, not a plain file, or not the daemon user's own.
pub fn open(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if !m.is_dir() => {
            return Err(io::Error::other(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        // Whoever may rename entries in the directory could swap the tables under it.
        Ok(m) if m.uid() != sys::runtime_dir::effective_uid() || m.mode() & 0o022 != 0 => {
            return Err(io::Error::other(format!(
                "{} must be the daemon user's and writable by no one else",
                dir.display()
            )));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new().mode(0o700).create(dir)?;
        }
        Err(e) => return Err(e),
    }
    let files = Files {
        esp: Mutex::new(private(&dir.join(ESP_SA))?),
        ike: Mutex::new(private(&dir.join(IKEV2_TABLE))?),
    };
    KEY_LOG
        .set(files)
        .map_err(|_| io::Error::other("the key log is open already"))
}

fn private(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.nlink() != 1 || meta.uid() != sys::runtime_dir::effective_uid() {
        return Err(io::Error::other(format!(
            "{} must be a plain file of the daemon's user with one link",
            path.display()
        )));
    }
    // A file left from before may be readable by others; the keys are not.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

fn append(file: &Mutex<File>, text: &str) {
    let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = file.write_all(text.as_bytes()) {
        warn!("key log: {e}");
    }
}

/// Records the established IKEv2 SA's keys, when the key log is on.
pub fn ike(peer: &ike::Peer) {
    let (Some(files), Some((spis, suite, keys))) = (KEY_LOG.get(), peer.established_keys()) else {
        return;
    };
    append(&files.ike, &ike_line(spis, suite, keys));
}

/// Wireshark's names of the IKEv2 algorithms (its IKEv2 decryption table's choices).
fn ike_names(suite: IkeSuite) -> (String, &'static str) {
    let encryption = match suite.encr {
        Encr::TripleDesCbc => "3DES [RFC2451]".to_owned(),
        Encr::AesCbc(bits) => format!("AES-CBC-{bits} [RFC3602]"),
        Encr::AesGcm16(bits) => format!("AES-GCM-{bits} with 16 octet ICV [RFC5282]"),
    };
    let integrity = match suite.integ {
        None => "NONE [RFC4306]",
        Some(Integ::HmacSha1_96) => "HMAC_SHA1_96 [RFC2404]",
        Some(Integ::HmacSha256_128) => "HMAC_SHA2_256_128 [RFC4868]",
        Some(Integ::HmacSha384_192) => "HMAC_SHA2_384_192 [RFC4868]",
        Some(Integ::HmacSha512_256) => "HMAC_SHA2_512_256 [RFC4868]",
    };
    (encryption, integrity)
}

fn ike_line((spi_i, spi_r): (u64, u64), suite: IkeSuite, keys: &IkeKeys) -> String {
    let (encryption, integrity) = ike_names(suite);
    let bare = |k: &[u8]| hex(k)[2..].to_owned();
    format!(
        "{spi_i:016x},{spi_r:016x},{},{},\"{encryption}\",{},{},\"{integrity}\"\n",
        bare(&keys.sk_ei),
        bare(&keys.sk_er),
        bare(&keys.sk_ai),
        bare(&keys.sk_ar)
    )
}

/// Records a new CHILD SA's keys, when the key log is on.
pub fn child(info: &ChildSaInfo) {
    if let Some(files) = KEY_LOG.get() {
        append(&files.esp, &esp_lines(info));
    }
}

/// Wireshark's names of the ESP algorithms (its ESP SA table's choices).
fn names(encr: Encr, integ: Option<Integ>) -> (&'static str, &'static str) {
    let encryption = match encr {
        Encr::TripleDesCbc => "TripleDes-CBC [RFC2451]",
        Encr::AesCbc(_) => "AES-CBC [RFC3602]",
        Encr::AesGcm16(_) => "AES-GCM with 16 octet ICV [RFC4106]",
    };
    let authentication = match integ {
        None => "NULL",
        Some(Integ::HmacSha1_96) => "HMAC-SHA-1-96 [RFC2404]",
        Some(Integ::HmacSha256_128) => "HMAC-SHA-256-128 [RFC4868]",
        Some(Integ::HmacSha384_192) => "HMAC-SHA-384-192 [RFC4868]",
        Some(Integ::HmacSha512_256) => "HMAC-SHA-512-256 [RFC4868]",
    };
    (encryption, authentication)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::from("0x"), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The two lines of one CHILD SA: ours to the peer, then the peer's to us.
fn esp_lines(info: &ChildSaInfo) -> String {
    let (encryption, authentication) = names(info.suite.encr, info.suite.integ);
    let family = if info.local.is_ipv4() { "IPv4" } else { "IPv6" };
    let (local, remote) = (info.local.ip(), info.remote.ip());
    let line = |src, dst, spi: u32, key: &[u8], integ: &[u8]| {
        format!(
            "\"{family}\",\"{src}\",\"{dst}\",\"0x{spi:08x}\",\"{encryption}\",\"{}\",\
             \"{authentication}\",\"{}\"\n",
            hex(key),
            hex(integ)
        )
    };
    line(local, remote, info.spi_out, &info.encr_out, &info.integ_out)
        + &line(remote, local, info.spi_in, &info.encr_in, &info.integ_in)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ike::proposal::ChildSuite;

    fn info(encr: Encr, integ: Option<Integ>) -> ChildSaInfo {
        ChildSaInfo {
            spi_in: 0xc000_0001,
            spi_out: 0x0000_beef,
            suite: ChildSuite {
                encr,
                integ,
                dh: None,
                esn: false,
            },
            encr_in: vec![0x11; 20],
            integ_in: Vec::new(),
            encr_out: vec![0xab, 0xcd],
            integ_out: Vec::new(),
            local_ts: Vec::new(),
            remote_ts: Vec::new(),
            udp_encap: false,
            local: "[2001:db8:1::1]:500".parse().unwrap(),
            remote: "[2001:db8:2::1]:500".parse().unwrap(),
            replaces: None,
        }
    }

    #[test]
    fn lines_follow_the_esp_sa_table_layout() {
        let text = esp_lines(&info(Encr::AesGcm16(128), None));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "\"IPv6\",\"2001:db8:1::1\",\"2001:db8:2::1\",\"0x0000beef\",\
             \"AES-GCM with 16 octet ICV [RFC4106]\",\"0xabcd\",\"NULL\",\"0x\""
        );
        assert!(
            lines[1].starts_with("\"IPv6\",\"2001:db8:2::1\",\"2001:db8:1::1\",\"0xc0000001\",")
        );
        assert!(lines[1].contains(&format!("\"0x{}\"", "11".repeat(20))));
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn ike_lines_follow_the_ikev2_table_layout() {
        let suite = IkeSuite {
            encr: Encr::AesGcm16(128),
            prf: ike::crypto::Prf::HmacSha256,
            integ: None,
            dh: ike::dh::DhGroup::Modp2048,
        };
        let keys = IkeKeys {
            sk_d: vec![9; 32],
            sk_ai: Vec::new(),
            sk_ar: Vec::new(),
            sk_ei: vec![0x01; 20],
            sk_er: vec![0x02; 20],
            sk_pi: vec![9; 32],
            sk_pr: vec![9; 32],
        };
        let line = ike_line((0xaa, 0x0123_4567_89ab_cdef), suite, &keys);
        assert_eq!(
            line,
            format!(
                "00000000000000aa,0123456789abcdef,{},{},\"AES-GCM-128 with 16 octet ICV \
                 [RFC5282]\",,,\"NONE [RFC4306]\"\n",
                "01".repeat(20),
                "02".repeat(20)
            )
        );
        let cbc = IkeSuite {
            encr: Encr::AesCbc(256),
            integ: Some(Integ::HmacSha256_128),
            ..suite
        };
        let (e, i) = ike_names(cbc);
        assert_eq!(
            (e.as_str(), i),
            ("AES-CBC-256 [RFC3602]", "HMAC_SHA2_256_128 [RFC4868]")
        );
    }

    #[test]
    fn cbc_names_its_integrity() {
        let mut sa = info(Encr::AesCbc(128), Some(Integ::HmacSha256_128));
        sa.integ_out = vec![0x01, 0x02];
        sa.local = "198.18.1.1:4500".parse().unwrap();
        let text = esp_lines(&sa);
        assert!(text.starts_with("\"IPv4\",\"198.18.1.1\""), "{text}");
        assert!(
            text.contains(
                "\"AES-CBC [RFC3602]\",\"0xabcd\",\"HMAC-SHA-256-128 [RFC4868]\",\"0x0102\""
            ),
            "{text}"
        );
    }

    #[test]
    fn the_file_is_private_and_no_link_is_followed() {
        let dir = std::env::temp_dir().join(format!("v6gate-keylog-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let target = dir.join("elsewhere");
        fs::write(&target, "").unwrap();
        let logdir = dir.join("keys");
        fs::create_dir(&logdir).unwrap();
        std::os::unix::fs::symlink(&target, logdir.join(ESP_SA)).unwrap();
        assert!(open(&logdir).is_err(), "followed a symbolic link");
        fs::remove_file(logdir.join(ESP_SA)).unwrap();
        std::os::unix::fs::symlink(&dir, dir.join("linkdir")).unwrap();
        assert!(open(&dir.join("linkdir")).is_err(), "a linked directory");
        let shared = dir.join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(open(&shared).is_err(), "a directory others may write");
        let fresh = dir.join("fresh");
        open(&fresh).unwrap();
        for table in [ESP_SA, IKEV2_TABLE] {
            let mode = fs::metadata(fresh.join(table))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{table}");
        }
        let dir_mode = fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        fs::remove_dir_all(&dir).unwrap();
    }
}
