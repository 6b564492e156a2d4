//! `[gateway] key_log`: the ESP keys of every CHILD SA, written for Wireshark so a capture of
//! the tunnel's ESP (raw or in UDP 4500) can be decrypted and read. Off unless configured;
//! whoever can read the file can read the tunnel's traffic, so the daemon says so loudly.
//!
//! The directory holds `esp_sa` in the layout of Wireshark's ESP SA table (the file
//! strongSwan's save-keys plugin writes): one line per direction,
//! `"IPv6","SRC","DST","0xSPI","ENCRYPTION","0xKEY","AUTHENTICATION","0xKEY"`. It is opened
//! without following symbolic links, created 0600, and must belong to the daemon's user.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use ike::ChildSaInfo;
use ike::crypto::{Encr, Integ};
use tracing::warn;

/// Name of the ESP table in the key log directory (Wireshark's own name for it).
pub const ESP_SA: &str = "esp_sa";

static KEY_LOG: OnceLock<Mutex<File>> = OnceLock::new();

/// Opens (or creates) `dir/esp_sa` for the daemon's lifetime. Refuses a directory or file
/// that is a symbolic link, not a plain file, or not the daemon user's own.
pub fn open(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if !m.is_dir() => {
            return Err(io::Error::other(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new().mode(0o700).create(dir)?;
        }
        Err(e) => return Err(e),
    }
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir.join(ESP_SA))?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.nlink() != 1 || meta.uid() != sys::runtime_dir::effective_uid() {
        return Err(io::Error::other(format!(
            "{} must be a plain file of the daemon's user with one link",
            dir.join(ESP_SA).display()
        )));
    }
    // A file left from before may be readable by others; the keys are not.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    KEY_LOG
        .set(Mutex::new(file))
        .map_err(|_| io::Error::other("the key log is open already"))
}

/// Records a new CHILD SA's keys, when the key log is on.
pub fn child(info: &ChildSaInfo) {
    let Some(file) = KEY_LOG.get() else {
        return;
    };
    let text = esp_lines(info);
    let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = file.write_all(text.as_bytes()) {
        warn!("key log: {e}");
    }
}

/// Wireshark's names of the ESP algorithms (its ESP SA table's choices).
fn names(encr: Encr, integ: Option<Integ>) -> (&'static str, &'static str) {
    let encryption = match encr {
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
        let fresh = dir.join("fresh");
        open(&fresh).unwrap();
        let mode = fs::metadata(fresh.join(ESP_SA))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        fs::remove_dir_all(&dir).unwrap();
    }
}
