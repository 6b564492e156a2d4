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

use core::fmt;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use wire::{Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, ip_proto, ipv4, ipv6};

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

/// Why the ESP tunnel dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EspDrop {
    /// The inner packet does not parse, or the ESP packet is too short or misaligned.
    Malformed,
    /// The inner destination is not in the remote traffic selectors (`routes`).
    NotRouted,
    /// The inner source of an outgoing packet is not in `local_subnets`.
    SourceNotLocal,
    /// The inner source of an incoming packet is outside `allowed_sources`.
    InnerSourceNotAllowed,
    /// The inner destination of an incoming packet is not in `local_subnets`.
    DestinationNotLocal,
    /// Larger than the tunnel MTU and may not be fragmented; an ICMP error went back.
    TooBig,
    /// No outbound SA yet (IKE not up).
    NoSa,
    /// No inbound SA for the packet's SPI.
    UnknownSpi,
    /// Sequence number replayed or behind the window.
    Replay,
    /// Integrity check failed: forged, corrupted, or keys that do not match.
    AuthFailed,
    /// Padding inconsistent after authentication.
    BadPadding,
    /// The outer source is not the tunnel's remote.
    SpoofedOuterSource,
    /// Authenticated, but neither IPv4 nor IPv6 inside (or a dummy packet).
    WrongNextHeader,
    /// The outbound SA has used its 32-bit sequence space; the IKE shell was told to rekey.
    SequenceExhausted,
}

impl EspDrop {
    pub const ALL: [Self; 14] = [
        Self::Malformed,
        Self::NotRouted,
        Self::SourceNotLocal,
        Self::InnerSourceNotAllowed,
        Self::DestinationNotLocal,
        Self::TooBig,
        Self::NoSa,
        Self::UnknownSpi,
        Self::Replay,
        Self::AuthFailed,
        Self::BadPadding,
        Self::SpoofedOuterSource,
        Self::WrongNextHeader,
        Self::SequenceExhausted,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::NotRouted => "not_routed",
            Self::SourceNotLocal => "source_not_local",
            Self::InnerSourceNotAllowed => "inner_source_not_allowed",
            Self::DestinationNotLocal => "destination_not_local",
            Self::TooBig => "too_big",
            Self::NoSa => "no_sa",
            Self::UnknownSpi => "unknown_spi",
            Self::Replay => "replay",
            Self::AuthFailed => "auth_failed",
            Self::BadPadding => "bad_padding",
            Self::SpoofedOuterSource => "spoofed_outer_source",
            Self::WrongNextHeader => "wrong_next_header",
            Self::SequenceExhausted => "sequence_exhausted",
        }
    }

    fn from_esp(e: EspError) -> Self {
        match e {
            EspError::UnknownSpi(_) => Self::UnknownSpi,
            EspError::Replay => Self::Replay,
            EspError::Authentication => Self::AuthFailed,
            EspError::BadPadding => Self::BadPadding,
            EspError::SequenceExhausted => Self::SequenceExhausted,
            _ => Self::Malformed,
        }
    }
}

impl fmt::Display for EspDrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for EspDrop {}

/// Counters of one ESP tunnel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EspStats {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    drops: [u64; EspDrop::ALL.len()],
    pub mss_clamped: u64,
    pub icmp_sent: u64,
    pub keepalives_sent: u64,
    /// Moves of the traffic to another path by health (failovers and failbacks).
    pub failovers: u64,
}

impl EspStats {
    /// Adds `other`'s counters to these: a tunnel's totals over its paths.
    pub fn add(&mut self, other: &Self) {
        self.tx_packets += other.tx_packets;
        self.tx_bytes += other.tx_bytes;
        self.rx_packets += other.rx_packets;
        self.rx_bytes += other.rx_bytes;
        for (sum, n) in self.drops.iter_mut().zip(other.drops) {
            *sum += n;
        }
        self.mss_clamped += other.mss_clamped;
        self.icmp_sent += other.icmp_sent;
        self.keepalives_sent += other.keepalives_sent;
    }

    pub fn drops(&self, reason: EspDrop) -> u64 {
        self.drops[reason as usize]
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    pub fn iter_drops(&self) -> impl Iterator<Item = (EspDrop, u64)> + '_ {
        EspDrop::ALL.into_iter().map(|r| (r, self.drops(r)))
    }
}

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

impl From<crate::DropReason> for EspDrop {
    /// Inner parsing reports the shared reasons; every one it can return is "malformed".
    fn from(_: crate::DropReason) -> Self {
        Self::Malformed
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
mod tests {
    use super::*;
    use crate::esp::Suite;

    const A: &str = "2001:db8:a::2";
    const B: &str = "2001:db8:a::1";
    const KEY_AB: [u8; 20] = [0x11; 20];
    const KEY_BA: [u8; 20] = [0x22; 20];
    const GCM: Suite = Suite::AesGcm16 { key_bits: 128 };

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn config(local: &str, remote: &str, ours: &str, theirs: &str) -> EspTunnelConfig {
        EspTunnelConfig {
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            local_subnets: nets(&[ours]),
            routes: nets(&[theirs]),
            allowed_sources: nets(&[theirs]),
            mtu: 1400,
            mss_clamp: MssClamp::Auto,
            hop_limit: 64,
            icmp_source_v4: Some("203.0.113.1".parse().unwrap()),
            icmp_source_v6: None,
        }
    }

    /// Site A (203.0.113.0/24) and site B (198.51.100.0/24), each with the SA pair for `spi`
    /// (A -> B uses `spi`, B -> A `spi + 1`).
    fn pair() -> (EspTunnel, EspTunnel) {
        let mut a = EspTunnel::new(config(A, B, "203.0.113.0/24", "198.51.100.0/24"));
        let mut b = EspTunnel::new(config(B, A, "198.51.100.0/24", "203.0.113.0/24"));
        install(&mut a, &mut b, 0x100);
        (a, b)
    }

    fn install(a: &mut EspTunnel, b: &mut EspTunnel, spi: u32) {
        let sa = |spi, key: &[u8]| OutboundSa::new(spi, GCM, key, &[], false).unwrap();
        let rx = |spi, key: &[u8]| InboundSa::new(spi, GCM, key, &[], false).unwrap();
        a.install_outbound(sa(spi, &KEY_AB));
        b.install_inbound(rx(spi, &KEY_AB));
        b.install_outbound(sa(spi + 1, &KEY_BA));
        a.install_inbound(rx(spi + 1, &KEY_BA));
    }

    /// An IPv4 UDP packet of `len` bytes from `src` to `dst`, DF set.
    fn udp4(src: &str, dst: &str, len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        Ipv4Repr {
            src_addr: src.parse().unwrap(),
            dst_addr: dst.parse().unwrap(),
            protocol: ip_proto::UDP,
            payload_len: len - ipv4::HEADER_LEN,
            ttl: 63,
            dscp_ecn: 0,
            ident: 7,
            dont_frag: true,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut p[..]));
        for (i, b) in p[ipv4::HEADER_LEN..].iter_mut().enumerate() {
            *b = i as u8;
        }
        p
    }

    /// A TCP SYN announcing MSS 1460.
    fn syn4(src: &str, dst: &str) -> Vec<u8> {
        let mut p = udp4(src, dst, ipv4::HEADER_LEN + 24);
        let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
        ip.set_protocol(ip_proto::TCP);
        ip.fill_checksum();
        let tcp = [
            0x30, 0x39, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, 0x02, 0xff, 0xff, 0, 0, 0, 0, 2,
            4, 0x05, 0xb4,
        ];
        p[ipv4::HEADER_LEN..].copy_from_slice(&tcp);
        p
    }

    fn mss_of(packet: &[u8]) -> u16 {
        u16::from_be_bytes([packet[ipv4::HEADER_LEN + 22], packet[ipv4::HEADER_LEN + 23]])
    }

    /// Seals `packet` at `from` and returns the one thing it produced.
    fn seal(from: &mut EspTunnel, packet: &[u8]) -> (EspDestination, Vec<u8>) {
        let mut out = EspBatch::new(2048);
        let mut p = packet.to_vec();
        from.handle_inner(Instant::now(), &mut p, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        let (d, bytes) = out.get(0).unwrap();
        (d, bytes.to_vec())
    }

    /// The ESP part of what `seal` produced.
    fn esp_of((d, bytes): &(EspDestination, Vec<u8>)) -> Vec<u8> {
        match d {
            EspDestination::Raw { .. } => bytes[ipv6::HEADER_LEN..].to_vec(),
            EspDestination::Udp { .. } => bytes.clone(),
            EspDestination::Tun | EspDestination::Local => panic!("sealed to the host side"),
        }
    }

    fn open(to: &mut EspTunnel, esp: &[u8]) -> Result<Vec<u8>, EspDrop> {
        let mut out = EspBatch::new(2048);
        let from = to.config.remote;
        to.handle_esp(Instant::now(), esp, from, &mut out)?;
        assert_eq!(out.len(), 1);
        let (d, bytes) = out.get(0).unwrap();
        assert_eq!(d, EspDestination::Tun);
        Ok(bytes.to_vec())
    }

    #[test]
    fn raw_round_trip_over_ipv6() {
        let (mut a, mut b) = pair();
        let packet = udp4("203.0.113.5", "198.51.100.9", 300);
        let sealed = seal(&mut a, &packet);
        assert_eq!(
            sealed.0,
            EspDestination::Raw {
                remote: B.parse().unwrap()
            }
        );
        let outer = Ipv6Packet::new_checked(&sealed.1[..]).unwrap();
        assert_eq!(outer.next_header(), ip_proto::ESP);
        assert_eq!(outer.src_addr(), A.parse::<Ipv6Addr>().unwrap());
        assert_eq!(outer.dst_addr(), B.parse::<Ipv6Addr>().unwrap());
        assert_eq!(outer.hop_limit(), 64);
        assert_eq!(
            usize::from(outer.payload_len()),
            sealed.1.len() - ipv6::HEADER_LEN
        );
        let esp = esp_of(&sealed);
        assert_eq!(&esp[..4], &0x100u32.to_be_bytes());
        assert_ne!(
            &esp[24..64],
            &packet[16..56],
            "the payload is not encrypted"
        );
        assert_eq!(open(&mut b, &esp).unwrap(), packet);
        assert_eq!(b.poll_event(), Some(EspEvent::EspReceived { spi: 0x100 }));
        assert_eq!(b.poll_event(), None);
        assert_eq!((a.stats().tx_packets, a.stats().tx_bytes), (1, 300));
        assert_eq!((b.stats().rx_packets, b.stats().rx_bytes), (1, 300));
        // And back.
        let back = udp4("198.51.100.9", "203.0.113.5", 100);
        let esp = esp_of(&seal(&mut b, &back));
        assert_eq!(open(&mut a, &esp).unwrap(), back);
    }

    #[test]
    fn raw_round_trip_over_ipv4_sets_df_and_checksum() {
        let mut a = EspTunnel::new(config(
            "198.18.0.1",
            "198.18.0.2",
            "203.0.113.0/24",
            "198.51.100.0/24",
        ));
        let mut b = EspTunnel::new(config(
            "198.18.0.2",
            "198.18.0.1",
            "198.51.100.0/24",
            "203.0.113.0/24",
        ));
        install(&mut a, &mut b, 0x200);
        let packet = udp4("203.0.113.5", "198.51.100.9", 64);
        let (d, bytes) = seal(&mut a, &packet);
        assert_eq!(
            d,
            EspDestination::Raw {
                remote: "198.18.0.2".parse().unwrap()
            }
        );
        let outer = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(outer.verify_checksum());
        assert!(outer.dont_frag());
        assert_eq!(outer.protocol(), ip_proto::ESP);
        assert_eq!(usize::from(outer.total_len()), bytes.len());
        assert_eq!(open(&mut b, &bytes[ipv4::HEADER_LEN..]).unwrap(), packet);
    }

    #[test]
    fn udp_encapsulation_emits_bare_esp_to_the_peer_port() {
        let (mut a, mut b) = pair();
        a.set_udp_encap(Instant::now(), Some(4501));
        let packet = udp4("203.0.113.5", "198.51.100.9", 80);
        let sealed = seal(&mut a, &packet);
        assert_eq!(
            sealed.0,
            EspDestination::Udp {
                remote: SocketAddr::new(B.parse().unwrap(), 4501)
            }
        );
        assert_eq!(classify_udp(&sealed.1), UdpKind::Esp);
        assert_eq!(open(&mut b, &sealed.1).unwrap(), packet);
    }

    #[test]
    fn a_run_of_sealed_packets_spans_one_slice_in_order() {
        let (mut a, mut b) = pair();
        a.set_udp_encap(Instant::now(), Some(4500));
        let mut out = EspBatch::new(8192);
        let packets: Vec<Vec<u8>> = [1200, 1200, 1200, 300]
            .iter()
            .map(|&len| udp4("203.0.113.5", "198.51.100.9", len))
            .collect();
        for p in &packets {
            a.handle_inner(Instant::now(), &mut p.clone(), &mut out)
                .unwrap();
        }
        assert_eq!(out.len(), 4);
        let whole = out.span(0..4).unwrap();
        let sizes: Vec<usize> = out.iter().map(|(_, p)| p.len()).collect();
        assert_eq!(whole.len(), sizes.iter().sum::<usize>());
        // Same inner size, same ESP size: the run can leave as one UDP train.
        assert_eq!(sizes[0], sizes[1]);
        let mut rest = whole;
        for (p, &size) in packets.iter().zip(&sizes) {
            let (esp, tail) = rest.split_at(size);
            assert_eq!(&open(&mut b, esp).unwrap(), p);
            rest = tail;
        }
        assert_eq!(out.span(1..3).unwrap().len(), sizes[1] + sizes[2]);
        assert_eq!(out.span(2..2), None);
        assert_eq!(out.span(3..5), None);
    }

    const ROUTER6: &str = "2001:db8:ff::1";

    /// A Packet Too Big from a router to A, quoting `invoking` as far as it fits.
    fn ptb(mtu: u32, invoking: &[u8]) -> Vec<u8> {
        let quote = &invoking[..invoking.len().min(1232)];
        let repr = wire::Icmpv6Repr::PacketTooBig { mtu, data: quote };
        let mut buf = vec![0xA5; repr.buffer_len()];
        repr.emit(
            &ROUTER6.parse().unwrap(),
            &A.parse().unwrap(),
            &mut wire::Icmpv6Packet::new_unchecked(&mut buf[..]),
        );
        buf
    }

    /// The whole IPv6 packet a UDP-encapsulated seal would leave as (the kernel adds these
    /// headers; a router quotes them).
    fn as_udp_on_the_wire(esp: &[u8], src_port: u16) -> Vec<u8> {
        let mut udp = Vec::new();
        udp.extend_from_slice(&src_port.to_be_bytes());
        udp.extend_from_slice(&4500u16.to_be_bytes());
        udp.extend_from_slice(&((esp.len() + 8) as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(esp);
        let repr = Ipv6Repr {
            src_addr: A.parse().unwrap(),
            dst_addr: B.parse().unwrap(),
            next_header: ip_proto::UDP,
            payload_len: udp.len(),
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        };
        let mut packet = vec![0u8; ipv6::HEADER_LEN + udp.len()];
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut packet[..]));
        packet[ipv6::HEADER_LEN..].copy_from_slice(&udp);
        packet
    }

    #[test]
    fn packet_too_big_about_our_esp_lowers_the_inner_mtu() {
        let (mut a, _b) = pair();
        let t0 = Instant::now();
        let (_, sent) = seal(&mut a, &udp4("203.0.113.5", "198.51.100.9", 1300));
        let report = super::super::too_big_v6(
            ROUTER6.parse().unwrap(),
            A.parse().unwrap(),
            &ptb(1400, &sent),
        )
        .expect("a PTB about our raw ESP");
        assert_eq!(
            (report.local, report.remote, report.link_mtu),
            (A.parse().unwrap(), B.parse().unwrap(), 1400)
        );
        // 1400 - IPv6 40 - UDP 8 = 1352 of room; GCM: 1352 - 8 - 8 - 16 = 1320, aligned to 4,
        // less the 2-byte trailer.
        assert_eq!(a.lower_path_mtu(t0, report.link_mtu), Some(1318));
        assert_eq!(a.mtu(), 1318);
        assert_eq!(a.lower_path_mtu(t0, 1450), None, "never raised by a report");
        // A DF packet over the new MTU goes back to its sender with 1318 in it.
        let mut out = EspBatch::new(4096);
        let mut big = udp4("203.0.113.5", "198.51.100.9", 1319);
        assert_eq!(a.handle_inner(t0, &mut big, &mut out), Err(EspDrop::TooBig));
        let (d, icmp) = out.get(0).unwrap();
        assert_eq!(d, EspDestination::Local);
        assert_eq!(
            wire::Icmpv4Packet::new_checked(&icmp[ipv4::HEADER_LEN..])
                .unwrap()
                .next_hop_mtu(),
            1318
        );
        // It ages out.
        assert_eq!(a.poll_timeout(), Some(t0 + crate::PMTU_EXPIRY));
        assert!(a.expire_path_mtu(t0 + crate::PMTU_EXPIRY));
        assert_eq!(a.mtu(), 1400);
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn only_reports_about_our_esp_count() {
        let (mut a, _b) = pair();
        let router: Ipv6Addr = ROUTER6.parse().unwrap();
        let me: Ipv6Addr = A.parse().unwrap();
        let (_, raw) = seal(&mut a, &udp4("203.0.113.5", "198.51.100.9", 200));
        let esp = &raw[ipv6::HEADER_LEN..];
        // ESP in UDP from our 4500: ours; from another port: someone else's UDP.
        let ours = as_udp_on_the_wire(esp, 4500);
        assert!(super::super::too_big_v6(router, me, &ptb(1300, &ours)).is_some());
        let theirs = as_udp_on_the_wire(esp, 5353);
        assert_eq!(
            super::super::too_big_v6(router, me, &ptb(1300, &theirs)),
            None
        );
        // Below 1280 reads as 1280.
        let low = super::super::too_big_v6(router, me, &ptb(1000, &raw)).unwrap();
        assert_eq!(low.link_mtu, 1280);
        // A broken checksum, another ICMPv6 type, a quote too short for a header.
        let mut corrupt = ptb(1300, &raw);
        corrupt[9] ^= 1;
        assert_eq!(super::super::too_big_v6(router, me, &corrupt), None);
        let mut other = ptb(1300, &raw);
        other[0] = 1;
        assert_eq!(super::super::too_big_v6(router, me, &other), None);
        assert_eq!(
            super::super::too_big_v6(router, me, &ptb(1300, &raw[..30])),
            None
        );
        assert_eq!(super::super::too_big_v6(router, me, &[2, 0]), None);
    }

    #[test]
    fn fragmentation_needed_about_esp_over_ipv4() {
        let quoted = {
            let mut p = udp4("198.18.1.1", "198.18.2.1", 60);
            let mut view = Ipv4Packet::new_unchecked(&mut p[..]);
            view.set_protocol(ip_proto::ESP);
            view.fill_checksum();
            p
        };
        let report = |mtu: u16, quote: &[u8]| {
            let repr = wire::Icmpv4Repr::DstUnreachable {
                code: wire::icmpv4::CODE_FRAG_NEEDED,
                next_hop_mtu: mtu,
                data: &quote[..28],
            };
            let mut icmp = vec![0u8; repr.buffer_len()];
            repr.emit(&mut wire::Icmpv4Packet::new_unchecked(&mut icmp[..]));
            let mut datagram = udp4("198.18.9.1", "198.18.1.1", 20 + icmp.len());
            let mut view = Ipv4Packet::new_unchecked(&mut datagram[..]);
            view.set_protocol(ip_proto::ICMP);
            view.fill_checksum();
            datagram[ipv4::HEADER_LEN..].copy_from_slice(&icmp);
            super::super::too_big_v4(&datagram)
        };
        let found = report(1454, &quoted).expect("a frag-needed about our ESP");
        assert_eq!(
            (found.local, found.remote, found.link_mtu),
            (
                "198.18.1.1".parse().unwrap(),
                "198.18.2.1".parse().unwrap(),
                1454
            )
        );
        assert_eq!(report(0, &quoted), None, "no next-hop MTU");
        let not_esp = udp4("198.18.1.1", "198.18.2.1", 60);
        assert_eq!(report(1454, &not_esp), None);
    }

    #[test]
    fn classify_udp_follows_rfc_3948() {
        assert_eq!(classify_udp(&[0xff]), UdpKind::Keepalive);
        assert_eq!(classify_udp(&[0, 0, 0, 0, 1, 2]), UdpKind::Ike);
        assert_eq!(classify_udp(&[0, 0, 1, 0, 0, 0, 0, 1]), UdpKind::Esp);
        assert_eq!(classify_udp(&[1, 2, 3]), UdpKind::Malformed);
        assert_eq!(classify_udp(&[]), UdpKind::Malformed);
    }

    #[test]
    fn replayed_packet_is_dropped_and_counted() {
        let (mut a, mut b) = pair();
        let esp = esp_of(&seal(&mut a, &udp4("203.0.113.5", "198.51.100.9", 60)));
        open(&mut b, &esp).unwrap();
        assert_eq!(open(&mut b, &esp), Err(EspDrop::Replay));
        assert_eq!(b.stats().drops(EspDrop::Replay), 1);
        assert_eq!(b.stats().rx_packets, 1);
    }

    #[test]
    fn unknown_spi_forgery_and_spoofed_source_are_dropped() {
        let (mut a, mut b) = pair();
        let mut esp = esp_of(&seal(&mut a, &udp4("203.0.113.5", "198.51.100.9", 60)));
        let mut out = EspBatch::new(256);
        let spoof: IpAddr = "2001:db8:666::1".parse().unwrap();
        let r = b.handle_esp(Instant::now(), &esp, spoof, &mut out);
        assert_eq!(r, Err(EspDrop::SpoofedOuterSource));
        esp[20] ^= 1;
        assert_eq!(open(&mut b, &esp), Err(EspDrop::AuthFailed));
        esp[..4].copy_from_slice(&0x999u32.to_be_bytes());
        assert_eq!(open(&mut b, &esp), Err(EspDrop::UnknownSpi));
        assert_eq!(open(&mut b, &esp[..6]), Err(EspDrop::Malformed));
        assert!(out.is_empty(), "nothing half-written stays in the batch");
        // None of them proves the peer alive.
        assert_eq!(b.poll_event(), None);
        assert_eq!(b.stats().total_drops(), 4);
    }

    #[test]
    fn outbound_filters_follow_the_traffic_selectors() {
        let (mut a, _) = pair();
        let mut out = EspBatch::new(2048);
        let now = Instant::now();
        let mut stray = udp4("203.0.113.5", "198.18.9.9", 60);
        assert_eq!(
            a.handle_inner(now, &mut stray, &mut out),
            Err(EspDrop::NotRouted)
        );
        let mut foreign = udp4("198.18.7.7", "198.51.100.9", 60);
        assert_eq!(
            a.handle_inner(now, &mut foreign, &mut out),
            Err(EspDrop::SourceNotLocal)
        );
        let mut junk = vec![0x45, 0, 0];
        assert_eq!(
            a.handle_inner(now, &mut junk, &mut out),
            Err(EspDrop::Malformed)
        );
        assert!(out.is_empty());
        assert_eq!(a.stats().drops(EspDrop::NotRouted), 1);
    }

    #[test]
    fn inbound_filters_follow_the_traffic_selectors() {
        let (mut a, mut b) = pair();
        // A lets more through than B accepts: B must still refuse it.
        a.config.local_subnets = nets(&["0.0.0.0/0"]);
        a.config.routes = nets(&["0.0.0.0/0"]);
        let esp = esp_of(&seal(&mut a, &udp4("198.18.7.7", "198.51.100.9", 60)));
        assert_eq!(open(&mut b, &esp), Err(EspDrop::InnerSourceNotAllowed));
        let esp = esp_of(&seal(&mut a, &udp4("203.0.113.5", "198.18.9.9", 60)));
        assert_eq!(open(&mut b, &esp), Err(EspDrop::DestinationNotLocal));
        // Genuine ESP from the peer all the same.
        assert_eq!(b.poll_event(), Some(EspEvent::EspReceived { spi: 0x100 }));
    }

    #[test]
    fn syn_is_clamped_to_the_tunnel_mtu() {
        let (mut a, mut b) = pair();
        let syn = syn4("203.0.113.5", "198.51.100.9");
        let esp = esp_of(&seal(&mut a, &syn));
        let got = open(&mut b, &esp).unwrap();
        assert_eq!(mss_of(&got), 1400 - 40);
        assert_eq!(a.stats().mss_clamped, 1);
        a.config.mss_clamp = MssClamp::Off;
        let esp = esp_of(&seal(&mut a, &syn));
        b.config.mss_clamp = MssClamp::Fixed(1200);
        assert_eq!(mss_of(&open(&mut b, &esp).unwrap()), 1200);
    }

    #[test]
    fn too_big_gets_an_icmp_error_back() {
        let (mut a, _) = pair();
        let mut out = EspBatch::new(4096);
        let mut big = udp4("203.0.113.5", "198.51.100.9", 1401);
        let r = a.handle_inner(Instant::now(), &mut big, &mut out);
        assert_eq!(r, Err(EspDrop::TooBig));
        let (d, icmp) = out.get(0).unwrap();
        assert_eq!(d, EspDestination::Local);
        let ip = Ipv4Packet::new_checked(icmp).unwrap();
        assert_eq!(ip.protocol(), ip_proto::ICMP);
        assert_eq!(ip.dst_addr(), "203.0.113.5".parse::<Ipv4Addr>().unwrap());
        // Type 3 code 4, next-hop MTU in bytes 6..8 of the ICMP header.
        let body = &icmp[ipv4::HEADER_LEN..];
        assert_eq!((body[0], body[1]), (3, 4));
        assert_eq!(u16::from_be_bytes([body[6], body[7]]), 1400);
        assert_eq!(a.stats().icmp_sent, 1);
        // Exactly the MTU still goes.
        let mut fits = udp4("203.0.113.5", "198.51.100.9", 1400);
        out.clear();
        a.handle_inner(Instant::now(), &mut fits, &mut out).unwrap();
    }

    #[test]
    fn nothing_is_sent_without_an_sa() {
        let mut a = EspTunnel::new(config(A, B, "203.0.113.0/24", "198.51.100.0/24"));
        let mut out = EspBatch::new(2048);
        let mut p = udp4("203.0.113.5", "198.51.100.9", 60);
        assert_eq!(
            a.handle_inner(Instant::now(), &mut p, &mut out),
            Err(EspDrop::NoSa)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn rekey_is_make_before_break() {
        let (mut a, mut b) = pair();
        let p = |n: usize| udp4("203.0.113.5", "198.51.100.9", 60 + n);
        // In flight on the old SA while the new one comes up.
        let old = esp_of(&seal(&mut a, &p(0)));
        install(&mut a, &mut b, 0x300);
        assert_eq!(a.active_outbound(), Some(0x300));
        let new = esp_of(&seal(&mut a, &p(1)));
        assert_eq!(&new[..4], &0x300u32.to_be_bytes());
        // The new one arrives first; the old one is still opened.
        assert_eq!(open(&mut b, &new).unwrap(), p(1));
        assert_eq!(open(&mut b, &old).unwrap(), p(0));
        assert_eq!(b.inbound_count(), 2);
        // Once IKE deletes the old CHILD SA, its packets are unknown.
        let late = {
            let mut c = EspTunnel::new(a.config.clone());
            c.install_outbound(OutboundSa::new(0x100, GCM, &KEY_AB, &[], false).unwrap());
            c.outbound[0].set_seq(5);
            esp_of(&seal(&mut c, &p(2)))
        };
        b.remove_sa(0x100, 0x101);
        assert_eq!(open(&mut b, &late), Err(EspDrop::UnknownSpi));
        assert_eq!(b.active_outbound(), Some(0x301));
        // Removing the newest outbound SA falls back to the one before.
        a.remove_sa(0x301, 0x300);
        assert_eq!(a.active_outbound(), Some(0x100));
        a.clear_sas();
        assert_eq!((a.active_outbound(), a.inbound_count()), (None, 0));
    }

    #[test]
    fn liveness_is_reported_once_a_second_per_sa() {
        let (mut a, mut b) = pair();
        let t0 = Instant::now();
        let mut out = EspBatch::new(8192);
        let from = b.config.remote;
        for ms in [0u64, 10, 500, 999, 1000, 1500, 2100] {
            let esp = esp_of(&seal(&mut a, &udp4("203.0.113.5", "198.51.100.9", 60)));
            b.handle_esp(t0 + Duration::from_millis(ms), &esp, from, &mut out)
                .unwrap();
        }
        let mut n = 0;
        while let Some(e) = b.poll_event() {
            assert_eq!(e, EspEvent::EspReceived { spi: 0x100 });
            n += 1;
        }
        assert_eq!(n, 3, "at 0, 1000 and 2100 ms");
    }

    #[test]
    fn nat_keepalives_fill_silence_only() {
        let (mut a, _) = pair();
        let t0 = Instant::now();
        let mut out = EspBatch::new(2048);
        assert_eq!(a.poll_timeout(), None, "no keepalives for raw ESP");
        a.set_udp_encap(t0, Some(NAT_T_PORT));
        assert_eq!(a.poll_timeout(), Some(t0 + KEEPALIVE_INTERVAL));
        a.handle_timeout(t0 + Duration::from_secs(19), &mut out);
        assert!(out.is_empty());
        a.handle_timeout(t0 + KEEPALIVE_INTERVAL, &mut out);
        let remote = SocketAddr::new(B.parse().unwrap(), NAT_T_PORT);
        assert_eq!(
            out.get(0),
            Some((EspDestination::Udp { remote }, &KEEPALIVE[..]))
        );
        // Traffic pushes the next keepalive back.
        let t1 = t0 + Duration::from_secs(30);
        let mut p = udp4("203.0.113.5", "198.51.100.9", 60);
        out.clear();
        a.handle_inner(t1, &mut p, &mut out).unwrap();
        assert_eq!(a.poll_timeout(), Some(t1 + KEEPALIVE_INTERVAL));
        a.handle_timeout(t0 + Duration::from_secs(40), &mut out);
        assert_eq!(out.len(), 1, "only the data packet");
        assert_eq!(a.stats().keepalives_sent, 1);
        a.set_udp_encap(t1, None);
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn drop_names_are_unique() {
        let mut names: Vec<&str> = EspDrop::ALL.iter().map(|d| d.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EspDrop::ALL.len());
        for (i, d) in EspDrop::ALL.iter().enumerate() {
            assert_eq!(*d as usize, i);
        }
    }
}
