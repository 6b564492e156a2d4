//! The port-restricted NAPT of a MAP-E CE (RFC 7597 5.1), as chains of v6gate's one table.
//!
//! A CE shares its IPv4 address with other CEs and owns only its port set, which is several
//! ranges (15 of 16 ports for v6plus, 63 of 16 for OCN). One `masquerade to :first-last` can
//! name only one range, and a NAT statement is final, so the base chain splits new flows over one
//! chain per range with `numgen inc mod N vmap`: each range chain translates TCP, UDP and ICMP
//! echo identifiers into its own range. Flows of protocols that have no port to restrict are
//! dropped and counted rather than sent with a port outside the set. Only a flow's first
//! packet passes a NAT chain; conntrack translates the rest.
//!
//! On the TUN dataplane the CE's traffic is what leaves through its device. On the kernel path
//! it leaves through the underlay device beside everything else the host sends there, so the
//! inner routes carry a routing realm of their own and the chains match it (`rt classid`) as
//! well as the device: only packets routed into this softwire are translated and guarded.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use nftables::expr::{Expression, NamedExpression, Numgen, RT, RTKey, SetItem};
use nftables::schema::{Chain, Counter, NfListObject, Rule};
use nftables::stmt::{self, Match, NAT, NATFamily, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfHook};

use super::PortRange;
use super::expr::{
    Stmt, drop, is, jump, l4proto, number, oifname, one_or_set, payload, port_range, string,
};
use super::model::Protocol;
use super::ruleset::{FAMILY, Ruleset, TABLE};

/// Just before the zones' `srcnat` chain (priority srcnat), so a masquerading zone that holds
/// the MAP-E device does not translate into ports outside the set.
const PRIO_NAPT: i32 = 99;

/// One MAP-E CE's NAPT: flows leaving through `device`, or routed with `realm`, get `ipv4`
/// (the one address `device` holds) and a port of `ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Napt {
    pub tunnel: String,
    pub device: String,
    pub ipv4: Ipv4Addr,
    /// The port set, one entry per range, lowest first.
    pub ports: Vec<PortRange>,
    /// On the kernel path: the realm of the inner routes that lead to the underlay device.
    pub realm: Option<u16>,
}

impl Napt {
    /// One match per way the CE's packets leave: its device, and its routes' realm.
    fn leaving(&self) -> Vec<Stmt> {
        let mut ways = vec![oifname(&self.device)];
        if let Some(realm) = self.realm {
            ways.push(is(
                Expression::Named(NamedExpression::RT(RT {
                    key: RTKey::ClassId,
                    family: None,
                })),
                number(u32::from(realm)),
            ));
        }
        ways
    }
}

/// The base chain of `tunnel`'s NAPT.
pub fn chain(tunnel: &str) -> String {
    format!("napt_{tunnel}")
}

/// The named counter of the flows `tunnel`'s NAPT translated.
pub fn flows_counter(tunnel: &str) -> String {
    format!("napt_{tunnel}_flows")
}

/// The named counter of the flows `tunnel`'s NAPT dropped because no port of the set could
/// carry them.
pub fn dropped_counter(tunnel: &str) -> String {
    format!("napt_{tunnel}_dropped")
}

/// The named counter of the packets `tunnel`'s guard dropped for leaving from a port (or ICMP
/// echo identifier) outside the set.
pub fn outside_counter(tunnel: &str) -> String {
    format!("napt_{tunnel}_outside")
}

/// After source NAT and before conntrack confirms: the guard sees every packet about to leave
/// through the tunnel device with its final source port.
const PRIO_GUARD: i32 = 150;

/// `ruleset` with the NAPT of `napts` added; a table of its own when there is no ruleset.
pub fn with_napt(ruleset: Option<Ruleset>, napts: &[Napt]) -> Option<Ruleset> {
    let napts: Vec<&Napt> = napts.iter().filter(|n| !n.ports.is_empty()).collect();
    if napts.is_empty() {
        return ruleset;
    }
    let mut objects = Vec::new();
    let mut rules = Vec::new();
    for napt in napts {
        add(napt, &mut objects, &mut rules);
    }
    Some(Ruleset::extended(ruleset, objects, rules))
}

fn add(
    napt: &Napt,
    objects: &mut Vec<NfListObject<'static>>,
    rules: &mut Vec<NfListObject<'static>>,
) {
    let base = chain(&napt.tunnel);
    for name in [
        flows_counter(&napt.tunnel),
        dropped_counter(&napt.tunnel),
        outside_counter(&napt.tunnel),
    ] {
        objects.push(NfListObject::Counter(Counter {
            family: FAMILY,
            table: Cow::Borrowed(TABLE),
            name: Cow::Owned(name),
            handle: None,
            packets: None,
            bytes: None,
        }));
    }
    objects.push(NfListObject::Chain(Chain {
        family: FAMILY,
        table: Cow::Borrowed(TABLE),
        name: Cow::Owned(base.clone()),
        _type: Some(NfChainType::NAT),
        hook: Some(NfHook::Postrouting),
        prio: Some(PRIO_NAPT),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }));
    let mapped = [Protocol::Tcp, Protocol::Udp, Protocol::Icmp];
    let mut split = Vec::new();
    for (i, range) in napt.ports.iter().enumerate() {
        let name = format!("{base}_{i}");
        objects.push(NfListObject::Chain(Chain {
            family: FAMILY,
            table: Cow::Borrowed(TABLE),
            name: Cow::Owned(name.clone()),
            ..Chain::default()
        }));
        // nft takes a port mapping only after a match on one transport protocol.
        for p in mapped {
            rules.push(rule(
                &name,
                vec![l4proto(&[p]), translate(napt, *range)],
                format!("napt {} {}-{}", napt.tunnel, range.first, range.last),
            ));
        }
        split.push(SetItem::MappingStatement(
            number(u32::try_from(i).expect("at most 65536 ranges")),
            jump(&name),
        ));
    }
    let count = u32::try_from(napt.ports.len()).expect("at most 65536 ranges");
    for leaving in napt.leaving() {
        split_and_drop(napt, &base, leaving, &split, count, rules);
    }
    guard(napt, objects, rules);
}

/// New flows leaving one way go to a range chain; those no range can carry are dropped.
fn split_and_drop(
    napt: &Napt,
    base: &str,
    leaving: Stmt,
    split: &[SetItem<'static>],
    count: u32,
    rules: &mut Vec<NfListObject<'static>>,
) {
    let mapped = [Protocol::Tcp, Protocol::Udp, Protocol::Icmp];
    rules.push(rule(
        base,
        vec![
            leaving.clone(),
            l4proto(&mapped),
            Statement::Counter(stmt::Counter::Named(Cow::Owned(flows_counter(
                &napt.tunnel,
            )))),
            Statement::VerdictMap(stmt::VerdictMap {
                key: Expression::Named(NamedExpression::Numgen(Numgen {
                    mode: nftables::expr::NgMode::Inc,
                    ng_mod: count,
                    offset: None,
                })),
                data: Expression::Named(NamedExpression::Set(split.to_vec())),
            }),
        ],
        format!("napt {} split", napt.tunnel),
    ));
    rules.push(rule(
        base,
        vec![
            leaving,
            Statement::Counter(stmt::Counter::Named(Cow::Owned(dropped_counter(
                &napt.tunnel,
            )))),
            drop(),
        ],
        format!("napt {} no port to map", napt.tunnel),
    ));
}

/// The NAPT chains translate new flows only. A packet of a flow that did not start here (a reply
/// to something sent to a port outside the set) or that was translated into an older port set
/// (before a re-delegation) would leave from a port that is not ours; the guard drops and counts
/// it instead.
fn guard(
    napt: &Napt,
    objects: &mut Vec<NfListObject<'static>>,
    rules: &mut Vec<NfListObject<'static>>,
) {
    let name = format!("{}_guard", chain(&napt.tunnel));
    objects.push(NfListObject::Chain(Chain {
        family: FAMILY,
        table: Cow::Borrowed(TABLE),
        name: Cow::Owned(name.clone()),
        _type: Some(NfChainType::Filter),
        hook: Some(NfHook::Postrouting),
        prio: Some(PRIO_GUARD),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }));
    let set = || one_or_set(napt.ports.iter().copied().map(port_range).collect());
    let not = |left, right| {
        Statement::Match(Match {
            left,
            right,
            op: Operator::NEQ,
        })
    };
    let not_in_set = |left| not(left, set());
    let count = || {
        Statement::Counter(stmt::Counter::Named(Cow::Owned(outside_counter(
            &napt.tunnel,
        ))))
    };
    for leaving in napt.leaving() {
        rules.push(rule(
            &name,
            vec![
                leaving.clone(),
                not(payload("ip", "saddr"), string(napt.ipv4.to_string())),
                count(),
                drop(),
            ],
            format!("napt {} source address not the shared one", napt.tunnel),
        ));
        rules.push(rule(
            &name,
            vec![
                leaving.clone(),
                l4proto(&[Protocol::Tcp, Protocol::Udp]),
                not_in_set(payload("th", "sport")),
                count(),
                drop(),
            ],
            format!("napt {} source port outside the set", napt.tunnel),
        ));
        rules.push(rule(
            &name,
            vec![
                leaving,
                is(payload("icmp", "type"), string("echo-request")),
                not_in_set(payload("icmp", "id")),
                count(),
                drop(),
            ],
            format!("napt {} echo identifier outside the set", napt.tunnel),
        ));
    }
}

/// On the TUN dataplane, masquerade rather than `snat to ADDR`: the device holds the shared
/// address alone, so the source is the same, and the kernel forgets masqueraded flows when
/// their device goes. A re-delegation rebuilds the device, so no flow keeps a port of the old
/// set (or the old shared address) past it.
///
/// On the kernel path packets leave through the underlay device, whose address is not the
/// shared one: `snat` names it. A flow that outlives a re-delegation there keeps its old
/// translation, and the guard drops it.
fn translate(napt: &Napt, range: PortRange) -> Stmt {
    let port = Some(port_range(range));
    if napt.realm.is_some() {
        return Statement::SNAT(Some(NAT {
            addr: Some(string(napt.ipv4.to_string())),
            family: Some(NATFamily::IP),
            port,
            flags: None,
        }));
    }
    Statement::Masquerade(Some(NAT {
        addr: None,
        family: None,
        port,
        flags: None,
    }))
}

fn rule(chain: &str, expr: Vec<Stmt>, comment: String) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family: FAMILY,
        table: Cow::Borrowed(TABLE),
        chain: Cow::Owned(chain.to_owned()),
        expr: Cow::Owned(expr),
        handle: None,
        index: None,
        comment: Some(Cow::Owned(comment)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6plus_like() -> Napt {
        // PSID 1 of a v6plus-shaped rule (offset 4, 8-bit PSID): 15 ranges of 16 ports.
        let ports = (1..16u16)
            .map(|a| PortRange {
                first: (a << 12) | (1 << 4),
                last: (a << 12) | (1 << 4) | 15,
            })
            .collect();
        Napt {
            tunnel: "mape".into(),
            device: "v6g-mape".into(),
            ipv4: Ipv4Addr::new(198, 18, 8, 1),
            ports,
            realm: None,
        }
    }

    fn json(r: &Ruleset) -> String {
        serde_json::to_string(&r.content).unwrap()
    }

    #[test]
    fn every_range_gets_a_chain_and_the_split_reaches_them_all() {
        let r = with_napt(None, &[v6plus_like()]).unwrap();
        let chains: Vec<String> = r
            .content
            .iter()
            .filter_map(|o| match o {
                NfListObject::Chain(c) => Some(c.name.to_string()),
                _ => None,
            })
            .collect();
        // The base chain, one per range, the guard.
        assert_eq!(chains.len(), 17, "{chains:?}");
        let text = json(&r);
        assert!(
            text.contains(r#""numgen":{"mode":"inc","mod":15}"#),
            "{text}"
        );
        for i in 0..15 {
            assert!(text.contains(&format!(r#""jump":{{"target":"napt_mape_{i}"}}"#)));
        }
        // The first and the last range of PSID 1 (RFC 7597 5.1: A = 1..15, PSID in bits 4-11).
        assert!(
            text.contains(r#""masquerade":{"port":{"range":[4112,4127]}}"#),
            "{text}"
        );
        assert!(
            text.contains(r#""masquerade":{"port":{"range":[61456,61471]}}"#),
            "{text}"
        );
        // Three protocols per range chain, the split and the drop in the base chain, the
        // guard's three.
        assert_eq!(r.rule_count(), 15 * 3 + 2 + 3);
    }

    #[test]
    fn the_guard_drops_what_would_leave_from_outside_the_set() {
        let r = with_napt(None, &[v6plus_like()]).unwrap();
        let guard: Vec<String> = r
            .content
            .iter()
            .filter_map(|o| match o {
                NfListObject::Rule(rule) if rule.chain == "napt_mape_guard" => {
                    Some(serde_json::to_string(&rule.expr).unwrap())
                }
                _ => None,
            })
            .collect();
        assert_eq!(guard.len(), 3, "{guard:?}");
        assert!(
            guard[0].contains(r#""protocol":"ip","field":"saddr"}},"right":"198.18.8.1""#),
            "{}",
            guard[0]
        );
        for (rule, field) in guard[1..].iter().zip(["th", "icmp"]) {
            assert!(rule.contains(r#""oifname"}},"right":"v6g-mape""#), "{rule}");
            assert!(rule.contains(&format!(r#""protocol":"{field}""#)), "{rule}");
            assert!(rule.contains(r#""op":"!=""#), "{rule}");
            // Every range of the set, the first and the last among them.
            assert!(rule.contains(r#""range":[4112,4127]"#), "{rule}");
            assert!(rule.contains(r#""range":[61456,61471]"#), "{rule}");
            assert!(rule.contains(r#""counter":"napt_mape_outside""#), "{rule}");
            assert!(rule.ends_with(r#"{"drop":null}]"#), "{rule}");
        }
    }

    #[test]
    fn on_the_kernel_path_the_realm_is_matched_and_the_shared_address_named() {
        let tun = with_napt(None, &[v6plus_like()]).unwrap();
        let napt = Napt {
            realm: Some(0xf600),
            ..v6plus_like()
        };
        let r = with_napt(None, &[napt]).unwrap();
        let text = json(&r);
        // The split, the drop and the guard's three once more, for the realm.
        assert_eq!(r.rule_count(), tun.rule_count() + 2 + 3);
        let realm = r#"{"match":{"left":{"rt":{"key":"classid"}},"right":62976,"op":"=="}}"#;
        assert_eq!(text.matches(realm).count(), 2 + 3, "{text}");
        assert!(
            text.contains(
                r#""snat":{"addr":"198.18.8.1","family":"ip","port":{"range":[4112,4127]}}"#
            ),
            "{text}"
        );
        assert!(!text.contains("masquerade"), "{text}");
        assert!(json(&tun).contains("masquerade"));
    }

    #[test]
    fn chains_and_counters_come_before_the_rules_that_name_them() {
        let firewall_less = with_napt(None, &[v6plus_like()]).unwrap();
        let first_rule = firewall_less
            .content
            .iter()
            .position(|o| matches!(o, NfListObject::Rule(_)))
            .unwrap();
        assert!(
            firewall_less.content[first_rule..]
                .iter()
                .all(|o| matches!(o, NfListObject::Rule(_)))
        );
        assert_eq!(with_napt(None, &[]), None);
    }
}
