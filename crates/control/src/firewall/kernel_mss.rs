//! MSS clamping for tunnels on the kernel path, in an nftables table of the instance's own.
//!
//! Not in the firewall's `inet v6gate`: that table is one per namespace, and a second instance
//! there (another control socket) would replace or delete it with its own. The clamping table
//! is named after the instance ([`table_name`]), so each instance installs, repairs and
//! removes only its own, with or without a `[firewall]`.
//!
//! On the kernel path no userspace core sees the SYNs: the kernel routes the inner packets
//! straight to the underlay device (`via inet6 <next hop> dev <underlay> mtu <tunnel MTU>`)
//! and the tc-BPF programs encapsulate them there. The route's MTU is the tunnel's, so
//! `tcp option maxseg size set rt mtu` on SYNs that leave through the underlay towards the
//! tunnel's prefixes clamps to exactly what the TUN dataplane would, and follows the route
//! MTU when the path MTU lowers it. The forward hook covers the sites behind the gateway,
//! the output hook the gateway's own connections. SYNs coming out of the tunnel (decapsulated
//! on the underlay's ingress, from the peer's prefixes) are clamped to a number: their route
//! leads into the LAN, whose MTU says nothing about the tunnel.
//!
//! The kernel only ever lowers an MSS option with these statements, like the TUN dataplane.

use std::borrow::Cow;

use ipnet::IpNet;
use nftables::expr::{Expression, NamedExpression, RT, RTKey, TcpOption};
use nftables::schema::{Chain, NfListObject, Rule, Table};
use nftables::stmt::{Mangle, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfHook};

use super::expr::{Expr, Stmt, addresses, and, iifname, is, number, oifname, payload, string};
use super::ruleset::{FAMILY, Ruleset};

/// What every clamping table's name starts with; the instance's name follows.
pub const TABLE_PREFIX: &str = "v6gate_mss_";
/// Longest instance part of the name, well inside nftables' 256 bytes.
const MAX_INSTANCE: usize = 64;

/// The chains' priority: mangle, like the zones' `mss_clamp`.
const PRIO_MANGLE: i32 = -150;
/// The forward chain of kernel-path clamping.
pub const FORWARD_CHAIN: &str = "kernel_mss_forward";
/// The output chain of kernel-path clamping (the gateway's own connections).
pub const OUTPUT_CHAIN: &str = "kernel_mss_output";
/// IPv4 + TCP and IPv6 + TCP headers without options.
const HEADERS_V4: u16 = 40;
const HEADERS_V6: u16 = 60;

/// What a kernel-path tunnel's SYNs are clamped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelMssSize {
    /// The route MTU less the headers (`mss_clamp = "auto"`); `mtu` is the inner routes'
    /// MTU now, for SYNs coming out of the tunnel.
    Route { mtu: u16 },
    /// This MSS (`mss_clamp = N`).
    Fixed(u16),
}

/// One tunnel on the kernel path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelMss {
    pub tunnel: String,
    /// The underlay devices its programs are attached to.
    pub devices: Vec<String>,
    /// The prefixes routed to the underlay (its routes the kernel path carries).
    pub routes: Vec<IpNet>,
    /// The inner sources accepted from the peer.
    pub sources: Vec<IpNet>,
    pub size: KernelMssSize,
}

/// The clamping table of the instance whose control socket is `<instance>.sock`:
/// `v6gate_mss_<instance>`, every character but ASCII letters, digits and `_` turned into `_`
/// so that `nft` takes it unquoted, at most 64 of them. Instances in one namespace need socket
/// names that stay distinct that way.
pub fn table_name(instance: &str) -> String {
    let safe: String = instance
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(MAX_INSTANCE)
        .collect();
    format!("{TABLE_PREFIX}{safe}")
}

/// The table `name` with the clamping of `tunnels`; `None` when no tunnel clamps, so that an
/// instance with nothing to clamp has no table.
pub fn kernel_mss_table(name: &str, tunnels: &[KernelMss]) -> Option<Ruleset> {
    let mut rules = Vec::new();
    for t in tunnels {
        add(name, t, &mut rules);
    }
    if rules.is_empty() {
        return None;
    }
    let mut content = vec![
        chain(name, FORWARD_CHAIN, NfHook::Forward),
        chain(name, OUTPUT_CHAIN, NfHook::Output),
    ];
    content.extend(rules);
    Some(Ruleset {
        table: Table {
            family: FAMILY,
            name: Cow::Owned(name.to_owned()),
            handle: None,
        },
        content,
    })
}

fn add(table: &str, t: &KernelMss, rules: &mut Vec<NfListObject<'static>>) {
    let comment = format!("kernel path mss {}", t.tunnel);
    for ipv4 in [true, false] {
        let family = |nets: &[IpNet]| -> Vec<IpNet> {
            nets.iter()
                .copied()
                .filter(|n| n.addr().is_ipv4() == ipv4)
                .collect()
        };
        let (routes, sources) = (family(&t.routes), family(&t.sources));
        let headers = if ipv4 { HEADERS_V4 } else { HEADERS_V6 };
        let (into, out_of) = match t.size {
            KernelMssSize::Route { mtu } => (
                Expression::Named(NamedExpression::RT(RT {
                    key: RTKey::MTU,
                    family: None,
                })),
                number(u32::from(mtu.saturating_sub(headers))),
            ),
            KernelMssSize::Fixed(mss) => (number(u32::from(mss)), number(u32::from(mss))),
        };
        for device in &t.devices {
            if !routes.is_empty() {
                for chain in [FORWARD_CHAIN, OUTPUT_CHAIN] {
                    rules.push(rule(
                        table,
                        chain,
                        vec![
                            oifname(device),
                            addresses("daddr", &routes),
                            syn(),
                            set_mss(into.clone()),
                        ],
                        &comment,
                    ));
                }
            }
            if !sources.is_empty() {
                rules.push(rule(
                    table,
                    FORWARD_CHAIN,
                    vec![
                        iifname(device),
                        addresses("saddr", &sources),
                        syn(),
                        set_mss(out_of.clone()),
                    ],
                    &comment,
                ));
            }
        }
    }
}

/// `tcp flags & (syn | rst) == syn`: SYN and SYN-ACK.
fn syn() -> Stmt {
    is(
        and(
            payload("tcp", "flags"),
            Expression::List(vec![string("syn"), string("rst")]),
        ),
        string("syn"),
    )
}

fn set_mss(value: Expr) -> Stmt {
    Statement::Mangle(Mangle {
        key: Expression::Named(NamedExpression::TcpOption(TcpOption {
            name: Cow::Borrowed("maxseg"),
            field: Some(Cow::Borrowed("size")),
        })),
        value,
    })
}

fn chain(table: &str, name: &'static str, hook: NfHook) -> NfListObject<'static> {
    NfListObject::Chain(Chain {
        family: FAMILY,
        table: Cow::Owned(table.to_owned()),
        name: Cow::Borrowed(name),
        _type: Some(NfChainType::Filter),
        hook: Some(hook),
        prio: Some(PRIO_MANGLE),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    })
}

fn rule(table: &str, chain: &'static str, expr: Vec<Stmt>, comment: &str) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family: FAMILY,
        table: Cow::Owned(table.to_owned()),
        chain: Cow::Borrowed(chain),
        expr: Cow::Owned(expr),
        handle: None,
        index: None,
        comment: Some(Cow::Owned(comment.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tunnel(size: KernelMssSize) -> KernelMss {
        KernelMss {
            tunnel: "ab".into(),
            devices: vec!["wan0".into(), "wan1".into()],
            routes: vec![
                "198.51.100.0/24".parse().unwrap(),
                "2001:db8:2::/48".parse().unwrap(),
            ],
            sources: vec!["198.51.100.0/24".parse().unwrap()],
            size,
        }
    }

    fn rules(r: &Ruleset) -> Vec<(String, String)> {
        r.content
            .iter()
            .filter_map(|o| match o {
                NfListObject::Rule(rule) => Some((
                    rule.chain.to_string(),
                    serde_json::to_string(&rule.expr).unwrap(),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn syns_into_the_tunnel_get_the_route_mtu_and_syns_out_of_it_a_number() {
        let r = kernel_mss_table(
            "v6gate_mss_t",
            &[tunnel(KernelMssSize::Route { mtu: 1460 })],
        )
        .unwrap();
        let rules = rules(&r);
        // Per device: IPv4 and IPv6 routes into it in forward and output (4), IPv4 sources
        // out of it (1).
        assert_eq!(rules.len(), 10, "{rules:#?}");
        let into: Vec<_> = rules
            .iter()
            .filter(|(_, j)| j.contains("oifname"))
            .collect();
        assert_eq!(into.len(), 8);
        for (_, json) in &into {
            assert!(json.contains(r#""rt":{"key":"mtu"}"#), "{json}");
        }
        let v6 = into
            .iter()
            .filter(|(_, j)| j.contains("2001:db8:2::"))
            .count();
        assert_eq!(v6, 4);
        let out: Vec<_> = rules
            .iter()
            .filter(|(_, j)| j.contains("iifname"))
            .collect();
        assert_eq!(out.len(), 2);
        for (chain, json) in &out {
            assert_eq!(chain, FORWARD_CHAIN);
            assert!(json.contains(r#""value":1420"#), "{json}");
            assert!(json.contains(r#""saddr""#), "{json}");
        }
    }

    #[test]
    fn a_fixed_clamp_is_that_number_both_ways() {
        let r = kernel_mss_table("v6gate_mss_t", &[tunnel(KernelMssSize::Fixed(1300))]).unwrap();
        for (_, json) in rules(&r) {
            assert!(json.contains(r#""value":1300"#), "{json}");
            assert!(!json.contains(r#""rt""#), "{json}");
        }
    }

    #[test]
    fn chains_come_first_and_nothing_to_clamp_leaves_the_ruleset_alone() {
        let r = kernel_mss_table("v6gate_mss_t", &[tunnel(KernelMssSize::Fixed(1300))]).unwrap();
        assert!(matches!(r.content[0], NfListObject::Chain(_)));
        assert!(matches!(r.content[1], NfListObject::Chain(_)));
        assert!(
            r.content[2..]
                .iter()
                .all(|o| matches!(o, NfListObject::Rule(_)))
        );
        assert_eq!(r.table.name, "v6gate_mss_t");
        assert_eq!(kernel_mss_table("v6gate_mss_t", &[]), None);
        let mut none = tunnel(KernelMssSize::Fixed(1300));
        none.devices.clear();
        assert_eq!(kernel_mss_table("v6gate_mss_t", &[none]), None);
    }

    #[test]
    fn the_table_is_named_after_the_instance_in_characters_nft_takes() {
        assert_eq!(table_name("v6gate"), "v6gate_mss_v6gate");
        assert_eq!(table_name("site-b.2"), "v6gate_mss_site_b_2");
        assert_eq!(table_name("ü"), "v6gate_mss__");
        let long = table_name(&"x".repeat(300));
        assert_eq!(long.len(), TABLE_PREFIX.len() + MAX_INSTANCE);
    }
}
