//! The one flush: what a core put in its batch leaves on the underlay (raw sockets, a path's
//! connected socket, UDP trains), through the host's stack, or into the TUN coalescers.

use std::io;
use std::net::{IpAddr, SocketAddr};

use dataplane::{Batch, PathId, TunnelId};
use sys::raw::{BATCH_SIZE, PathSender, RawIpv4Socket, RawIpv6Socket, Transmit, Transmit4};
use tracing::{debug, warn};

use super::tun::Devices;
use super::{EspLinks, ShellCounters};

/// Where one packet of a batch goes, in the shell's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Out {
    /// A whole outer packet (`IPV6_HDRINCL` / `IP_HDRINCL`): the path's connected socket
    /// when it has one, else the raw socket of its family.
    Raw(IpAddr),
    /// A UDP payload from our port 4500 of `path` to `remote`.
    Udp { path: usize, remote: SocketAddr },
    /// An inner packet for the device of the tunnel that carries `path`'s packets.
    Tun(TunnelId, Option<PathId>),
    /// A whole IP packet through the host's own stack (the gateway's ICMP errors).
    Local,
    /// Nowhere the shell knows of.
    Nowhere,
}

/// The sockets a kind sends its outer packets with.
pub(super) struct Underlay<'a, S> {
    pub raw6: &'a RawIpv6Socket,
    /// Sends both protocols: with `IP_HDRINCL` the protocol is the one in the header.
    pub raw4: &'a RawIpv4Socket,
    /// A socket bound to a path's local address and connected to its remote, by remote.
    pub connected: S,
}

/// One tunnel's UDP 4500 sockets, by path, and whether each still takes trains.
pub(super) struct UdpPaths<'a> {
    pub tunnel: &'a str,
    pub links: &'a [EspLinks],
    /// Cleared for good when the kernel or the outgoing device says it cannot.
    pub gso: &'a mut [bool],
}

/// Sends every packet of `batch` where `route` says, charging send failures and trains to
/// tunnel `charged`, then writes what the TUN coalescers hold.
pub(super) fn flush<'s, D: Copy>(
    batch: &Batch<D>,
    route: impl Fn(D) -> Out,
    underlay: Underlay<'s, impl Fn(IpAddr) -> Option<&'s PathSender>>,
    mut udp: Option<UdpPaths<'_>>,
    devices: &mut Devices,
    charged: Option<TunnelId>,
) {
    // Outer packets leave in sendmmsg batches, one per family; a super-packet split into
    // 44 segments costs two system calls instead of 44.
    let mut v6: Vec<Transmit<'_>> = Vec::new();
    let mut v4: Vec<Transmit4<'_>> = Vec::new();
    // Consecutive ESP-in-UDP packets to one peer of one size (the last may be shorter)
    // leave as one UDP_SEGMENT train: TCP in the tunnel makes most of them.
    let mut run: Option<UdpRun> = None;
    let mut connected = ConnectedRun::default();
    let sender_of = &underlay.connected;
    let mut delta = ShellCounters::default();
    for (index, (destination, packet)) in batch.iter().enumerate() {
        match route(destination) {
            // Paths with a connected socket: consecutive packets to one remote go together,
            // without addresses.
            Out::Raw(remote) if sender_of(remote).is_some() => {
                delta.send_errors += connected.push(remote, packet, sender_of);
            }
            Out::Raw(IpAddr::V6(dst)) => {
                v6.push(Transmit { packet, dst });
                if v6.len() == BATCH_SIZE {
                    delta.send_errors += send_all(&mut v6, |t| underlay.raw6.send_batch(t));
                }
            }
            Out::Raw(IpAddr::V4(dst)) => {
                v4.push(Transmit4 { packet, dst });
                if v4.len() == BATCH_SIZE {
                    delta.send_errors += send_all(&mut v4, |t| underlay.raw4.send_batch(t));
                }
            }
            Out::Udp { path, remote } => {
                let Some(udp) = udp.as_mut() else {
                    continue;
                };
                if let Some(r) = run.as_mut() {
                    if r.extend(index, path, remote, packet.len()) {
                        continue;
                    }
                    send_udp_run(udp, batch, r, &mut delta);
                }
                run = Some(UdpRun::new(index, path, remote, packet.len()));
            }
            Out::Tun(id, path) => devices.push(id, path, packet),
            Out::Local => {
                if let Err(e) = send_local(underlay.raw4, underlay.raw6, packet) {
                    delta.send_errors += 1;
                    debug!("local send failed: {e}");
                }
            }
            Out::Nowhere => {}
        }
    }
    if let (Some(r), Some(udp)) = (&run, udp.as_mut()) {
        send_udp_run(udp, batch, r, &mut delta);
    }
    delta.send_errors += connected.send(sender_of);
    delta.send_errors += send_all(&mut v6, |t| underlay.raw6.send_batch(t));
    delta.send_errors += send_all(&mut v4, |t| underlay.raw4.send_batch(t));
    if let Some(counters) = charged.and_then(|id| devices.counters_mut(id)) {
        counters.send_errors += delta.send_errors;
        counters.udp_trains_sent += delta.udp_trains_sent;
    }
    devices.write_pending();
}

/// Consecutive packets to one remote, for that path's connected socket ([`PathSender`]):
/// they leave `BATCH_SIZE` per `sendmmsg`, without addresses.
#[derive(Default)]
struct ConnectedRun<'a> {
    to: Option<IpAddr>,
    packets: Vec<&'a [u8]>,
}

impl<'a> ConnectedRun<'a> {
    /// Adds `packet` for `remote`, first sending what the run holds when it is for another
    /// remote or full; returns how many of those could not be sent.
    fn push<'s>(
        &mut self,
        remote: IpAddr,
        packet: &'a [u8],
        sender_of: impl Fn(IpAddr) -> Option<&'s PathSender>,
    ) -> u64 {
        let mut failed = 0;
        if self.to != Some(remote) || self.packets.len() == BATCH_SIZE {
            failed = self.send(sender_of);
            self.to = Some(remote);
        }
        self.packets.push(packet);
        failed
    }

    /// Sends what the run holds; returns how many could not be sent.
    fn send<'s>(&mut self, sender_of: impl Fn(IpAddr) -> Option<&'s PathSender>) -> u64 {
        match self.to.and_then(sender_of) {
            Some(sender) => send_all(&mut self.packets, |p| sender.send_batch(p)),
            None => {
                self.packets.clear();
                0
            }
        }
    }
}

/// Consecutive entries of a batch bound for one peer over one path's UDP socket, all
/// `segment` bytes long but the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct UdpRun {
    first: usize,
    count: usize,
    bytes: usize,
    path: usize,
    remote: SocketAddr,
    segment: usize,
    /// The last packet was shorter than `segment`: nothing may follow it in the train.
    closed: bool,
}

impl UdpRun {
    fn new(index: usize, path: usize, remote: SocketAddr, len: usize) -> Self {
        Self {
            first: index,
            count: 1,
            bytes: len,
            path,
            remote,
            segment: len,
            closed: false,
        }
    }

    /// Takes entry `index` into the run if it can ride in the same train.
    fn extend(&mut self, index: usize, path: usize, remote: SocketAddr, len: usize) -> bool {
        let fits = !self.closed
            && index == self.first + self.count
            && path == self.path
            && remote == self.remote
            && len <= self.segment
            && len > 0
            && self.count < sys::udp::MAX_SEGMENTS
            && self.bytes + len <= sys::udp::MAX_PAYLOAD;
        if fits {
            self.count += 1;
            self.bytes += len;
            self.closed = len < self.segment;
        }
        fits
    }
}

/// Sends a run as one train, or datagram by datagram when it is one packet, when the path's
/// socket cannot take trains, or when the kernel refuses this train (a segment over the
/// route's MTU, say).
fn send_udp_run<D: Copy>(
    udp: &mut UdpPaths<'_>,
    batch: &Batch<D>,
    run: &UdpRun,
    counters: &mut ShellCounters,
) {
    let Some(links) = udp.links.get(run.path) else {
        return;
    };
    let train = run.count > 1 && udp.gso.get(run.path).copied().unwrap_or(false);
    if train {
        if let Some(payload) = batch.span(run.first..run.first + run.count) {
            match sys::udp::send_segments(&*links.udp, run.remote, payload, run.segment) {
                Ok(_) => {
                    counters.udp_trains_sent += 1;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    counters.send_errors += u64::try_from(run.count).unwrap_or(u64::MAX);
                    return;
                }
                Err(e) if sys::udp::is_unsupported(&e) => {
                    warn!(
                        tunnel = %udp.tunnel,
                        "UDP segmentation offload refused ({e}); sending ESP-in-UDP datagram by datagram from now on"
                    );
                    if let Some(flag) = udp.gso.get_mut(run.path) {
                        *flag = false;
                    }
                }
                Err(e) => {
                    debug!(tunnel = %udp.tunnel, "UDP train of {} refused ({e}); sent datagram by datagram", run.count)
                }
            }
        }
    }
    for index in run.first..run.first + run.count {
        let Some((_, packet)) = batch.get(index) else {
            continue;
        };
        if let Err(e) = links.udp.send_to(packet, run.remote) {
            counters.send_errors += 1;
            debug!(tunnel = %udp.tunnel, "send failed: {e}");
        }
    }
}

/// Sends a whole IPv4 or IPv6 packet through the host's stack to its destination.
fn send_local(v4: &RawIpv4Socket, v6: &RawIpv6Socket, packet: &[u8]) -> io::Result<()> {
    if let Ok(ip) = wire::Ipv4Packet::new_checked(packet) {
        v4.send_to(packet, ip.dst_addr()).map(drop)
    } else if let Ok(ip) = wire::Ipv6Packet::new_checked(packet) {
        v6.send_to(packet, ip.dst_addr()).map(drop)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "locally originated packet is neither IPv4 nor IPv6",
        ))
    }
}

/// Sends every transmit, `BATCH_SIZE` per system call, and empties the list; returns how many
/// could not be sent. A failing packet is skipped so the rest still go.
fn send_all<T>(list: &mut Vec<T>, send: impl Fn(&[T]) -> io::Result<usize>) -> u64 {
    let mut failed = 0;
    let mut start = 0;
    while start < list.len() {
        match send(&list[start..]) {
            Ok(0) => {
                failed += 1;
                start += 1;
            }
            Ok(n) => start += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                debug!("underlay send failed: {e}");
                failed += 1;
                start += 1;
            }
        }
    }
    list.clear();
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_runs_take_equal_sizes_and_one_shorter_tail() {
        let peer: SocketAddr = "[2001:db8:b::1]:4500".parse().unwrap();
        let other: SocketAddr = "[2001:db8:b::1]:4501".parse().unwrap();
        let mut run = UdpRun::new(3, 0, peer, 1400);
        assert!(run.extend(4, 0, peer, 1400));
        assert!(!run.extend(6, 0, peer, 1400), "entry 5 went elsewhere");
        assert!(!run.extend(5, 1, peer, 1400), "another path's socket");
        assert!(!run.extend(5, 0, other, 1400), "another peer port");
        assert!(!run.extend(5, 0, peer, 1401), "longer than the segment");
        assert!(run.extend(5, 0, peer, 90));
        assert!(!run.extend(6, 0, peer, 90), "nothing after a short tail");
        assert_eq!((run.first, run.count, run.bytes), (3, 3, 2890));
        assert_eq!(run.segment, 1400);
    }

    #[test]
    fn udp_runs_stop_at_the_kernel_limits() {
        let peer: SocketAddr = "198.51.100.2:4500".parse().unwrap();
        let mut run = UdpRun::new(0, 0, peer, 100);
        let mut taken = 1;
        while run.extend(taken, 0, peer, 100) {
            taken += 1;
        }
        assert_eq!(taken, sys::udp::MAX_SEGMENTS);
        let mut run = UdpRun::new(0, 0, peer, 1500);
        let mut taken = 1;
        while run.extend(taken, 0, peer, 1500) {
            taken += 1;
        }
        assert_eq!(taken, sys::udp::MAX_PAYLOAD / 1500);
        assert!(run.bytes <= sys::udp::MAX_PAYLOAD);
    }
}
