//! The lab's error type.

use std::fmt;
use std::io;

/// What went wrong while building or driving a lab.
#[derive(Debug)]
pub enum LabError {
    /// Namespaces, veths and TUN devices need CAP_NET_ADMIN; the lab insists on root.
    NotRoot,
    /// An external command failed.
    Command {
        command: String,
        status: Option<i32>,
        stderr: String,
    },
    /// A local I/O operation failed.
    Io { context: String, source: io::Error },
    /// Something did not happen in time.
    Timeout { what: String, detail: String },
    /// A gateway misbehaved: early exit, unclean stop, unreadable status.
    Gateway { message: String, log: String },
}

impl LabError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRoot => write!(
                f,
                "the network-namespace lab must run as root (it creates namespaces, veth \
                 pairs and TUN devices); run the tests as root, e.g. with sudo"
            ),
            Self::Command {
                command,
                status,
                stderr,
            } => {
                write!(f, "`{command}` failed")?;
                if let Some(code) = status {
                    write!(f, " with exit code {code}")?;
                }
                if !stderr.trim().is_empty() {
                    write!(f, ": {}", stderr.trim())?;
                }
                Ok(())
            }
            Self::Io { context, source } => write!(f, "{context}: {source}"),
            Self::Timeout { what, detail } => {
                write!(f, "timed out waiting for {what}")?;
                if !detail.trim().is_empty() {
                    write!(f, "\n{}", detail.trim_end())?;
                }
                Ok(())
            }
            Self::Gateway { message, log } => {
                write!(f, "{message}")?;
                if !log.trim().is_empty() {
                    write!(f, "\n--- gateway log ---\n{}", log.trim_end())?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for LabError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
