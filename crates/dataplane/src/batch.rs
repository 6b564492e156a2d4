//! The output arena the cores write packets into, one for every kind of tunnel: only where
//! a packet goes differs ([`Destination`] for RFC 2473 tunnels,
//! [`EspDestination`](crate::esp::EspDestination) for ESP).

use core::ops::Range;
use std::net::IpAddr;

use crate::{PathId, TunnelId};

/// Where a packet in a [`Batch`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    /// A complete outer packet, header included, to send to `remote`: IPv6
    /// (header, options, inner packet) for a raw socket with `IPV6_HDRINCL`
    /// when `remote` is IPv6, IPv4 for a raw socket with `IP_HDRINCL` when it
    /// is IPv4.
    Underlay { remote: IpAddr },
    /// An inner packet to write to this tunnel's TUN device.
    Tun(TunnelId),
    /// An inner packet to write to the TUN device of this path of the tunnel
    /// ([`TunnelConfig::device_per_path`](crate::TunnelConfig::device_per_path)).
    TunPath(TunnelId, PathId),
    /// A whole IP packet the gateway itself originates towards an inner host (an ICMP error
    /// about a packet it could not send on): to be sent through the host's own IP stack (a
    /// raw socket with `IP_HDRINCL`/`IPV6_HDRINCL`), which routes it to the host's LAN. Not
    /// into a TUN device: the kernel would see one of its own addresses arrive from outside
    /// and drop it as a martian, or fail reverse-path filtering on an address-less device.
    Local,
}

#[derive(Debug, Clone)]
struct Entry<D> {
    destination: D,
    bytes: Range<usize>,
}

/// Packets produced by a core, back to back in one buffer, each with where it goes (`D`).
///
/// The core only appends; the shell sends everything and calls [`clear`](Self::clear).
/// Both vectors keep their capacity across `clear`, so once a batch has held its
/// largest burst no packet allocates.
#[derive(Debug, Clone)]
pub struct Batch<D = Destination> {
    bytes: Vec<u8>,
    entries: Vec<Entry<D>>,
}

impl<D> Default for Batch<D> {
    fn default() -> Self {
        Self {
            bytes: Vec::new(),
            entries: Vec::new(),
        }
    }
}

impl<D: Copy> Batch<D> {
    /// Room for `capacity_bytes` of packets before the first reallocation.
    pub fn new(capacity_bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(capacity_bytes),
            // 64 bytes is the smallest outer packet worth counting on.
            entries: Vec::with_capacity(capacity_bytes / 64 + 1),
        }
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.entries.clear();
    }

    /// Number of packets.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes over all packets.
    pub fn total_bytes(&self) -> usize {
        self.bytes.len()
    }

    pub fn get(&self, index: usize) -> Option<(D, &[u8])> {
        let entry = self.entries.get(index)?;
        Some((entry.destination, &self.bytes[entry.bytes.clone()]))
    }

    pub fn iter(&self) -> Iter<'_, D> {
        Iter {
            batch: self,
            next: 0,
        }
    }

    /// Packets `entries` (by index) as one slice: the batch keeps packets back to back, so a
    /// run of them can leave in one `UDP_SEGMENT` send without being copied. `None` when the
    /// range is empty or past the end.
    pub fn span(&self, entries: Range<usize>) -> Option<&[u8]> {
        if entries.is_empty() {
            return None;
        }
        let first = self.entries.get(entries.start)?;
        let last = self.entries.get(entries.end.checked_sub(1)?)?;
        self.bytes.get(first.bytes.start..last.bytes.end)
    }

    /// Appends a zeroed packet of `len` bytes and hands it out to be filled.
    pub(crate) fn push(&mut self, destination: D, len: usize) -> &mut [u8] {
        let start = self.bytes.len();
        self.bytes.resize(start + len, 0);
        self.entries.push(Entry {
            destination,
            bytes: start..start + len,
        });
        &mut self.bytes[start..]
    }

    /// The last packet, to be changed in place.
    pub(crate) fn last_mut(&mut self) -> Option<&mut [u8]> {
        let range = self.entries.last()?.bytes.clone();
        Some(&mut self.bytes[range])
    }

    /// Shortens the last packet to `len` bytes (an opened ESP packet is shorter than its
    /// ciphertext, which is all the room it could be given up front).
    pub(crate) fn truncate_last(&mut self, len: usize) {
        if let Some(entry) = self.entries.last_mut() {
            entry.bytes.end = entry.bytes.start + len.min(entry.bytes.len());
            self.bytes.truncate(entry.bytes.end);
        }
    }

    /// Removes the last `count` packets, undoing a write that failed half-way.
    pub(crate) fn pop(&mut self, count: usize) {
        let keep = self.entries.len().saturating_sub(count);
        self.entries.truncate(keep);
        let end = self.entries.last().map_or(0, |e| e.bytes.end);
        self.bytes.truncate(end);
    }
}

/// Iterator over the packets of a [`Batch`], in the order they were produced.
#[derive(Debug, Clone)]
pub struct Iter<'a, D = Destination> {
    batch: &'a Batch<D>,
    next: usize,
}

impl<'a, D: Copy> Iterator for Iter<'a, D> {
    type Item = (D, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.batch.get(self.next)?;
        self.next += 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.batch.len() - self.next;
        (left, Some(left))
    }
}

impl<D: Copy> ExactSizeIterator for Iter<'_, D> {}

impl<'a, D: Copy> IntoIterator for &'a Batch<D> {
    type Item = (D, &'a [u8]);
    type IntoIter = Iter<'a, D>;

    fn into_iter(self) -> Iter<'a, D> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TUN: Destination = Destination::Tun(TunnelId(1));
    const UNDERLAY: Destination = Destination::Underlay {
        remote: IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
    };

    #[test]
    fn packets_come_back_in_order_with_their_destinations() {
        let mut batch = Batch::new(256);
        batch.push(TUN, 3).copy_from_slice(&[1, 2, 3]);
        batch.push(UNDERLAY, 2).copy_from_slice(&[4, 5]);
        let got: Vec<_> = batch.iter().map(|(d, b)| (d, b.to_vec())).collect();
        assert_eq!(got, vec![(TUN, vec![1, 2, 3]), (UNDERLAY, vec![4, 5])]);
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.total_bytes(), 5);
        assert_eq!(batch.iter().len(), 2);
    }

    #[test]
    fn clear_keeps_the_allocation() {
        let mut batch = Batch::new(16);
        batch.push(TUN, 1000);
        let capacity = batch.bytes.capacity();
        batch.clear();
        assert!(batch.is_empty());
        assert_eq!(batch.total_bytes(), 0);
        batch.push(TUN, 1000);
        assert_eq!(batch.bytes.capacity(), capacity);
    }

    #[test]
    fn push_zeroes_reused_bytes() {
        let mut batch = Batch::new(16);
        batch.push(TUN, 4).fill(0xA5);
        batch.clear();
        assert_eq!(batch.push(TUN, 4), &[0, 0, 0, 0]);
    }

    #[test]
    fn pop_undoes_writes() {
        let mut batch = Batch::new(16);
        batch.push(TUN, 2).copy_from_slice(&[9, 9]);
        batch.push(UNDERLAY, 8).fill(7);
        batch.push(TUN, 4);
        batch.pop(2);
        assert_eq!(batch.len(), 1);
        assert_eq!(batch.total_bytes(), 2);
        assert_eq!(batch.get(0), Some((TUN, &[9u8, 9][..])));
        batch.pop(5);
        assert!(batch.is_empty());
        assert_eq!(batch.total_bytes(), 0);
    }
}
