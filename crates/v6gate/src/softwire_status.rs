//! The `softwires` section of `status`: per MAP-E or DS-Lite tunnel, whether it runs, the
//! MAP-E calculation it runs with and how much of its port set the NAPT uses.
//!
//! Ports in use are the distinct numbers of the set that conntrack entries whose reply goes to
//! the shared address hold as translated port (TCP, UDP) or ICMP identifier, whatever the
//! protocol, so never more than the set.
//!
//! Exhaustion is the network namespace's conntrack `insert_failed`, the same number for every
//! softwire. When the range a new flow is sent to has no free port towards its destination,
//! nf_nat still translates it to a port of the range, one that is taken; the entry then clashes
//! when conntrack confirms it, after the last netfilter hook, and the packet is dropped and
//! counted there (a local sender gets `EPERM`). No nftables chain sees that drop and the kernel
//! keeps the count per namespace only, so a per-tunnel count does not exist. The number also
//! counts clashes that are not the NAPT's (another zone's masquerade, racing UDP packets that
//! clash resolution could not merge), and it counts packets, not flows: each new packet of a
//! refused flow is refused again.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

/// One softwire's status.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SoftwireStatus {
    pub name: String,
    /// `map-e` or `ds-lite`.
    pub mode: String,
    /// `running`, or `waiting` (then `reason` says why).
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// MAP-E: what `v6gate mape` prints for the running prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psid: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psid_len: Option<u8>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<[u16; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub br: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub napt_ports_in_use: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub napt_ports_total: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub napt_exhausted: Option<u64>,
}

/// Most of `/proc/net/nf_conntrack` that is read: a busy table is cut here rather than read
/// whole on every `status`.
pub const CONNTRACK_READ_LIMIT: usize = 16 << 20;

/// Distinct port numbers of `ranges` that the conntrack listing (`/proc/net/nf_conntrack`)
/// has as reply destination port or ICMP identifier of `shared`.
pub fn ports_in_use(listing: &str, shared: Ipv4Addr, ranges: &[RangeInclusive<u16>]) -> u32 {
    let shared = shared.to_string();
    let mut used = BTreeSet::new();
    for line in listing.lines() {
        let mut fields = line.split_whitespace();
        if fields.nth(2).is_none() {
            continue;
        }
        let mut dst = 0;
        let mut reply = false;
        let mut port = None;
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            match key {
                "dst" => {
                    dst += 1;
                    reply = dst == 2 && value == shared;
                }
                "dport" | "id" if reply => port = value.parse::<u16>().ok(),
                _ => {}
            }
        }
        if let Some(p) = port
            && ranges.iter().any(|r| r.contains(&p))
        {
            used.insert(p);
        }
    }
    u32::try_from(used.len()).unwrap_or(u32::MAX)
}

/// The sum over CPUs of `insert_failed` in `/proc/net/stat/nf_conntrack` (hex columns).
pub fn insert_failed(stat: &str) -> Option<u64> {
    let mut lines = stat.lines();
    let column = lines
        .next()?
        .split_whitespace()
        .position(|h| h == "insert_failed")?;
    Some(
        lines
            .filter_map(|l| l.split_whitespace().nth(column))
            .filter_map(|v| u64::from_str_radix(v, 16).ok())
            .fold(0, u64::saturating_add),
    )
}

/// The text `status` prints.
pub fn render(out: &mut String, softwires: &[SoftwireStatus]) {
    for s in softwires {
        let _ = writeln!(out, "softwire {} ({}): {}", s.name, s.mode, s.state);
        if let Some(reason) = &s.reason {
            let _ = writeln!(out, "  {reason}");
        }
        if let (Some(ipv4), Some(psid), Some(map), Some(br)) =
            (&s.ipv4, s.psid, &s.map_address, &s.br)
        {
            let _ = writeln!(
                out,
                "  ipv4 {ipv4} psid {psid}, {} ranges, map address {map}, br {br}",
                s.ports.len()
            );
        }
        if let (Some(used), Some(total)) = (s.napt_ports_in_use, s.napt_ports_total) {
            let _ = writeln!(
                out,
                "  napt: {used} of {total} ports in use, {} new packets refused in this namespace",
                s.napt_exhausted.unwrap_or(0)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as Linux prints them in /proc/net/nf_conntrack (net/netfilter/nf_conntrack_
    // standalone.c: l3proto, its number, l4proto, its number, timeout, the original tuple,
    // flags, the reply tuple).
    const LISTING: &str = "\
ipv4     2 udp      17 28 src=198.51.100.10 dst=203.0.113.10 sport=40001 dport=9 [UNREPLIED] src=203.0.113.10 dst=198.18.8.1 sport=9 dport=4112 mark=0 zone=0 use=2
ipv4     2 udp      17 28 src=198.51.100.10 dst=203.0.113.10 sport=40002 dport=9 [UNREPLIED] src=203.0.113.10 dst=198.18.8.1 sport=9 dport=8208 mark=0 zone=0 use=2
ipv4     2 tcp      6 431999 ESTABLISHED src=198.51.100.10 dst=203.0.113.10 sport=40003 dport=80 src=203.0.113.10 dst=198.18.8.1 sport=80 dport=4112 [ASSURED] mark=0 zone=0 use=2
ipv4     2 icmp     1 29 src=198.51.100.10 dst=203.0.113.10 type=8 code=0 id=7 src=203.0.113.10 dst=198.18.8.1 type=0 code=0 id=4113 mark=0 zone=0 use=2
ipv4     2 udp      17 28 src=198.18.8.1 dst=203.0.113.10 sport=9 dport=4112 src=203.0.113.10 dst=198.51.100.1 sport=4112 dport=9 mark=0 zone=0 use=2
ipv4     2 udp      17 28 src=198.51.100.10 dst=203.0.113.10 sport=1 dport=9 src=203.0.113.10 dst=198.18.8.1 sport=9 dport=5000 mark=0 zone=0 use=2
";

    #[test]
    fn counts_distinct_reply_ports_of_the_shared_address_in_the_set() {
        let ranges = [4112..=4127, 8208..=8223];
        // 4112 (udp and tcp), 8208, 4113 (an ICMP identifier); not the entry whose reply goes
        // elsewhere, nor the port outside the set.
        assert_eq!(
            ports_in_use(LISTING, Ipv4Addr::new(198, 18, 8, 1), &ranges),
            3
        );
        assert_eq!(
            ports_in_use(LISTING, Ipv4Addr::new(198, 18, 8, 2), &ranges),
            0
        );
        assert_eq!(
            ports_in_use("garbage\n\nipv4 2", Ipv4Addr::LOCALHOST, &ranges),
            0
        );
    }

    #[test]
    fn insert_failures_are_summed_over_cpus() {
        let stat = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop\n\
                    00000010  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 0000000a 00000000\n\
                    00000010  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001 00000000\n";
        assert_eq!(insert_failed(stat), Some(11));
        assert_eq!(insert_failed("entries\n1\n"), None);
    }
}
