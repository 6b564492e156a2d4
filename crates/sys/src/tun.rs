//! Layer-3 TUN devices (`IFF_TUN | IFF_NO_PI`) opened through `/dev/net/tun`.
//!
//! A [`TunDevice`] owns the only file descriptor of a non-persistent device, so the device
//! vanishes with it. Creation is exclusive (`IFF_TUN_EXCL`): an existing device of that name,
//! ours from an earlier run or anybody else's, is an error, never silently adopted. Addresses,
//! MTU and link state are set through [`crate::netlink`]; this module only moves packets.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::error::{Result, SysError};

/// Longest interface name the kernel accepts (`IFNAMSIZ` less the terminating NUL).
pub const MAX_NAME_LEN: usize = libc::IFNAMSIZ - 1;

/// A TUN device carrying bare IP packets (no packet-information prefix).
///
/// `read` returns one whole packet per call and `write` takes one whole packet; both work on
/// `&self` so one thread can poll the descriptor while holding a shared reference.
#[derive(Debug)]
pub struct TunDevice {
    file: File,
    name: String,
    index: u32,
}

impl TunDevice {
    /// Creates the device `name` in the network namespace of the calling thread.
    ///
    /// Fails if any interface of that name exists. The device starts down and without
    /// addresses, in blocking mode.
    pub fn create(name: &str) -> Result<Self> {
        validate_name(name)?;
        let error = |op: &'static str, io: io::Error| SysError::Tun {
            op,
            name: name.to_owned(),
            io,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|io| error("open /dev/net/tun for", io))?;
        sys::set_iff(&file, name).map_err(|io| {
            // The kernel answers EBUSY for "exists" under IFF_TUN_EXCL; EEXIST reads better.
            if io.raw_os_error() == Some(libc::EBUSY) {
                error("create", io::Error::from_raw_os_error(libc::EEXIST))
            } else {
                error("create", io)
            }
        })?;
        let index = sys::index(name).map_err(|io| error("look up index of", io))?;
        Ok(Self {
            file,
            name: name.to_owned(),
            index,
        })
    }

    /// The interface name, exactly as requested.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface index at creation time.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Switches `O_NONBLOCK` on the descriptor, for use from a poll loop.
    pub fn set_nonblocking(&self, on: bool) -> Result<()> {
        crate::fd::set_nonblocking(self.file.as_raw_fd(), on).map_err(|io| SysError::Tun {
            op: "set non-blocking mode on",
            name: self.name.clone(),
            io,
        })
    }

    /// Reads one packet. A buffer shorter than the packet gets its head; the rest is lost, so
    /// pass at least MTU bytes.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one complete IPv4 or IPv6 packet into the kernel's stack.
    pub fn write(&self, packet: &[u8]) -> io::Result<usize> {
        (&self.file).write(packet)
    }
}

impl AsRawFd for TunDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl AsFd for TunDevice {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Rejects names the kernel would reject or reinterpret (`%d` is a template for the kernel).
pub(crate) fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are reserved")
    } else if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == b'%' || b == 0 || b.is_ascii_whitespace())
    {
        Some("contains '/', ':', '%', NUL or whitespace")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(SysError::Invalid {
            what: "interface name",
            value: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

#[allow(unsafe_code)]
mod sys {
    use std::ffi::CString;
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;

    pub(super) fn set_iff(file: &File, name: &str) -> io::Result<()> {
        // SAFETY: `ifreq` is plain old data; all-zero is a valid value (empty name, no flags).
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        // `validate_name` guarantees at most IFNAMSIZ-1 bytes, so the NUL terminator survives.
        for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        // IFF_TUN_EXCL makes the kernel refuse an existing device instead of attaching to it.
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_TUN_EXCL) as i16;
        // SAFETY: TUNSETIFF reads and writes one `ifreq`, which lives on our stack for the call;
        // the descriptor is open for the duration of the borrow.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut ifr) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub(super) fn index(name: &str) -> io::Result<u32> {
        let name = CString::new(name).map_err(io::Error::other)?;
        // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_kernel_would_misread_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a:b",
            "tun%d",
            "a b",
            "a\0b",
            "sixteen-bytes-xx",
        ] {
            let error = validate_name(bad).expect_err(bad);
            assert!(matches!(error, SysError::Invalid { .. }), "{bad}: {error}");
        }
        for good in ["v6g-home", "v6g.home", "x", "fifteen-bytes-x"] {
            validate_name(good).expect(good);
        }
    }
}
