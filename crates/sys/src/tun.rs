//! Layer-3 TUN devices (`IFF_TUN | IFF_NO_PI`) opened through `/dev/net/tun`.
//!
//! A [`TunDevice`] owns the only file descriptor of a non-persistent device, so the device
//! vanishes with it. Creation is exclusive (`IFF_TUN_EXCL`): an existing device of that name,
//! ours from an earlier run or anybody else's, is an error, never silently adopted. Addresses,
//! MTU and link state are set through [`crate::netlink`]; this module only moves packets.
//!
//! [`TunDevice::create_with`] adds what makes a userspace data path fast:
//!
//! * `IFF_VNET_HDR`: every packet read or written is prefixed by a 10-byte virtio-net header
//!   (`wire::virtio`), little-endian on every host (`TUNSETVNETLE`).
//! * `TUNSETOFFLOAD`: with [`Offloads`] granted, the kernel hands over TCP (TSO) and UDP (USO)
//!   super-packets of up to 64 KiB with partial checksums, and takes the same on write, so one
//!   system call moves what would otherwise take forty. Splitting and merging them is the
//!   dataplane's `offload` module.
//! * `IFF_MULTI_QUEUE`: [`TunDevice::clone_queue`] attaches further descriptors to the same
//!   device, one per worker thread; the kernel spreads flows over them.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::error::{Result, SysError};

/// Longest interface name the kernel accepts (`IFNAMSIZ` less the terminating NUL).
pub const MAX_NAME_LEN: usize = libc::IFNAMSIZ - 1;

/// Length of the virtio-net header before each packet with [`TunOptions::vnet_hdr`]
/// (`sizeof(struct virtio_net_hdr)`; the 12-byte variant adds nothing a TUN device uses).
pub const VNET_HDR_LEN: usize = 10;

/// Segmentation and checksum offloads the kernel may use towards a TUN device
/// (`TUNSETOFFLOAD`). Each one lets the kernel hand over packets it has not finished: a
/// reader must complete checksums (`csum`) and split super-packets (the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Offloads {
    /// Partial transport checksums (`TUN_F_CSUM`); every other offload needs it.
    pub csum: bool,
    /// TCP over IPv4 super-packets (`TUN_F_TSO4`).
    pub tso4: bool,
    /// TCP over IPv6 super-packets (`TUN_F_TSO6`).
    pub tso6: bool,
    /// UDP over IPv4 super-packets (`TUN_F_USO4`, Linux 6.2).
    pub uso4: bool,
    /// UDP over IPv6 super-packets (`TUN_F_USO6`, Linux 6.2).
    pub uso6: bool,
}

impl Offloads {
    /// Everything: checksums, TSO and USO for both families. USO is dropped without an error
    /// on kernels that lack it.
    pub const ALL: Self = Self {
        csum: true,
        tso4: true,
        tso6: true,
        uso4: true,
        uso6: true,
    };

    /// Whether any offload is on.
    pub const fn any(self) -> bool {
        self.csum || self.tso4 || self.tso6 || self.uso4 || self.uso6
    }

    /// Without the UDP segmentation offloads.
    const fn without_uso(self) -> Self {
        Self {
            uso4: false,
            uso6: false,
            ..self
        }
    }

    fn bits(self) -> libc::c_uint {
        [
            (self.csum, libc::TUN_F_CSUM),
            (self.tso4, libc::TUN_F_TSO4),
            (self.tso6, libc::TUN_F_TSO6),
            (self.uso4, libc::TUN_F_USO4),
            (self.uso6, libc::TUN_F_USO6),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .fold(0, |bits, (_, bit)| bits | bit)
    }
}

/// How to open a TUN device; the default is what [`TunDevice::create`] opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TunOptions {
    /// Prefix every packet with a virtio-net header (`IFF_VNET_HDR`).
    pub vnet_hdr: bool,
    /// Offloads to ask for; any of them needs `vnet_hdr`, and segmentation needs `csum`.
    pub offloads: Offloads,
    /// Allow more queues ([`TunDevice::clone_queue`], `IFF_MULTI_QUEUE`).
    pub multi_queue: bool,
}

/// A TUN device carrying bare IP packets (no packet-information prefix), or with
/// [`TunOptions::vnet_hdr`] each behind a virtio-net header.
///
/// `read` returns one whole packet per call and `write` takes one whole packet; both work on
/// `&self` so one thread can poll the descriptor while holding a shared reference.
#[derive(Debug)]
pub struct TunDevice {
    file: File,
    name: String,
    index: u32,
    /// As granted: offloads the kernel refused are off.
    options: TunOptions,
}

impl TunDevice {
    /// Creates the device `name` in the network namespace of the calling thread.
    ///
    /// Fails if any interface of that name exists. The device starts down and without
    /// addresses, in blocking mode.
    pub fn create(name: &str) -> Result<Self> {
        Self::create_with(name, TunOptions::default())
    }

    /// Creates the device `name` like [`create`](Self::create), with a virtio-net header,
    /// offloads and more queues as `options` ask.
    ///
    /// USO is opportunistic: a kernel older than 6.2 refuses it, and the device is created
    /// without it; [`offloads`](Self::offloads) tells what was granted. Asking for offloads
    /// without `vnet_hdr`, or for segmentation without `csum`, is refused before any system
    /// call, since the kernel would have no way to say what it handed over.
    pub fn create_with(name: &str, options: TunOptions) -> Result<Self> {
        validate_name(name)?;
        let invalid = |reason| SysError::Invalid {
            what: "TUN options",
            value: format!("{options:?}"),
            reason,
        };
        if options.offloads.any() && !options.vnet_hdr {
            return Err(invalid("offloads need vnet_hdr"));
        }
        let offloads = options.offloads;
        if !offloads.csum && (offloads.tso4 || offloads.tso6 || offloads.uso4 || offloads.uso6) {
            return Err(invalid("segmentation offloads need csum"));
        }
        let mut device = Self::open(name, options, true)?;
        if options.vnet_hdr {
            device.options.offloads = device.enable_vnet_hdr(offloads)?;
        }
        Ok(device)
    }

    /// Opens `/dev/net/tun` and attaches to `name`: a new device if `create` (exclusive), or
    /// another queue of an existing multi-queue one.
    fn open(name: &str, options: TunOptions, create: bool) -> Result<Self> {
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
        let mut flags = libc::IFF_TUN | libc::IFF_NO_PI;
        if create {
            // IFF_TUN_EXCL makes the kernel refuse an existing device instead of attaching.
            flags |= libc::IFF_TUN_EXCL;
        }
        if options.vnet_hdr {
            flags |= libc::IFF_VNET_HDR;
        }
        if options.multi_queue {
            flags |= libc::IFF_MULTI_QUEUE;
        }
        let op = if create {
            "create"
        } else {
            "attach a queue to"
        };
        sys::set_iff(&file, name, flags).map_err(|io| {
            // The kernel answers EBUSY for "exists" under IFF_TUN_EXCL; EEXIST reads better.
            if create && io.raw_os_error() == Some(libc::EBUSY) {
                error(op, io::Error::from_raw_os_error(libc::EEXIST))
            } else {
                error(op, io)
            }
        })?;
        let index = sys::index(name).map_err(|io| error("look up index of", io))?;
        Ok(Self {
            file,
            name: name.to_owned(),
            index,
            options,
        })
    }

    /// Fixes the header's size and byte order and asks for `offloads`, without USO if the
    /// kernel does not know it. Returns what was granted.
    fn enable_vnet_hdr(&self, offloads: Offloads) -> Result<Offloads> {
        let error = |op: &'static str, io: io::Error| SysError::Tun {
            op,
            name: self.name.clone(),
            io,
        };
        sys::set_int(
            &self.file,
            libc::TUNSETVNETHDRSZ,
            VNET_HDR_LEN as libc::c_int,
        )
        .map_err(|io| error("set virtio-net header size on", io))?;
        // The header is in the guest's byte order unless told otherwise; `wire::virtio` reads
        // little-endian, which this makes true on big-endian hosts as well.
        sys::set_int(&self.file, libc::TUNSETVNETLE, 1)
            .map_err(|io| error("set little-endian virtio-net header on", io))?;
        match sys::set_offload(&self.file, offloads.bits()) {
            Ok(()) => Ok(offloads),
            // Linux before 6.2 refuses the USO bits with EINVAL.
            Err(io)
                if io.raw_os_error() == Some(libc::EINVAL) && (offloads.uso4 || offloads.uso6) =>
            {
                let fallback = offloads.without_uso();
                sys::set_offload(&self.file, fallback.bits())
                    .map_err(|io| error("set offloads on", io))?;
                tracing::debug!(device = %self.name, "no USO on this kernel: {io}");
                Ok(fallback)
            }
            Err(io) => Err(error("set offloads on", io)),
        }
    }

    /// Attaches one more queue to this multi-queue device: a descriptor of its own, for
    /// another thread, with the same header and offloads. The device lives until the last of
    /// its queues is closed.
    pub fn clone_queue(&self) -> Result<Self> {
        if !self.options.multi_queue {
            return Err(SysError::Invalid {
                what: "TUN device",
                value: self.name.clone(),
                reason: "not created with multi_queue",
            });
        }
        let mut queue = Self::open(&self.name, self.options, false)?;
        if self.options.vnet_hdr {
            // Offloads are the device's, but setting them again per queue costs nothing and
            // keeps each descriptor complete on its own.
            queue.options.offloads = queue.enable_vnet_hdr(self.options.offloads)?;
        }
        Ok(queue)
    }

    /// The interface name, exactly as requested.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface index at creation time.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The options in force: those asked for, less any offload the kernel refused.
    pub fn options(&self) -> TunOptions {
        self.options
    }

    /// Offloads granted by the kernel.
    pub fn offloads(&self) -> Offloads {
        self.options.offloads
    }

    /// Bytes of virtio-net header before each packet: [`VNET_HDR_LEN`], or 0 without one.
    pub fn vnet_hdr_len(&self) -> usize {
        if self.options.vnet_hdr {
            VNET_HDR_LEN
        } else {
            0
        }
    }

    /// Switches `O_NONBLOCK` on the descriptor, for use from a poll loop.
    pub fn set_nonblocking(&self, on: bool) -> Result<()> {
        crate::fd::set_nonblocking(self.file.as_raw_fd(), on).map_err(|io| SysError::Tun {
            op: "set non-blocking mode on",
            name: self.name.clone(),
            io,
        })
    }

    /// Reads one packet, behind its virtio-net header if the device has one. A buffer shorter
    /// than the packet gets its head; the rest is lost, so pass at least MTU bytes (with
    /// offloads, 64 KiB and the header).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one complete IPv4 or IPv6 packet into the kernel's stack, behind its virtio-net
    /// header if the device has one.
    pub fn write(&self, packet: &[u8]) -> io::Result<usize> {
        (&self.file).write(packet)
    }

    /// Writes one complete packet without a header of its own: on a device with a virtio-net
    /// header, an all-zero one ("a finished packet") goes first, in the same system call.
    /// Returns the packet bytes written, header not counted.
    pub fn write_packet(&self, packet: &[u8]) -> io::Result<usize> {
        if !self.options.vnet_hdr {
            return self.write(packet);
        }
        let header = [0u8; VNET_HDR_LEN];
        let written =
            (&self.file).write_vectored(&[IoSlice::new(&header), IoSlice::new(packet)])?;
        // A TUN write takes the whole packet or nothing.
        Ok(written.saturating_sub(VNET_HDR_LEN))
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

    pub(super) fn set_iff(file: &File, name: &str, flags: libc::c_int) -> io::Result<()> {
        // SAFETY: `ifreq` is plain old data; all-zero is a valid value (empty name, no flags).
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        // `validate_name` guarantees at most IFNAMSIZ-1 bytes, so the NUL terminator survives.
        for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = flags as i16;
        // SAFETY: TUNSETIFF reads and writes one `ifreq`, which lives on our stack for the call;
        // the descriptor is open for the duration of the borrow.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut ifr) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// An ioctl that reads one `int` through a pointer (TUNSETVNETHDRSZ, TUNSETVNETLE).
    pub(super) fn set_int(file: &File, request: libc::Ioctl, value: libc::c_int) -> io::Result<()> {
        // SAFETY: these requests read one `int` from the pointer, which points to a local that
        // outlives the call; the descriptor is open for the duration of the borrow.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), request, &value as *const libc::c_int) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// TUNSETOFFLOAD, which takes its flags by value, not through a pointer.
    pub(super) fn set_offload(file: &File, bits: libc::c_uint) -> io::Result<()> {
        // SAFETY: TUNSETOFFLOAD reads its argument as an integer and dereferences nothing; the
        // descriptor is open for the duration of the borrow.
        let rc = unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                libc::c_ulong::from(bits),
            )
        };
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
    fn offload_bits_are_the_kernels() {
        assert_eq!(Offloads::default().bits(), 0);
        assert!(!Offloads::default().any());
        // linux/if_tun.h: CSUM 0x01, TSO4 0x02, TSO6 0x04, TSO_ECN 0x08, UFO 0x10, USO4 0x20,
        // USO6 0x40.
        assert_eq!(Offloads::ALL.bits(), 0x01 | 0x02 | 0x04 | 0x20 | 0x40);
        assert_eq!(Offloads::ALL.without_uso().bits(), 0x07);
        let tso6 = Offloads {
            csum: true,
            tso6: true,
            ..Offloads::default()
        };
        assert_eq!(tso6.bits(), 0x05);
        assert!(tso6.any());
    }

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
