//! What the packet thread counts beyond any one tunnel, for `v6gate status`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketStatus {
    /// ESP from addresses that are no configured peer, dropped before any SA lookup.
    pub esp_not_peer: u64,
}

impl PacketStatus {
    /// `None` when there is nothing to tell, so the status stays as short as before.
    pub fn nonzero(self) -> Option<Self> {
        (self != Self::default()).then_some(self)
    }
}

/// The section's lines, after the tunnels.
pub fn render(out: &mut String, status: Option<&PacketStatus>) {
    let Some(s) = status else {
        return;
    };
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "packets not of any tunnel: esp_not_peer {}",
        s.esp_not_peer
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_counts_that_happened_are_shown() {
        assert_eq!(PacketStatus::default().nonzero(), None);
        let s = PacketStatus { esp_not_peer: 4 }.nonzero();
        let mut out = String::new();
        render(&mut out, s.as_ref());
        assert!(out.contains("esp_not_peer 4"), "{out}");
        let mut quiet = String::new();
        render(&mut quiet, None);
        assert!(quiet.is_empty());
    }
}
