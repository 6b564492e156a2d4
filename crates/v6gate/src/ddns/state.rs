//! What each entry last published, kept across restarts so a restart sends nothing new.
//!
//! One JSON file, `ddns.json`, in a directory only root may write (`/var/lib/v6gate` unless
//! the caller names another, as tests do). Keys are `ENTRY/FAMILY`, so an entry's A and AAAA
//! records never overwrite each other. Written to a fresh temporary file and renamed over the
//! old one; opened without following symbolic links.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use control::ddns::Family;
use serde::{Deserialize, Serialize};

/// Where the daemon keeps its state.
pub const DEFAULT_DIR: &str = "/var/lib/v6gate";
const FILE: &str = "ddns.json";
/// Largest state file read: a few hundred bytes per entry.
const MAX_STATE: u64 = 1 << 20;

/// One accepted publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub address: IpAddr,
    /// Seconds since the Unix epoch.
    pub accepted_at: u64,
}

impl Accepted {
    pub fn now(address: IpAddr) -> Self {
        let accepted_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            address,
            accepted_at,
        }
    }

    /// How long ago it was accepted (zero if the clock went back).
    pub fn age(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH + Duration::from_secs(self.accepted_at))
            .unwrap_or_default()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    #[serde(default)]
    accepted: BTreeMap<String, Accepted>,
}

/// The state directory and what it holds.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

fn key(entry: &str, family: Family) -> String {
    format!("{entry}/{family}")
}

impl Store {
    /// Uses `dir`, creating it (mode 0700) if missing. Refuses a directory that is a symbolic
    /// link, not root's, or writable by others: whoever could write there could choose what
    /// v6gate believes it published, or swap the file for a link.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        match std::fs::symlink_metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
            Ok(_) => {}
        }
        let meta = std::fs::symlink_metadata(dir)?;
        if !meta.is_dir() {
            bail!("{} is not a directory", dir.display());
        }
        if meta.uid() != effective_uid() {
            bail!(
                "{} belongs to uid {}, not to v6gate's user; refusing to keep state there",
                dir.display(),
                meta.uid()
            );
        }
        if meta.permissions().mode() & 0o022 != 0 {
            bail!(
                "{} is writable by group or others (mode {:04o}); chmod 700 it",
                dir.display(),
                meta.permissions().mode() & 0o7777
            );
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// What `entry` last published for `family`, if anything.
    pub fn accepted(&self, entry: &str, family: Family) -> anyhow::Result<Option<Accepted>> {
        Ok(self.load()?.accepted.get(&key(entry, family)).copied())
    }

    /// Records an accepted publication.
    pub fn record(&self, entry: &str, family: Family, accepted: Accepted) -> anyhow::Result<()> {
        let mut file = self.load()?;
        file.accepted.insert(key(entry, family), accepted);
        self.save(&file)
    }

    fn load(&self) -> anyhow::Result<File> {
        let path = self.dir.join(FILE);
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(File::default()),
            Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
        };
        let mut text = String::new();
        file.take(MAX_STATE)
            .read_to_string(&mut text)
            .with_context(|| format!("reading {}", path.display()))?;
        // A damaged file is forgotten: the worst case is one update more.
        Ok(serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!("{}: unreadable, starting afresh: {e}", path.display());
            File::default()
        }))
    }

    fn save(&self, file: &File) -> anyhow::Result<()> {
        let path = self.dir.join(FILE);
        let tmp = self.dir.join(format!(".{FILE}.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        let text = serde_json::to_string_pretty(file)?;
        out.write_all(text.as_bytes())?;
        out.sync_all()?;
        drop(out);
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    }
}

/// The effective uid, which owns files this process creates.
fn effective_uid() -> u32 {
    std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("v6gate-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn families_and_entries_are_kept_apart_and_survive_reopening() {
        let d = dir("keys");
        let store = Store::open(&d).unwrap();
        let v6 = Accepted::now("2001:db8::1".parse().unwrap());
        let v4 = Accepted::now("198.51.100.1".parse().unwrap());
        store.record("server", Family::Ipv6, v6).unwrap();
        store.record("server", Family::Ipv4, v4).unwrap();
        let again = Store::open(&d).unwrap();
        assert_eq!(again.accepted("server", Family::Ipv6).unwrap(), Some(v6));
        assert_eq!(again.accepted("server", Family::Ipv4).unwrap(), Some(v4));
        assert_eq!(again.accepted("other", Family::Ipv4).unwrap(), None);
        let mode = std::fs::metadata(d.join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn links_and_open_directories_are_refused() {
        let d = dir("links");
        let store = Store::open(&d).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", d.join(FILE)).unwrap();
        assert!(store.accepted("x", Family::Ipv4).is_err());
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(Store::open(&d).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
