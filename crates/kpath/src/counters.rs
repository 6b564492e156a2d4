//! The programs' counters, summed over CPUs.

use dataplane::DropReason;

/// Indices of the `counters` map (`enum counter` in `bpf/tunnel.bpf.c`).
pub(crate) const RX_PACKETS: u32 = 0;
pub(crate) const RX_BYTES: u32 = 1;
pub(crate) const TX_PACKETS: u32 = 2;
pub(crate) const TX_BYTES: u32 = 3;
pub(crate) const PUNTED: u32 = 4;
pub(crate) const GSO_TX: u32 = 5;
pub(crate) const GSO_RX: u32 = 6;
pub(crate) const ADJUST_FAILED: u32 = 7;
/// Drop reasons follow, in the order of [`DropReason::ALL`].
pub(crate) const DROP_BASE: u32 = 8;
pub(crate) const COUNTERS: u32 = DROP_BASE + DropReason::ALL.len() as u32;

/// Per path, in the `path_counters` map: rx packets, rx bytes, tx packets, tx bytes.
pub(crate) const PER_PATH: u32 = 4;

/// One tunnel's traffic on the kernel path. Packets count what crossed the wire: a GSO
/// super-packet counts as its segments; bytes are inner bytes, as the userspace core counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Left to the stack and the userspace core: probes, outer fragments, IPv4 options,
    /// extension headers other than the encapsulation limit.
    pub punted: u64,
    /// Super-packets encapsulated / decapsulated whole.
    pub gso_tx: u64,
    pub gso_rx: u64,
    /// The kernel refused to resize a packet (dropped).
    pub adjust_failed: u64,
    /// Drops by reason, in the order of [`DropReason::ALL`].
    pub drops: [u64; DropReason::ALL.len()],
}

impl Counters {
    pub(crate) fn from_slots(slots: &[u64]) -> Self {
        let at = |i: u32| slots.get(i as usize).copied().unwrap_or(0);
        let mut drops = [0; DropReason::ALL.len()];
        for (i, drop) in drops.iter_mut().enumerate() {
            *drop = at(DROP_BASE + i as u32);
        }
        Self {
            rx_packets: at(RX_PACKETS),
            rx_bytes: at(RX_BYTES),
            tx_packets: at(TX_PACKETS),
            tx_bytes: at(TX_BYTES),
            punted: at(PUNTED),
            gso_tx: at(GSO_TX),
            gso_rx: at(GSO_RX),
            adjust_failed: at(ADJUST_FAILED),
            drops,
        }
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.drops[i])
    }

    /// Drops of every reason together.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// One path's share of the traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

impl PathCounters {
    pub(crate) fn from_slots(slots: [u64; PER_PATH as usize]) -> Self {
        let [rx_packets, rx_bytes, tx_packets, tx_bytes] = slots;
        Self {
            rx_packets,
            rx_bytes,
            tx_packets,
            tx_bytes,
        }
    }
}
