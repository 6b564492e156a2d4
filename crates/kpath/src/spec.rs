//! What the programs' maps hold for one tunnel.

use std::net::IpAddr;

use dataplane::{EncapLimit, TrafficClass, TunnelConfig};
use ipnet::IpNet;

/// Bits of the `flags` word of the `tunnel` map (`F_*` in `bpf/tunnel.bpf.c`).
pub(crate) const F_CARRY_V4: u32 = 1 << 0;
pub(crate) const F_CARRY_V6: u32 = 1 << 1;
pub(crate) const F_ENCAP_LIMIT: u32 = 1 << 2;
pub(crate) const F_TCLASS_INHERIT: u32 = 1 << 3;
pub(crate) const F_PROBE_ECHO: u32 = 1 << 4;

/// The programs hold this many paths (`MAX_PATHS`), as many as the core allows.
pub const MAX_PATHS: usize = dataplane::MAX_PATHS;

/// One path: both ends of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecPath {
    pub local: IpAddr,
    pub remote: IpAddr,
}

/// One tunnel as the kernel path sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub carry_ipv4: bool,
    pub carry_ipv6: bool,
    pub encap_limit: Option<u8>,
    pub hop_limit: u8,
    /// `None`: copy the inner TOS / traffic class; otherwise this DSCP.
    pub traffic_class: Option<u8>,
    pub paths: Vec<SpecPath>,
    /// Inner destinations that enter the tunnel.
    pub routes: Vec<IpNet>,
    /// Inner sources that may leave it towards us.
    pub allowed_sources: Vec<IpNet>,
    /// Some path is probed with ICMP echo: inner ICMP goes to the userspace core, which
    /// tells its own replies from the rest.
    pub probe_echo: bool,
    /// The path traffic leaves on.
    pub active: usize,
}

impl Spec {
    /// The tunnel `config` describes, leaving on its first path. MSS clamping and path MTU
    /// stay with nftables and the route MTU (see docs/performance.md).
    pub fn from_config(config: &TunnelConfig) -> Self {
        Self {
            carry_ipv4: config.carries_ipv4(),
            carry_ipv6: config.carries_ipv6(),
            encap_limit: match config.encap_limit {
                EncapLimit::None => None,
                EncapLimit::Limit(limit) => Some(limit),
            },
            hop_limit: config.hop_limit,
            traffic_class: match config.traffic_class {
                TrafficClass::Fixed(dscp) => Some(dscp),
                TrafficClass::Inherit => None,
            },
            paths: config
                .paths
                .iter()
                .map(|p| SpecPath {
                    local: p.local,
                    remote: p.remote,
                })
                .collect(),
            routes: config.routes.clone(),
            allowed_sources: config.allowed_sources.clone(),
            probe_echo: config
                .paths
                .iter()
                .any(|p| matches!(p.probe, dataplane::Probe::Icmp { .. })),
            active: 0,
        }
    }

    pub(crate) fn flags(&self) -> u32 {
        let mut flags = 0;
        if self.carry_ipv4 {
            flags |= F_CARRY_V4;
        }
        if self.carry_ipv6 {
            flags |= F_CARRY_V6;
        }
        if self.encap_limit.is_some() {
            flags |= F_ENCAP_LIMIT;
        }
        if self.traffic_class.is_none() {
            flags |= F_TCLASS_INHERIT;
        }
        if self.probe_echo {
            flags |= F_PROBE_ECHO;
        }
        flags
    }

    /// The `struct tunnel` value.
    pub(crate) fn tunnel_value(&self) -> [u8; 8] {
        let mut value = [0u8; 8];
        value[..4].copy_from_slice(&self.flags().to_ne_bytes());
        value[4] = self.encap_limit.unwrap_or(0);
        value[5] = self.hop_limit;
        value[6] = self.traffic_class.unwrap_or(0);
        value
    }
}

/// An address as the maps hold it: a family word and 16 bytes, IPv4 in the first four.
pub(crate) fn family_and_bytes(addr: IpAddr) -> (u32, [u8; 16]) {
    let mut bytes = [0u8; 16];
    match addr {
        IpAddr::V4(v4) => {
            bytes[..4].copy_from_slice(&v4.octets());
            (4, bytes)
        }
        IpAddr::V6(v6) => (6, v6.octets()),
    }
}

/// `struct path`: family, local, remote.
pub(crate) fn path_value(path: &SpecPath) -> [u8; 36] {
    let (family, local) = family_and_bytes(path.local);
    let (_, remote) = family_and_bytes(path.remote);
    let mut value = [0u8; 36];
    value[..4].copy_from_slice(&family.to_ne_bytes());
    value[4..20].copy_from_slice(&local);
    value[20..].copy_from_slice(&remote);
    value
}

/// `struct endpoint`: family and one address.
pub(crate) fn endpoint_key(addr: IpAddr) -> [u8; 20] {
    let (family, bytes) = family_and_bytes(addr);
    let mut key = [0u8; 20];
    key[..4].copy_from_slice(&family.to_ne_bytes());
    key[4..].copy_from_slice(&bytes);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::{Mode, PathConfig};

    #[test]
    fn a_config_becomes_flags_and_paths() {
        let mut config = TunnelConfig::new(
            "t",
            Mode::Any,
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        config.encap_limit = EncapLimit::Limit(4);
        config.traffic_class = TrafficClass::Inherit;
        config.paths.push(PathConfig {
            probe: dataplane::Probe::Icmp {
                target: "203.0.113.1".parse().unwrap(),
                source: None,
            },
            ..PathConfig::new(
                "v4",
                "198.18.0.1".parse::<IpAddr>().unwrap(),
                "198.18.0.2".parse::<IpAddr>().unwrap(),
            )
        });
        let spec = Spec::from_config(&config);
        assert_eq!(
            spec.flags(),
            F_CARRY_V4 | F_CARRY_V6 | F_ENCAP_LIMIT | F_TCLASS_INHERIT | F_PROBE_ECHO
        );
        let value = spec.tunnel_value();
        assert_eq!((value[4], value[5]), (4, 64));
        let v4 = path_value(&spec.paths[1]);
        assert_eq!(u32::from_ne_bytes(v4[..4].try_into().unwrap()), 4);
        assert_eq!(&v4[4..8], &[198, 18, 0, 1]);
        assert_eq!(&v4[20..24], &[198, 18, 0, 2]);
        assert!(v4[8..20].iter().all(|&b| b == 0));
    }
}
