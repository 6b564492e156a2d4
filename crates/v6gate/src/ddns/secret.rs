//! Credentials read from a root-only file, never shown.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, bail};

/// Longest credentials file read: tokens and TSIG keys are far shorter.
const MAX_SECRET: u64 = 4096;

/// A password, token or key. `Debug` shows only that there is one.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// Reads `path` without following a symbolic link, up to 4 KiB, dropping the final line
    /// break; an empty file is an error.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .with_context(|| format!("opening credentials file {}", path.display()))?;
        let mut text = String::new();
        file.take(MAX_SECRET + 1)
            .read_to_string(&mut text)
            .with_context(|| format!("reading credentials file {}", path.display()))?;
        if text.len() as u64 > MAX_SECRET {
            bail!(
                "credentials file {} is longer than {MAX_SECRET} bytes",
                path.display()
            );
        }
        let text = text.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            bail!("credentials file {} is empty", path.display());
        }
        Ok(Self(text.to_owned()))
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `user:password` split at the first colon.
    pub fn user_password(&self) -> anyhow::Result<(&str, Self)> {
        match self.0.split_once(':') {
            Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                Ok((user, Self(password.to_owned())))
            }
            _ => bail!("credentials must be written as user:password"),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        let both = Secret::new("me:pa:ss");
        let (user, password) = both.user_password().unwrap();
        assert_eq!((user, password.expose()), ("me", "pa:ss"));
        assert!(Secret::new("nouser").user_password().is_err());
    }

    #[test]
    fn reads_refuse_links_and_trim_the_line_break() {
        let dir = std::env::temp_dir().join(format!("v6gate-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("s");
        std::fs::write(&file, "token\n").unwrap();
        assert_eq!(Secret::read(&file).unwrap().expose(), "token");
        let link = dir.join("l");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(Secret::read(&link).is_err());
        std::fs::write(&file, "x".repeat(5000)).unwrap();
        assert!(Secret::read(&file).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
