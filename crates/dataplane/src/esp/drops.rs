//! What an ESP tunnel counts: its packets, bytes and drops by reason.

use core::fmt;

use super::EspError;

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

    pub(super) fn from_esp(e: EspError) -> Self {
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
    pub(super) drops: [u64; EspDrop::ALL.len()],
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

impl From<crate::DropReason> for EspDrop {
    /// Inner parsing reports the shared reasons; every one it can return is "malformed".
    fn from(_: crate::DropReason) -> Self {
        Self::Malformed
    }
}
