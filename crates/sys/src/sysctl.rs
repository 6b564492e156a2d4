//! Kernel parameters under `/proc/sys`, by path-like key.
//!
//! Keys use `/` as separator ("net/ipv4/conf/v6g.home/rp_filter") so that device names with
//! dots need no escaping. Keys under `net/` belong to the network namespace of the thread that
//! opens them: the kernel resolves `/proc/sys/net` against the opening task, not the process.
//! [`SysctlJournal`] records the original of every key it changes so a caller can put the
//! host back. (The daemon keeps its originals in its instance journal instead, which survives
//! a crash.)

use std::fs;
use std::io;
use std::path::PathBuf;

use crate::error::{Result, SysError};

/// Reads `key`, without the trailing newline.
pub fn read(key: &str) -> Result<String> {
    let path = path(key)?;
    let mut value = fs::read_to_string(&path).map_err(|io| SysError::Sysctl {
        op: "read",
        key: key.to_owned(),
        io,
    })?;
    let trimmed = value.trim_end_matches('\n').len();
    value.truncate(trimmed);
    Ok(value)
}

/// Writes `value` to `key`. The key must exist: a missing file is an error, never created.
pub fn write(key: &str, value: &str) -> Result<()> {
    let path = path(key)?;
    let error = |io| SysError::Sysctl {
        op: "write",
        key: key.to_owned(),
        io,
    };
    if value.contains('\n') {
        return Err(SysError::Invalid {
            what: "sysctl value",
            value: value.to_owned(),
            reason: "contains a newline",
        });
    }
    // Opening without `create` keeps a typo from becoming a stray file; procfs refuses
    // creation anyway, but the error is then ENOENT, which names the problem.
    let mut file = fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(error)?;
    // One write call: procfs parses each write separately.
    io::Write::write_all(&mut file, value.as_bytes()).map_err(error)
}

fn path(key: &str) -> Result<PathBuf> {
    let invalid = |reason| SysError::Invalid {
        what: "sysctl key",
        value: key.to_owned(),
        reason,
    };
    if key.is_empty() {
        return Err(invalid("empty"));
    }
    if key.starts_with('/') {
        return Err(invalid("absolute; keys are relative to /proc/sys"));
    }
    if key.contains('\0') {
        return Err(invalid("contains NUL"));
    }
    if key
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(invalid("empty, '.' or '..' component"));
    }
    Ok(PathBuf::from("/proc/sys").join(key))
}

/// Sets sysctls and remembers the first-seen value of each, to restore them later.
///
/// Restoring is explicit ([`SysctlJournal::restore`]), not on drop: a process that crashes
/// should leave its settings in place for the next start to reconcile, not half-undone.
#[derive(Debug, Default)]
pub struct SysctlJournal {
    /// Keys in the order first set, with their original values.
    originals: Vec<(String, String)>,
}

impl SysctlJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `value` to `key`, recording the current value first if this journal has not
    /// touched `key` before. A key whose original cannot be read is not written.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        if !self.originals.iter().any(|(seen, _)| seen == key) {
            let original = read(key)?;
            self.originals.push((key.to_owned(), original));
        }
        write(key, value)
    }

    /// Keys changed so far, with their originals, in the order first set.
    pub fn originals(&self) -> &[(String, String)] {
        &self.originals
    }

    /// Writes every original back, last-set first, and forgets them. Failures do not stop the
    /// rest; they are returned for the caller to log.
    pub fn restore(&mut self) -> Vec<SysError> {
        self.originals
            .drain(..)
            .rev()
            .filter_map(|(key, original)| write(&key, &original).err())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_under_proc_sys() {
        assert_eq!(
            path("net/ipv4/conf/v6g.home/rp_filter").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/v6g.home/rp_filter")
        );
        for bad in [
            "",
            "/proc/sys/net/ipv4/ip_forward",
            "net/../../etc/passwd",
            "net/./ipv4",
            "net//ipv4",
            "net/ipv4/",
            "net\0x",
        ] {
            assert!(
                matches!(path(bad), Err(SysError::Invalid { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn read_reports_key_and_errno() {
        let error = read("v6gate/no-such-key").unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
        assert!(
            error
                .to_string()
                .starts_with("read sysctl v6gate/no-such-key: ")
        );
    }

    #[test]
    fn write_refuses_newlines_and_missing_keys() {
        assert!(matches!(
            write("v6gate/x", "1\n2"),
            Err(SysError::Invalid { .. })
        ));
        let error = write("v6gate/no-such-key", "1").unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn journal_does_not_write_what_it_cannot_restore() {
        let mut journal = SysctlJournal::new();
        assert!(journal.set("v6gate/no-such-key", "1").is_err());
        assert!(journal.originals().is_empty());
        assert!(journal.restore().is_empty());
    }
}
