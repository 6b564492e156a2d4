//! The TUN side of the packet thread: every TUN device of every tunnel kind, how one read
//! splits into packets, and the coalesced writes back.

use std::collections::HashMap;
use std::os::fd::AsRawFd;

use dataplane::offload::Coalescer;
use dataplane::{PathId, TunnelId};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use sys::tun::TunDevice;
use tracing::debug;

use super::{PacketError, ShellCounters};

/// The first token of a TUN device or UDP socket; those below are the loop's fixed sockets.
pub(super) const FIRST_SLOT: usize = 16;

/// TUN reads taken before what they produced is sent, and the most packets held for sending:
/// small packets (UDP, ACKs, anything not segmented by the kernel) then share one `sendmmsg`
/// or one UDP train instead of costing a send each.
pub(super) const TX_READS: usize = 32;
pub(super) const TX_HELD: usize = 2 * sys::raw::BATCH_SIZE;

struct Device {
    path: Option<PathId>,
    token: Token,
    tun: TunDevice,
    /// Packets bound for this device, merged per TCP flow into super-packets so a burst
    /// from the underlay costs one TUN write instead of one per packet.
    coalescer: Coalescer,
}

#[derive(Default)]
struct TunnelDevices {
    devices: Vec<Device>,
    counters: ShellCounters,
}

impl TunnelDevices {
    /// The device for packets of `path`: its own if it has one, else the tunnel's.
    fn for_path_mut(&mut self, path: Option<PathId>) -> Option<&mut Device> {
        let index = self
            .devices
            .iter()
            .position(|d| d.path == path)
            .unwrap_or(0);
        self.devices.get_mut(index)
    }
}

/// Every TUN device the thread owns, by tunnel, with the tunnel's shell counters.
pub(super) struct Devices {
    tunnels: HashMap<TunnelId, TunnelDevices>,
    slots: HashMap<Token, (TunnelId, Option<PathId>)>,
    /// Devices whose coalescer holds packets not yet written.
    pending: Vec<(TunnelId, Option<PathId>)>,
    next_slot: usize,
}

impl Devices {
    pub(super) fn new() -> Self {
        Self {
            tunnels: HashMap::new(),
            slots: HashMap::new(),
            pending: Vec::new(),
            next_slot: FIRST_SLOT,
        }
    }

    /// A fresh poll token, for a device or a socket.
    pub(super) fn next_token(&mut self) -> Token {
        let token = Token(self.next_slot);
        self.next_slot += 1;
        token
    }

    /// The device (tunnel, path) that `token` reads.
    pub(super) fn slot(&self, token: Token) -> Option<(TunnelId, Option<PathId>)> {
        self.slots.get(&token).copied()
    }

    /// Takes `tun` for tunnel `id` (its `path`'s own device, or the tunnel's with `None`):
    /// non-blocking, registered with the poller, writes merged by `coalescer`.
    pub(super) fn add(
        &mut self,
        registry: &Registry,
        id: TunnelId,
        path: Option<PathId>,
        tun: TunDevice,
        coalescer: Coalescer,
    ) -> Result<(), PacketError> {
        tun.set_nonblocking(true)
            .map_err(|error| PacketError::Nonblocking {
                device: tun.name().to_string(),
                error,
            })?;
        let token = self.next_token();
        registry
            .register(&mut SourceFd(&tun.as_raw_fd()), token, Interest::READABLE)
            .map_err(|error| PacketError::Register {
                what: tun.name().to_string(),
                error,
            })?;
        debug!(device = tun.name(), "packet thread owns the TUN device");
        self.slots.insert(token, (id, path));
        self.tunnels.entry(id).or_default().devices.push(Device {
            path,
            token,
            tun,
            coalescer,
        });
        Ok(())
    }

    /// Closes the tunnel's devices (the kernel removes them and their routes).
    pub(super) fn remove(&mut self, registry: &Registry, id: TunnelId) {
        let Some(devices) = self.tunnels.remove(&id) else {
            return;
        };
        for d in devices.devices {
            let _ = registry.deregister(&mut SourceFd(&d.tun.as_raw_fd()));
            self.slots.remove(&d.token);
        }
        self.pending.retain(|(t, _)| *t != id);
    }

    pub(super) fn counters(&self, id: TunnelId) -> ShellCounters {
        self.tunnels
            .get(&id)
            .map(|t| t.counters)
            .unwrap_or_default()
    }

    /// The shell counters of tunnel `id`, when it has a device.
    pub(super) fn counters_mut(&mut self, id: TunnelId) -> Option<&mut ShellCounters> {
        self.tunnels.get_mut(&id).map(|t| &mut t.counters)
    }

    /// Holds `packet` for the device of tunnel `id` that carries `path`'s packets, merged
    /// with the flow it belongs to until [`Devices::write_pending`].
    pub(super) fn push(&mut self, id: TunnelId, path: Option<PathId>, packet: &[u8]) {
        if let Some(d) = self.tunnels.get_mut(&id).and_then(|t| t.for_path_mut(path)) {
            d.coalescer.push(packet);
            if !self.pending.contains(&(id, d.path)) {
                self.pending.push((id, d.path));
            }
        }
    }

    /// Writes what the devices' coalescers hold, one frame (a super-packet or a lone
    /// packet, with its virtio-net header) per write.
    pub(super) fn write_pending(&mut self) {
        for (id, path) in self.pending.drain(..) {
            let Some(t) = self.tunnels.get_mut(&id) else {
                continue;
            };
            let Some(d) = t.devices.iter_mut().find(|d| d.path == path) else {
                continue;
            };
            let mut failed = 0;
            for frame in d.coalescer.flush() {
                if let Err(e) = d.tun.write(frame) {
                    failed += 1;
                    debug!(device = d.tun.name(), "TUN write failed: {e}");
                }
            }
            d.coalescer.clear();
            t.counters.send_errors += failed;
        }
    }

    pub(super) fn device(&self, id: TunnelId, path: Option<PathId>) -> Option<&TunDevice> {
        self.tunnels
            .get(&id)?
            .devices
            .iter()
            .find(|d| d.path == path)
            .map(|d| &d.tun)
    }
}

/// Why a TUN read could not be split into packets.
#[derive(Debug)]
pub(super) enum SplitError {
    Header(wire::Error),
    Split(dataplane::offload::OffloadError),
}

impl std::fmt::Display for SplitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Header(e) => write!(f, "virtio-net header: {e}"),
            Self::Split(e) => write!(f, "{e}"),
        }
    }
}

/// Hands `each` the packets one TUN read holds: itself, or the segments of a super-packet
/// when the device prefixes reads with a virtio-net header of `header` bytes.
pub(super) fn segments(
    read: &mut [u8],
    header: usize,
    mut each: impl FnMut(&mut [u8]),
) -> Result<usize, SplitError> {
    if header == 0 {
        each(read);
        return Ok(1);
    }
    let vnet = wire::virtio::Packet::new_checked(&read[..])
        .and_then(|p| wire::virtio::Repr::parse(&p))
        .map_err(SplitError::Header)?;
    dataplane::offload::split(&vnet, &mut read[header..], each).map_err(SplitError::Split)
}
