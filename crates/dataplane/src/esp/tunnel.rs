//! The packet path of one ipsec tunnel: the ESP twin of the RFC 2473 tunnel.
//!
//! [`EspTunnel`] takes inner packets from the TUN device and ESP packets from the underlay,
//! with `now`, and appends what to send to an [`EspBatch`]; SAs come from the IKE shell. Call
//! order: [`install_inbound`](EspTunnel::install_inbound) and
//! [`install_outbound`](EspTunnel::install_outbound) as CHILD SAs come up (and
//! [`set_udp_encap`](EspTunnel::set_udp_encap) when IKE moved to UDP 4500);
//! [`handle_inner`](EspTunnel::handle_inner) per TUN packet;
//! [`handle_esp`](EspTunnel::handle_esp) per ESP packet from the peer (raw protocol 50 with the
//! outer IP header removed, or the UDP 4500 payload once [`classify_udp`] said it is ESP);
//! [`handle_timeout`](EspTunnel::handle_timeout) at [`poll_timeout`](EspTunnel::poll_timeout)
//! for NAT keepalives; [`poll_event`](EspTunnel::poll_event) for what the IKE shell wants to
//! hear; [`remove_sa`](EspTunnel::remove_sa) when a CHILD SA is deleted.
//!
//! Rekeying is make-before-break: the newest outbound SA seals, and every inbound SA keeps
//! opening until it is removed, so packets the peer sealed with the old SA while the new one
//! was being installed still arrive.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use wire::{Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, ip_proto, ipv4, ipv6};

pub use super::drops::{EspDrop, EspStats};
use super::{EspError, InboundSa, Integrity, OutboundSa, SpiTable, Suite};
use crate::inner::{Family, Inner};
use crate::pmtu::{PathMtu, Update};
use crate::probe::{KEEPALIVE_LEN, KEEPALIVE_PROTOCOL, Keepalive};
use crate::{Batch, MssClamp};
use crate::{icmp, mss};

/// UDP port of IKE and ESP after NAT detection (RFC 3948, RFC 7296 §2.23).
pub const NAT_T_PORT: u16 = 4500;
/// How often a NAT keepalive goes out while nothing else does (RFC 3948 §2.3 recommends 20 s).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// The NAT keepalive: one byte, 0xFF (RFC 3948 §2.3).
pub const KEEPALIVE: [u8; 1] = [0xff];
/// Least time between two [`EspEvent::EspReceived`] for one SA: DPD works in seconds, and one
/// event per packet would cost the IKE shell more than it tells it.
pub const RECEIVED_REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// ESP next header of a dummy packet (RFC 4303 §2.6), dropped silently.
const NO_NEXT_HEADER: u8 = 59;

/// What a UDP 4500 datagram carries (RFC 3948 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpKind {
    /// ESP: a non-zero SPI first. Hand it to [`EspTunnel::handle_esp`] as it is.
    Esp,
    /// IKE behind the four-byte non-ESP marker; the IKE message starts at `payload[4..]`.
    Ike,
    /// A NAT keepalive (a single 0xFF): nothing to do.
    Keepalive,
    /// Too short to be any of them.
    Malformed,
}

/// Sorts a UDP 4500 payload, so that the packet thread keeps ESP and passes IKE on.
pub fn classify_udp(payload: &[u8]) -> UdpKind {
    match payload {
        [0xff] => UdpKind::Keepalive,
        [0, 0, 0, 0, ..] => UdpKind::Ike,
        p if p.len() >= wire::esp::HEADER_LEN => UdpKind::Esp,
        _ => UdpKind::Malformed,
    }
}

/// The UDP header in front of ESP-in-UDP, reserved in the tunnel MTU whatever the encapsulation.
const UDP_HEADER_LEN: usize = 8;

/// How ESP leaves: raw or in UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EspDestination {
    /// A whole outer IPv6 or IPv4 packet with next header / protocol 50, for a raw socket with
    /// `IPV6_HDRINCL` / `IP_HDRINCL`.
    Raw { remote: IpAddr },
    /// A UDP payload (ESP, or a NAT keepalive) to send from our port 4500 to `remote`.
    Udp { remote: SocketAddr },
    /// An inner packet for the TUN device.
    Tun,
    /// A whole IP packet the gateway originates towards an inner sender (an ICMP error), to
    /// send through the host's own stack, like [`Destination::Local`](crate::Destination::Local)
    /// and for the same reason: through the TUN the kernel would drop it as a martian.
    Local,
}

/// Packets the ESP core produced: the one output arena, addressed the ESP way.
pub type EspBatch = Batch<EspDestination>;

/// What the IKE shell should hear from the packet path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EspEvent {
    /// An authenticated packet arrived on the inbound SA `spi` (at most once per
    /// [`RECEIVED_REPORT_INTERVAL`] per SA): the peer is alive, DPD can stay quiet.
    EspReceived { spi: u32 },
    /// The outbound SA `spi` ran out of sequence numbers: rekey it now.
    RekeyNeeded { spi: u32 },
}

/// What an ipsec tunnel's packet path needs to know, from the validated config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspTunnelConfig {
    /// Outer source; of the same family as `remote`.
    pub local: IpAddr,
    /// The peer; ESP from anywhere else is dropped.
    pub remote: IpAddr,
    /// Our traffic selectors: inner sources we send, inner destinations we accept.
    pub local_subnets: Vec<IpNet>,
    /// The peer's traffic selectors: inner destinations we send to.
    pub routes: Vec<IpNet>,
    /// Inner sources accepted from the peer (usually `routes`).
    pub allowed_sources: Vec<IpNet>,
    /// Largest inner packet (the TUN device's MTU).
    pub mtu: u16,
    pub mss_clamp: MssClamp,
    /// Outer hop limit / TTL.
    pub hop_limit: u8,
    /// Sources of ICMP errors to inner senders; without one, too-big packets are dropped
    /// silently.
    pub icmp_source_v4: Option<Ipv4Addr>,
    pub icmp_source_v6: Option<Ipv6Addr>,
}

/// A per-tunnel ESP core; see the module documentation for the call order.
#[derive(Debug)]
pub struct EspTunnel {
    config: EspTunnelConfig,
    /// Newest last; the last one seals.
    outbound: Vec<OutboundSa>,
    inbound: SpiTable,
    /// `Some(peer port)` while ESP travels in UDP.
    udp_port: Option<u16>,
    /// When something last went to the peer in UDP, for keepalives.
    last_udp_tx: Option<Instant>,
    reported: HashMap<u32, Instant>,
    events: Vec<EspEvent>,
    stats: EspStats,
    ident: u16,
    /// The inner MTU, lowered by Packet Too Big / Fragmentation Needed about our ESP.
    pmtu: PathMtu,
}

impl EspTunnel {
    pub fn new(config: EspTunnelConfig) -> Self {
        Self {
            pmtu: PathMtu::new(config.mtu),
            config,
            outbound: Vec::new(),
            inbound: SpiTable::new(),
            udp_port: None,
            last_udp_tx: None,
            reported: HashMap::new(),
            events: Vec::new(),
            stats: EspStats::default(),
            ident: 0,
        }
    }

    /// The largest inner packet now: the configured MTU, or less while a router on the path
    /// reports a smaller link.
    pub fn mtu(&self) -> u16 {
        self.pmtu.current()
    }

    /// A router reported that our ESP to the peer met a link of `link_mtu` bytes. Returns the
    /// new inner MTU if it fell. The room is reckoned as the configured MTU was (UDP header
    /// reserved, the sealing SA's suite, or before any SA the one needing most room).
    pub fn lower_path_mtu(&mut self, now: Instant, link_mtu: u16) -> Option<u16> {
        let outer = match self.config.remote {
            IpAddr::V4(_) => ipv4::HEADER_LEN,
            IpAddr::V6(_) => ipv6::HEADER_LEN,
        };
        let suite = self.outbound.last().map_or(
            Suite::AesCbc {
                key_bits: 128,
                integrity: Integrity::HmacSha256_128,
            },
            OutboundSa::suite,
        );
        let room = usize::from(link_mtu).saturating_sub(outer + UDP_HEADER_LEN);
        let inner = u16::try_from(suite.max_payload(room)).unwrap_or(u16::MAX);
        (self.pmtu.lower(now, inner) == Update::Lowered).then_some(inner)
    }

    /// Returns to the configured MTU once a lowered one has aged out; true if it did.
    pub fn expire_path_mtu(&mut self, now: Instant) -> bool {
        self.pmtu.expire(now)
    }

    pub fn config(&self) -> &EspTunnelConfig {
        &self.config
    }

    pub fn stats(&self) -> &EspStats {
        &self.stats
    }

    /// Installs an outbound SA; from now on it seals (the previous ones stay until removed, so
    /// that removing the new one falls back rather than going dark).
    pub fn install_outbound(&mut self, sa: OutboundSa) {
        self.outbound.retain(|o| o.spi() != sa.spi());
        self.outbound.push(sa);
    }

    /// Installs an inbound SA beside the ones there.
    pub fn install_inbound(&mut self, sa: InboundSa) {
        self.inbound.insert(sa);
    }

    /// Removes the CHILD SA with these SPIs (IKE's `ChildSaDeleted`). Inbound and outbound
    /// SPIs are chosen by different ends, so each is looked up in its own direction.
    pub fn remove_sa(&mut self, spi_in: u32, spi_out: u32) {
        self.inbound.remove(spi_in);
        self.reported.remove(&spi_in);
        self.outbound.retain(|o| o.spi() != spi_out);
    }

    /// Drops every SA (IKE SA down).
    pub fn clear_sas(&mut self) {
        self.inbound = SpiTable::new();
        self.outbound.clear();
        self.reported.clear();
    }

    /// SPI of the outbound SA that seals, if any.
    pub fn active_outbound(&self) -> Option<u32> {
        self.outbound.last().map(OutboundSa::spi)
    }

    pub fn inbound_count(&self) -> usize {
        self.inbound.len()
    }

    /// ESP goes in UDP to the peer's `port` (4500, or what a NAT made of it), or raw with
    /// `None`. IKE has just talked to the peer in UDP, so the first keepalive is due one
    /// [`KEEPALIVE_INTERVAL`] after `now`.
    pub fn set_udp_encap(&mut self, now: Instant, port: Option<u16>) {
        self.udp_port = port;
        self.last_udp_tx = port.map(|_| now);
    }

    pub fn poll_event(&mut self) -> Option<EspEvent> {
        if self.events.is_empty() {
            None
        } else {
            Some(self.events.remove(0))
        }
    }

    /// When [`EspTunnel::handle_timeout`] has work: the next NAT keepalive.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let keepalive = self
            .udp_port
            .and(self.last_udp_tx)
            .map(|t| t + KEEPALIVE_INTERVAL);
        match (keepalive, self.pmtu.expires()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sends a NAT keepalive if nothing went to the peer in UDP for [`KEEPALIVE_INTERVAL`].
    pub fn handle_timeout(&mut self, now: Instant, out: &mut EspBatch) {
        let Some(port) = self.udp_port else { return };
        if self
            .last_udp_tx
            .is_some_and(|t| now.saturating_duration_since(t) < KEEPALIVE_INTERVAL)
        {
            return;
        }
        let remote = SocketAddr::new(self.config.remote, port);
        out.push(EspDestination::Udp { remote }, 1)
            .copy_from_slice(&KEEPALIVE);
        self.last_udp_tx = Some(now);
        self.stats.keepalives_sent += 1;
    }

    /// One inner packet from the TUN device: filtered, MSS-clamped, sealed with the newest
    /// outbound SA and appended to `out` as ESP for the peer (or as an ICMP error for the
    /// sender when too big).
    pub fn handle_inner(
        &mut self,
        now: Instant,
        packet: &mut [u8],
        out: &mut EspBatch,
    ) -> Result<(), EspDrop> {
        let r = self.inner(now, packet, out);
        if let Err(reason) = r {
            self.stats.drops[reason as usize] += 1;
        }
        r
    }

    fn inner(
        &mut self,
        now: Instant,
        packet: &mut [u8],
        out: &mut EspBatch,
    ) -> Result<(), EspDrop> {
        let inner = Inner::parse(packet, false)?;
        let packet = &mut packet[..inner.len];
        if !contains(&self.config.routes, inner.dst) {
            return Err(EspDrop::NotRouted);
        }
        if !contains(&self.config.local_subnets, inner.src) {
            return Err(EspDrop::SourceNotLocal);
        }
        if inner.len > usize::from(self.mtu()) {
            self.too_big(packet, inner.family, out);
            return Err(EspDrop::TooBig);
        }
        if let Some(max) = self.mss(inner.family)
            && mss::clamp(packet, inner.family, max)
        {
            self.stats.mss_clamped += 1;
        }
        self.seal(
            now,
            inner.family.protocol(),
            inner.traffic_class,
            packet,
            out,
        )?;
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += packet.len() as u64;
        Ok(())
    }

    /// Seals a path probe (a keepalive, see [`crate::probe`]) with the SA that seals now. It
    /// skips the traffic selectors on purpose: its inner addresses are 0.0.0.0, which no
    /// selector holds and no host takes for its own, and it is counted apart from traffic.
    pub(crate) fn seal_keepalive(
        &mut self,
        now: Instant,
        keepalive: &[u8; KEEPALIVE_LEN],
        out: &mut EspBatch,
    ) -> Result<(), EspDrop> {
        self.seal(now, ip_proto::IPIP, 0, keepalive, out)
    }

    /// Appends `packet` sealed with the newest outbound SA, raw with its outer header or as a
    /// UDP payload.
    fn seal(
        &mut self,
        now: Instant,
        protocol: u8,
        tos: u8,
        packet: &[u8],
        out: &mut EspBatch,
    ) -> Result<(), EspDrop> {
        let sa = self.outbound.last_mut().ok_or(EspDrop::NoSa)?;
        let esp_len = sa.sealed_len(packet.len());
        let (destination, header) = match self.udp_port {
            Some(port) => (
                EspDestination::Udp {
                    remote: SocketAddr::new(self.config.remote, port),
                },
                0,
            ),
            None => (
                EspDestination::Raw {
                    remote: self.config.remote,
                },
                if self.config.remote.is_ipv6() {
                    ipv6::HEADER_LEN
                } else {
                    ipv4::HEADER_LEN
                },
            ),
        };
        let buf = out.push(destination, header + esp_len);
        if let Err(e) = sa.seal(protocol, packet, &mut buf[header..]) {
            let spi = sa.spi();
            out.pop(1);
            if e == EspError::SequenceExhausted {
                self.events.push(EspEvent::RekeyNeeded { spi });
            }
            return Err(EspDrop::from_esp(e));
        }
        if header > 0 {
            self.ident = self.ident.wrapping_add(1);
            write_outer(&self.config, self.ident, tos, &mut buf[..header], esp_len);
        } else {
            self.last_udp_tx = Some(now);
        }
        Ok(())
    }

    /// One ESP packet from `from` (starting at the SPI): opened, checked against the traffic
    /// selectors and appended to `out` for the TUN device.
    ///
    /// A path probe of a multipath peer is authenticated like any packet, proves the peer
    /// alive like any packet, and is then consumed here: only [`EspPaths`](super::EspPaths)
    /// answers them.
    pub fn handle_esp(
        &mut self,
        now: Instant,
        esp: &[u8],
        from: IpAddr,
        out: &mut EspBatch,
    ) -> Result<(), EspDrop> {
        self.open_esp(now, esp, from, out).map(drop)
    }

    /// [`handle_esp`](Self::handle_esp), handing back a path probe instead of consuming it
    /// (nothing is appended to `out` for it).
    pub(crate) fn open_esp(
        &mut self,
        now: Instant,
        esp: &[u8],
        from: IpAddr,
        out: &mut EspBatch,
    ) -> Result<Option<Keepalive>, EspDrop> {
        let r = self.esp(now, esp, from, out);
        if let Err(reason) = r {
            self.stats.drops[reason as usize] += 1;
        }
        r
    }

    fn esp(
        &mut self,
        now: Instant,
        esp: &[u8],
        from: IpAddr,
        out: &mut EspBatch,
    ) -> Result<Option<Keepalive>, EspDrop> {
        if from != self.config.remote {
            return Err(EspDrop::SpoofedOuterSource);
        }
        let buf = out.push(EspDestination::Tun, esp.len());
        let opened = match self.inbound.open(esp, buf) {
            Ok(o) => (o.next_header, o.payload.len()),
            Err(e) => {
                out.pop(1);
                return Err(EspDrop::from_esp(e));
            }
        };
        // Authenticated from here: the peer is alive, whatever the inner packet turns out to be.
        let spi = wire::esp::Packet::new_unchecked(esp).spi();
        if self
            .reported
            .get(&spi)
            .is_none_or(|t| now.saturating_duration_since(*t) >= RECEIVED_REPORT_INTERVAL)
        {
            self.reported.insert(spi, now);
            self.events.push(EspEvent::EspReceived { spi });
        }
        let (next_header, len) = opened;
        out.truncate_last(len);
        if next_header == ip_proto::IPIP
            && let Some((_, packet)) = out.get(out.len() - 1)
            && packet.get(9) == Some(&KEEPALIVE_PROTOCOL)
            && let Some(keepalive) = Keepalive::parse(packet)
        {
            out.pop(1);
            return Ok(Some(keepalive));
        }
        let checked = self.check_opened(next_header, out);
        if checked.is_err() {
            out.pop(1);
        }
        checked.map(|()| None)
    }

    /// The inner packet just appended to `out`: of the family ESP announced, from an allowed
    /// source, to one of our subnets.
    fn check_opened(&mut self, next_header: u8, out: &mut EspBatch) -> Result<(), EspDrop> {
        let Some((_, packet)) = out.get(out.len() - 1) else {
            return Err(EspDrop::Malformed);
        };
        if next_header == NO_NEXT_HEADER {
            return Err(EspDrop::WrongNextHeader);
        }
        let family = Family::from_protocol(next_header).ok_or(EspDrop::WrongNextHeader)?;
        let inner = Inner::parse(packet, true)?;
        if inner.family != family {
            return Err(EspDrop::Malformed);
        }
        if !contains(&self.config.allowed_sources, inner.src) {
            return Err(EspDrop::InnerSourceNotAllowed);
        }
        if !contains(&self.config.local_subnets, inner.dst) {
            return Err(EspDrop::DestinationNotLocal);
        }
        let len = inner.len;
        out.truncate_last(len);
        if let Some(max) = self.mss(family) {
            if let Some(packet) = out.last_mut()
                && mss::clamp(packet, family, max)
            {
                self.stats.mss_clamped += 1;
            }
        }
        self.stats.rx_packets += 1;
        self.stats.rx_bytes += len as u64;
        Ok(())
    }

    fn mss(&self, family: Family) -> Option<u16> {
        let headers = match family {
            Family::V4 => 40,
            Family::V6 => 60,
        };
        match self.config.mss_clamp {
            MssClamp::Off => None,
            MssClamp::Fixed(mss) => Some(mss),
            MssClamp::Auto => Some(self.mtu().saturating_sub(headers)),
        }
    }

    /// An ICMP error telling the sender the tunnel MTU, for packets that may not be fragmented.
    fn too_big(&mut self, packet: &[u8], family: Family, out: &mut EspBatch) {
        let mtu = self.mtu();
        match family {
            Family::V4 => {
                let view = Ipv4Packet::new_unchecked(packet);
                let Some(source) = self.config.icmp_source_v4 else {
                    return;
                };
                if !view.dont_frag() || !icmp::may_answer_v4(packet) {
                    return;
                }
                self.ident = self.ident.wrapping_add(1);
                let buf = out.push(EspDestination::Local, icmp::frag_needed_len(packet));
                icmp::emit_frag_needed(source, self.ident, mtu, packet, buf);
            }
            Family::V6 => {
                let Some(source) = self.config.icmp_source_v6 else {
                    return;
                };
                if !icmp::may_answer_v6(packet) {
                    return;
                }
                let buf = out.push(EspDestination::Local, icmp::packet_too_big_len(packet));
                icmp::emit_packet_too_big(source, u32::from(mtu), packet, buf);
            }
        }
        self.stats.icmp_sent += 1;
    }
}

fn contains(nets: &[IpNet], addr: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(&addr))
}

/// The outer header in front of `esp_len` bytes of ESP. The DSCP and ECN fields follow the
/// inner packet (RFC 4301 §5.1.2.1, RFC 6040 normal mode), as the kernel's xfrm does.
fn write_outer(config: &EspTunnelConfig, ident: u16, tos: u8, buf: &mut [u8], esp_len: usize) {
    match (config.local, config.remote) {
        (IpAddr::V6(src), IpAddr::V6(dst)) => Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: ip_proto::ESP,
            payload_len: esp_len,
            hop_limit: config.hop_limit,
            traffic_class: tos,
            flow_label: 0,
        }
        .emit(&mut Ipv6Packet::new_unchecked(buf)),
        (IpAddr::V4(src), IpAddr::V4(dst)) => Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            protocol: ip_proto::ESP,
            payload_len: esp_len,
            ttl: config.hop_limit,
            dscp_ecn: tos,
            ident,
            // ESP packets are sized to the path; letting routers fragment hides PMTU problems.
            dont_frag: true,
        }
        .emit(&mut Ipv4Packet::new_unchecked(buf)),
        // Config of mixed families; control never produces it.
        _ => buf.fill(0),
    }
}

#[cfg(test)]
mod tests;
