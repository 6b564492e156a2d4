//! Receive slots for batched underlay reads, shared by the loop and the kinds that read
//! their own sockets.

use std::io::IoSliceMut;

use sys::raw::BATCH_SIZE;

/// Room for one datagram in a receive batch: a raw IPv6 socket hands over at most a 65,535-byte
/// payload, a raw IPv4 socket at most a 65,535-byte datagram (both can be GRO-merged trains).
const RX_SLOT: usize = 64 * 1024;

/// Underlay packets taken in before what they produced is sent: enough for the coalescer to
/// merge a burst of one flow, few enough that the batch stays small and latency low.
pub(super) const RX_BURST: usize = 32;

/// [`BATCH_SIZE`] receive slots of [`RX_SLOT`] bytes, allocated once.
pub(super) struct RxBuffers {
    storage: Vec<u8>,
}

impl RxBuffers {
    pub(super) fn new() -> Self {
        Self {
            storage: vec![0; BATCH_SIZE * RX_SLOT],
        }
    }

    pub(super) fn slices(&mut self) -> Vec<IoSliceMut<'_>> {
        self.storage
            .chunks_mut(RX_SLOT)
            .map(IoSliceMut::new)
            .collect()
    }

    pub(super) fn slot(&mut self, index: usize, len: usize) -> &mut [u8] {
        let start = index * RX_SLOT;
        &mut self.storage[start..start + len.min(RX_SLOT)]
    }
}
