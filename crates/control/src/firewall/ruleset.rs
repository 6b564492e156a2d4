//! The one nftables table v6gate owns, as a pure function of the config.
//!
//! Shaped like OpenWrt fw4's `table inet fw4`, which is what users of a home gateway know:
//! base chains `input` and `forward` open with the management ports and the conntrack verdict
//! map, accept what must never be dropped (RFC 4890 ICMPv6, ICMPv4 fragmentation-needed, each
//! tunnel's own underlay from its peers), then jump to one chain per zone by incoming device
//! (`input_<zone>`, `forward_<zone>`), and end in the configured policy with a counter. NAT
//! (`dstnat`, `srcnat`), MSS clamping (`mangle_forward`) and the marks of policy rules
//! (`mangle_prerouting`, `mangle_output`) get chains only when the config uses them.
//!
//! Devices are matched by name (`iifname`), never by index, so the ruleset loads before a
//! device exists (a PPPoE link that comes up later) and means the same after it is recreated.

use std::borrow::Cow;

use ipnet::IpNet;
use nftables::expr::{
    CT, Expression, Fib, FibFlag, FibResult, MetaKey, NamedExpression, RT, RTKey, TcpOption,
};
use nftables::schema::{Chain, NfListObject, Rule, Table};
use nftables::stmt::{Mangle, NAT, NATFamily, Reject, RejectType, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook, RejectCode};

use super::expr::{
    Stmt, accept, addresses, and, counter, dport, drop, has, iifname, is, jump, l4proto, meta,
    nfproto, number, oifname, one_or_set, payload, prefix, string,
};
use super::model::{Allow, AllowTarget, Family, Firewall, PolicyRule, Verdict, Zone};
use crate::model::{Config, Mode, Path, Tunnel};

/// Name of the table v6gate owns; nothing else is ever touched.
pub const TABLE: &str = "v6gate";
/// Its family: one table for IPv4 and IPv6.
pub const FAMILY: NfFamily = NfFamily::INet;

/// Chain priorities of the netfilter hooks (`nft` names them filter, mangle, dstnat, srcnat).
const PRIO_FILTER: i32 = 0;
const PRIO_MANGLE: i32 = -150;
const PRIO_DSTNAT: i32 = -100;
const PRIO_SRCNAT: i32 = 100;

/// ICMPv6 that must pass to and through the gateway (RFC 4890 4.3.1, 4.4.1): destination
/// unreachable, packet too big, time exceeded, parameter problem, echo request and reply.
const ICMPV6_ERRORS_AND_ECHO: [u32; 6] = [1, 2, 3, 4, 128, 129];
/// Neighbour discovery to the gateway: router and neighbour solicitation and advertisement
/// (RFC 4890 4.4.1), valid only with hop limit 255 (RFC 4861 7.1.1), whatever the source
/// (duplicate address detection uses ::).
const ICMPV6_ND: [u32; 4] = [133, 134, 135, 136];
/// MLD query, report, done and MLDv2 report, which come from link-local sources (RFC 2710 3,
/// RFC 3810 5).
const ICMPV6_MLD: [u32; 4] = [130, 131, 132, 143];
/// Encapsulated IPv4 (RFC 2003/2473) and IPv6 (RFC 2473/4213) as protocol numbers.
const PROTO_IPV4_IN_IP: u32 = 4;
const PROTO_IPV6_IN_IP: u32 = 41;
const PROTO_ESP: u32 = 50;
const IKE_PORTS: [u32; 2] = [500, 4500];
/// DHCPv6 server and client ports (RFC 8415 7.2).
const DHCPV6_SERVER_PORT: u32 = 547;
const DHCPV6_CLIENT_PORT: u32 = 546;

/// The table and everything in it, in the order `nft` must create them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    pub table: Table<'static>,
    /// Chains first, then rules.
    pub content: Vec<NfListObject<'static>>,
}

impl Ruleset {
    /// `ruleset`, or an empty table of v6gate's own, with `objects` (chains and counters) put
    /// before all it holds and `rules` after it, so that nothing is named before it exists.
    pub(super) fn extended(
        ruleset: Option<Self>,
        mut objects: Vec<NfListObject<'static>>,
        rules: Vec<NfListObject<'static>>,
    ) -> Self {
        let mut ruleset = ruleset.unwrap_or_else(|| Self {
            table: Table {
                family: FAMILY,
                name: Cow::Borrowed(TABLE),
                handle: None,
            },
            content: Vec::new(),
        });
        objects.append(&mut ruleset.content);
        objects.extend(rules);
        ruleset.content = objects;
        ruleset
    }

    /// Each rule as (`chain: name`, its JSON), in order; `name` is the rule's comment.
    pub fn named_rules(&self) -> Vec<(String, String)> {
        self.content
            .iter()
            .filter_map(|o| match o {
                NfListObject::Rule(rule) => Some((
                    format!(
                        "{}: {}",
                        rule.chain,
                        rule.comment.as_deref().unwrap_or("(unnamed rule)")
                    ),
                    serde_json::to_string(rule).unwrap_or_default(),
                )),
                _ => None,
            })
            .collect()
    }

    /// Number of rules in the table.
    pub fn rule_count(&self) -> usize {
        self.content
            .iter()
            .filter(|o| matches!(o, NfListObject::Rule(_)))
            .count()
    }
}

/// The ruleset `config` means, or `None` without a `[firewall]` table. `underlay(tunnel, path)`
/// names the device a path's peer is reached through, when the host knows it; the tunnel's
/// underlay is then accepted on that device only, else from its peer on any.
pub fn ruleset(
    config: &Config,
    underlay: impl Fn(&Tunnel, &Path) -> Option<String>,
) -> Option<Ruleset> {
    let firewall = config.firewall.as_ref()?;
    let mut r = Builder::default();
    r.input(config, firewall, &underlay);
    r.forward(config, firewall);
    r.mss_clamp(config, firewall);
    r.nat(config, firewall);
    r.marks(&config.routing.rules);
    Some(Ruleset {
        table: Table {
            family: FAMILY,
            name: Cow::Borrowed(TABLE),
            handle: None,
        },
        content: r.chains.into_iter().chain(r.rules).collect(),
    })
}

#[derive(Default)]
struct Builder {
    chains: Vec<NfListObject<'static>>,
    rules: Vec<NfListObject<'static>>,
}

impl Builder {
    fn chain(&mut self, name: &str, base: Option<(NfChainType, NfHook, i32, Verdict)>) {
        let (kind, hook, prio, policy) = match base {
            Some((kind, hook, prio, policy)) => (
                Some(kind),
                Some(hook),
                Some(prio),
                Some(match policy {
                    Verdict::Accept => NfChainPolicy::Accept,
                    Verdict::Drop | Verdict::Reject => NfChainPolicy::Drop,
                }),
            ),
            None => (None, None, None, None),
        };
        self.chains.push(NfListObject::Chain(Chain {
            family: FAMILY,
            table: Cow::Borrowed(TABLE),
            name: Cow::Owned(name.to_owned()),
            _type: kind,
            hook,
            prio,
            policy,
            ..Chain::default()
        }));
    }

    fn rule(&mut self, chain: &str, expr: Vec<Stmt>, comment: Option<String>) {
        self.rules.push(NfListObject::Rule(Rule {
            family: FAMILY,
            table: Cow::Borrowed(TABLE),
            chain: Cow::Owned(chain.to_owned()),
            expr: Cow::Owned(expr),
            handle: None,
            index: None,
            comment: comment.map(Cow::Owned),
        }));
    }

    /// Ends `chain` in `verdict`, counted, named `what` for status.
    fn verdict(&mut self, chain: &str, verdict: Verdict, what: String) {
        match verdict {
            Verdict::Accept => self.rule(chain, vec![counter(), accept()], Some(what)),
            Verdict::Drop => self.rule(chain, vec![counter(), drop()], Some(what)),
            Verdict::Reject => {
                let tcp = vec![
                    l4proto(&[super::model::Protocol::Tcp]),
                    counter(),
                    Statement::Reject(Some(Reject::new(Some(RejectType::TCPReset), None))),
                ];
                self.rule(chain, tcp, Some(what.clone()));
                let other = vec![
                    counter(),
                    Statement::Reject(Some(Reject::new(
                        Some(RejectType::ICMPX),
                        Some(RejectCode::AdminProhibited),
                    ))),
                ];
                self.rule(chain, other, Some(what));
            }
        }
    }

    /// The start both filter chains share: conntrack's verdict and ICMP that must pass.
    fn stateful(&mut self, chain: &str) {
        let states = [
            ("established", accept()),
            ("related", accept()),
            ("invalid", drop()),
        ]
        .into_iter()
        .map(|(state, verdict)| nftables::expr::SetItem::MappingStatement(string(state), verdict))
        .collect();
        self.rule(
            chain,
            vec![Statement::VerdictMap(nftables::stmt::VerdictMap {
                key: ct("state"),
                data: Expression::Named(NamedExpression::Set(states)),
            })],
            None,
        );
        let icmpv6 = ICMPV6_ERRORS_AND_ECHO.map(number).to_vec();
        self.rule(
            chain,
            vec![is(payload("icmpv6", "type"), one_or_set(icmpv6)), accept()],
            Some("icmpv6".into()),
        );
        // Type 3 code 4: without it PMTU discovery breaks behind a default-deny policy.
        self.rule(
            chain,
            vec![
                is(payload("icmp", "type"), number(3)),
                is(payload("icmp", "code"), number(4)),
                accept(),
            ],
            Some("icmp frag-needed".into()),
        );
    }

    fn input(
        &mut self,
        config: &Config,
        fw: &Firewall,
        underlay: &impl Fn(&Tunnel, &Path) -> Option<String>,
    ) {
        const CHAIN: &str = "input";
        self.chain(
            CHAIN,
            Some((NfChainType::Filter, NfHook::Input, PRIO_FILTER, fw.input)),
        );
        // Before conntrack's verdict: a management session survives a conntrack flush, a
        // table reload and a state the kernel calls invalid.
        for service in &fw.management {
            self.rule(
                CHAIN,
                vec![
                    l4proto(&[service.protocol]),
                    dport(&service.ports),
                    accept(),
                ],
                Some(format!("management {service}")),
            );
        }
        self.stateful(CHAIN);
        self.rule(CHAIN, vec![iifname("lo"), accept()], None);
        for tunnel in config.enabled_tunnels() {
            for path in &tunnel.paths {
                self.underlay(CHAIN, tunnel, path, underlay(tunnel, path).as_deref());
            }
        }
        self.rule(
            CHAIN,
            vec![
                is(
                    payload("icmpv6", "type"),
                    one_or_set(ICMPV6_ND.map(number).to_vec()),
                ),
                is(payload("ip6", "hoplimit"), number(255)),
                accept(),
            ],
            Some("neighbour discovery".into()),
        );
        self.rule(
            CHAIN,
            vec![
                is(
                    payload("icmpv6", "type"),
                    one_or_set(ICMPV6_MLD.map(number).to_vec()),
                ),
                is(payload("ip6", "saddr"), link_local()),
                accept(),
            ],
            Some("mld".into()),
        );
        for zone in &fw.zones {
            let chain = format!("input_{}", zone.name);
            self.chain(&chain, None);
            for device in zone_devices(config, zone) {
                self.rule(CHAIN, vec![iifname(&device), jump(&chain)], None);
            }
            if fw.is_uplink(zone) {
                self.rule(
                    &chain,
                    vec![
                        is(payload("ip6", "saddr"), link_local()),
                        is(payload("ip6", "daddr"), link_local()),
                        is(payload("udp", "sport"), number(DHCPV6_SERVER_PORT)),
                        is(payload("udp", "dport"), number(DHCPV6_CLIENT_PORT)),
                        accept(),
                    ],
                    Some("dhcpv6 client".into()),
                );
            }
            for allow in fw.allows.iter().filter(|a| a.from == zone.name) {
                if allow.to == AllowTarget::Gateway {
                    self.allow(&chain, allow, None);
                }
            }
            if let Some(verdict) = zone.input {
                self.verdict(&chain, verdict, format!("input {}", zone.name));
            }
        }
        self.verdict(CHAIN, fw.input, "input policy".into());
    }

    /// A tunnel path's own outer packets, from its peer to its local address only.
    fn underlay(&mut self, chain: &str, tunnel: &Tunnel, path: &Path, device: Option<&str>) {
        let mut base = Vec::new();
        if let Some(device) = device {
            base.push(iifname(device));
        }
        base.push(addresses("saddr", &[IpNet::from(path.remote)]));
        base.push(addresses("daddr", &[IpNet::from(path.local)]));
        let comment = Some(format!("tunnel {} path {}", tunnel.name, path.name));
        let carried = match tunnel.mode {
            Mode::Ipip6 => vec![PROTO_IPV4_IN_IP],
            Mode::Ip6ip6 => vec![PROTO_IPV6_IN_IP],
            Mode::Any => vec![PROTO_IPV4_IN_IP, PROTO_IPV6_IN_IP],
            Mode::Ipsec => {
                let mut ike = base.clone();
                ike.push(is(
                    payload("udp", "dport"),
                    one_or_set(IKE_PORTS.map(number).to_vec()),
                ));
                // Counted, so `status` shows whether the peer's packets arrive at all.
                ike.push(counter());
                ike.push(accept());
                self.rule(chain, ike, comment.clone());
                vec![PROTO_ESP]
            }
        };
        let mut rule = base;
        rule.push(is(
            meta(MetaKey::L4proto),
            one_or_set(carried.into_iter().map(number).collect()),
        ));
        rule.push(counter());
        rule.push(accept());
        self.rule(chain, rule, comment);
    }

    /// One pinhole: a rule per address family it names, each counted under its name.
    fn allow(&mut self, chain: &str, allow: &Allow, out_device: Option<&str>) {
        let comment = Some(format!("allow {}", allow.name));
        for (ipv4, sources, dest) in by_family(allow) {
            let mut expr = Vec::new();
            if let Some(device) = out_device {
                expr.push(oifname(device));
            }
            if let Some(ipv4) = ipv4
                && sources.is_empty()
                && dest.is_empty()
            {
                expr.push(nfproto(ipv4));
            }
            if !sources.is_empty() {
                expr.push(addresses("saddr", &sources));
            }
            if !dest.is_empty() {
                expr.push(addresses("daddr", &dest));
            }
            expr.push(l4proto(&allow.protocols));
            if !allow.ports.is_empty() {
                expr.push(dport(&allow.ports));
            }
            expr.push(counter());
            expr.push(accept());
            self.rule(chain, expr, comment.clone());
        }
    }

    fn forward(&mut self, config: &Config, fw: &Firewall) {
        const CHAIN: &str = "forward";
        self.chain(
            CHAIN,
            Some((
                NfChainType::Filter,
                NfHook::Forward,
                PRIO_FILTER,
                fw.forward,
            )),
        );
        self.stateful(CHAIN);
        for f in &fw.port_forwards {
            for p in &f.protocols {
                self.rule(
                    CHAIN,
                    vec![
                        has(ct("status"), string("dnat")),
                        addresses("daddr", &[IpNet::from(f.to)]),
                        l4proto(&[*p]),
                        dport(&[super::PortRange::single(f.to_port)]),
                        counter(),
                        accept(),
                    ],
                    Some(format!("port_forward {}", f.name)),
                );
            }
        }
        for zone in &fw.zones {
            let chain = format!("forward_{}", zone.name);
            self.chain(&chain, None);
            for device in zone_devices(config, zone) {
                self.rule(CHAIN, vec![iifname(&device), jump(&chain)], None);
            }
            for allow in fw.allows.iter().filter(|a| a.from == zone.name) {
                let AllowTarget::Zone(to) = &allow.to else {
                    continue;
                };
                if let Some(to) = fw.zone(to) {
                    for device in zone_devices(config, to) {
                        self.allow(&chain, allow, Some(&device));
                    }
                }
            }
            for to in zone.forward_to.iter().filter_map(|name| fw.zone(name)) {
                for device in zone_devices(config, to) {
                    self.rule(
                        &chain,
                        vec![oifname(&device), counter(), accept()],
                        Some(format!("forward {} to {}", zone.name, to.name)),
                    );
                }
            }
            if let Some(verdict) = zone.forward {
                self.verdict(&chain, verdict, format!("forward {}", zone.name));
            }
        }
        self.verdict(CHAIN, fw.forward, "forward policy".into());
    }

    /// `tcp flags syn / syn,rst tcp option maxseg size set rt mtu` both ways through each
    /// clamping zone's devices, as fw4's `mtu_fix`.
    fn mss_clamp(&mut self, config: &Config, fw: &Firewall) {
        let devices: Vec<String> = fw
            .zones
            .iter()
            .filter(|z| z.mss_clamp)
            .flat_map(|z| zone_devices(config, z))
            .collect();
        if devices.is_empty() {
            return;
        }
        const CHAIN: &str = "mangle_forward";
        self.chain(
            CHAIN,
            Some((
                NfChainType::Filter,
                NfHook::Forward,
                PRIO_MANGLE,
                Verdict::Accept,
            )),
        );
        for device in &devices {
            for side in [iifname(device), oifname(device)] {
                self.rule(
                    CHAIN,
                    vec![
                        side,
                        is(
                            and(
                                payload("tcp", "flags"),
                                Expression::List(vec![string("syn"), string("rst")]),
                            ),
                            string("syn"),
                        ),
                        Statement::Mangle(Mangle {
                            key: Expression::Named(NamedExpression::TcpOption(TcpOption {
                                name: Cow::Borrowed("maxseg"),
                                field: Some(Cow::Borrowed("size")),
                            })),
                            value: Expression::Named(NamedExpression::RT(RT {
                                key: RTKey::MTU,
                                family: None,
                            })),
                        }),
                    ],
                    Some("mss clamp".into()),
                );
            }
        }
    }

    fn nat(&mut self, config: &Config, fw: &Firewall) {
        if !fw.port_forwards.is_empty() {
            const CHAIN: &str = "dstnat";
            self.chain(
                CHAIN,
                Some((
                    NfChainType::NAT,
                    NfHook::Prerouting,
                    PRIO_DSTNAT,
                    Verdict::Accept,
                )),
            );
            for f in &fw.port_forwards {
                let Some(zone) = fw.zone(&f.from) else {
                    continue;
                };
                let family = if f.to.is_ipv4() {
                    NATFamily::IP
                } else {
                    NATFamily::IP6
                };
                for device in zone_devices(config, zone) {
                    for p in &f.protocols {
                        self.rule(
                            CHAIN,
                            vec![
                                iifname(&device),
                                // Only what is addressed to the gateway itself, not traffic
                                // routed through the zone to other hosts.
                                is(local_destination(), string("local")),
                                nfproto(f.to.is_ipv4()),
                                l4proto(&[*p]),
                                dport(&[super::PortRange::single(f.port)]),
                                Statement::DNAT(Some(NAT {
                                    addr: Some(super::expr::address(f.to)),
                                    family: Some(family),
                                    port: Some(number(u32::from(f.to_port))),
                                    flags: None,
                                })),
                            ],
                            Some(format!("port_forward {}", f.name)),
                        );
                    }
                }
            }
        }
        let masquerading: Vec<&Zone> = fw.zones.iter().filter(|z| z.masquerade).collect();
        if !masquerading.is_empty() {
            const CHAIN: &str = "srcnat";
            self.chain(
                CHAIN,
                Some((
                    NfChainType::NAT,
                    NfHook::Postrouting,
                    PRIO_SRCNAT,
                    Verdict::Accept,
                )),
            );
            for zone in masquerading {
                for device in zone_devices(config, zone) {
                    self.rule(
                        CHAIN,
                        vec![oifname(&device), nfproto(true), Statement::Masquerade(None)],
                        Some(format!("masquerade {}", zone.name)),
                    );
                }
            }
        }
    }

    /// Marks for the policy rules that match protocols or ports: forwarded packets in
    /// prerouting, the gateway's own in output (a `route` chain, so the kernel routes them
    /// again after the mark). Only unmarked packets: the daemon's own marked lookups and
    /// packets keep the routing they asked for.
    fn marks(&mut self, rules: &[PolicyRule]) {
        let marked: Vec<&PolicyRule> = rules.iter().filter(|r| r.mark.is_some()).collect();
        if marked.is_empty() {
            return;
        }
        self.chain(
            "mangle_prerouting",
            Some((
                NfChainType::Filter,
                NfHook::Prerouting,
                PRIO_MANGLE,
                Verdict::Accept,
            )),
        );
        self.chain(
            "mangle_output",
            Some((
                NfChainType::Route,
                NfHook::Output,
                PRIO_MANGLE,
                Verdict::Accept,
            )),
        );
        for rule in marked {
            let Some(mark) = rule.mark else { continue };
            let mut expr = vec![is(meta(MetaKey::Mark), number(0))];
            if let Some(from) = rule.from {
                expr.push(addresses("saddr", &[from]));
            }
            if let Some(to) = rule.to {
                expr.push(addresses("daddr", &[to]));
            }
            if !rule.protocols.is_empty() {
                expr.push(l4proto(&rule.protocols));
            }
            if !rule.ports.is_empty() {
                expr.push(dport(&rule.ports));
            }
            expr.push(Statement::Mangle(Mangle {
                key: meta(MetaKey::Mark),
                value: number(mark),
            }));
            let comment = Some(format!("rule {}", rule.name));
            match &rule.iif {
                Some(device) => {
                    let mut with_device = vec![iifname(device)];
                    with_device.extend(expr);
                    self.rule("mangle_prerouting", with_device, comment);
                }
                None => {
                    self.rule("mangle_prerouting", expr.clone(), comment.clone());
                    self.rule("mangle_output", expr, comment);
                }
            }
        }
    }
}

fn ct(key: &'static str) -> super::expr::Expr {
    Expression::Named(NamedExpression::CT(CT {
        key: Cow::Borrowed(key),
        family: None,
        dir: None,
    }))
}

/// `fib daddr type`: the kind of route the destination has (`local` for the gateway's own).
fn local_destination() -> super::expr::Expr {
    Expression::Named(NamedExpression::Fib(Fib {
        result: FibResult::Type,
        flags: [FibFlag::Daddr].into_iter().collect(),
    }))
}

fn link_local() -> super::expr::Expr {
    prefix("fe80::/10".parse().expect("a valid prefix"))
}

/// The zone's devices and the devices of its tunnels.
fn zone_devices(config: &Config, zone: &Zone) -> Vec<String> {
    let tunnels = zone
        .tunnels
        .iter()
        .filter_map(|name| config.tunnel(name))
        .flat_map(|t| t.devices().into_iter().map(str::to_owned));
    zone.devices.iter().cloned().chain(tunnels).collect()
}

/// An allow's sources and destinations split by family: `(Some(is_ipv4), sources, dest)` per
/// family it names, or one `(None, [], [])` when it names no address and no family.
fn by_family(allow: &Allow) -> Vec<(Option<bool>, Vec<IpNet>, Vec<IpNet>)> {
    let pick = |nets: &[IpNet], ipv4: bool| -> Vec<IpNet> {
        nets.iter()
            .copied()
            .filter(|n| n.addr().is_ipv4() == ipv4)
            .collect()
    };
    let families: &[bool] = match allow.family {
        Family::Ipv4 => &[true],
        Family::Ipv6 => &[false],
        Family::Any if allow.sources.is_empty() && allow.dest.is_empty() => {
            return vec![(None, Vec::new(), Vec::new())];
        }
        Family::Any => &[true, false],
    };
    families
        .iter()
        .filter_map(|&ipv4| {
            let (s, d) = (pick(&allow.sources, ipv4), pick(&allow.dest, ipv4));
            // A family the entry names addresses of, but none on one side, has nothing to
            // match there; a family with no addresses at all is matched by family alone.
            let named = !allow.sources.is_empty() || !allow.dest.is_empty();
            let empty_side = (!allow.sources.is_empty() && s.is_empty())
                || (!allow.dest.is_empty() && d.is_empty());
            (!(named && empty_side)).then_some((Some(ipv4), s, d))
        })
        .collect()
}
