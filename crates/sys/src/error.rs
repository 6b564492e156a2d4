//! The one error type of the I/O shell.

use std::io;

/// Result with [`SysError`] as the default error.
pub type Result<T, E = SysError> = std::result::Result<T, E>;

/// A failed host operation: which operation, on which object, and the kernel's answer.
///
/// The `Display` text is complete on its own ("add route 2001:db8::2/128 table 6464: File
/// exists (os error 17)"), so the `io::Error` is kept as a field, reachable through
/// [`SysError::io`], rather than repeated as a `source()` in error chains.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    /// Creating or configuring a TUN device.
    #[error("{op} TUN device {name}: {io}")]
    Tun {
        op: &'static str,
        name: String,
        io: io::Error,
    },
    /// Opening or configuring a raw socket.
    #[error("{op} {socket}: {io}")]
    Socket {
        op: &'static str,
        socket: String,
        io: io::Error,
    },
    /// An rtnetlink request; `op` names the request and its object.
    #[error("{op}: {io}")]
    Netlink { op: String, io: io::Error },
    /// Reading or writing one sysctl.
    #[error("{op} sysctl {key}: {io}")]
    Sysctl {
        op: &'static str,
        key: String,
        io: io::Error,
    },
    /// A file of the runtime directory (lock, journal).
    #[error("{op} {path}: {io}")]
    File {
        op: &'static str,
        path: String,
        io: io::Error,
    },
    /// A path the daemon will not read, write or remove, because someone else could steer it.
    #[error("refusing {path}: {reason}")]
    Refused { path: String, reason: String },
    /// The caller passed something the kernel would misread (a device name with `%d`, a sysctl
    /// key with `..`): refused before any system call.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
}

impl SysError {
    /// The kernel's answer, if the failure came from a system call.
    pub fn io(&self) -> Option<&io::Error> {
        match self {
            Self::Tun { io, .. }
            | Self::Socket { io, .. }
            | Self::Netlink { io, .. }
            | Self::Sysctl { io, .. }
            | Self::File { io, .. } => Some(io),
            Self::Invalid { .. } | Self::Refused { .. } => None,
        }
    }

    /// The errno behind the failure, for callers that treat e.g. `EEXIST` specially.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.io().and_then(io::Error::raw_os_error)
    }

    pub(crate) fn netlink(op: impl Into<String>, io: io::Error) -> Self {
        Self::Netlink { op: op.into(), io }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_operation_object_and_errno() {
        let error = SysError::netlink(
            "add route 2001:db8::2/128 table 6464",
            io::Error::from_raw_os_error(libc::EEXIST),
        );
        assert_eq!(
            error.to_string(),
            "add route 2001:db8::2/128 table 6464: File exists (os error 17)"
        );
        assert_eq!(error.raw_os_error(), Some(libc::EEXIST));
    }

    #[test]
    fn invalid_input_has_no_errno() {
        let error = SysError::Invalid {
            what: "sysctl key",
            value: "net/../x".into(),
            reason: "empty, '.' or '..' component",
        };
        assert!(error.io().is_none());
        assert_eq!(
            error.to_string(),
            "invalid sysctl key \"net/../x\": empty, '.' or '..' component"
        );
    }
}
