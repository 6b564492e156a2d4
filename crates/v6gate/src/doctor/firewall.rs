//! The host's nftables ruleset (iptables-nft rules included): rules that drop or reject what
//! tunnels need. ICMPv6 Packet Too Big (path MTU discovery), protocol 4 and 41 (RFC 2473 and
//! RFC 4213 framing), ESP (50), UDP 500 and 4500 (IKE, NAT-T).

use std::process::Command;

use control::{Config, Mode};
use serde_json::Value;

use super::Check;

/// Something a tunnel needs to receive, as nftables may match it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    PacketTooBig,
    Protocol4,
    Protocol41,
    Esp,
    Udp500,
    Udp4500,
}

impl Need {
    fn describe(self) -> &'static str {
        match self {
            Self::PacketTooBig => {
                "ICMPv6 Packet Too Big (path MTU discovery: without it large packets vanish)"
            }
            Self::Protocol4 => "protocol 4 (IPv4 in IPv6, RFC 2473)",
            Self::Protocol41 => "protocol 41 (IPv6 in IPv6 / IPv4)",
            Self::Esp => "ESP, protocol 50",
            Self::Udp500 => "UDP 500 (IKE)",
            Self::Udp4500 => "UDP 4500 (IKE and ESP behind NAT)",
        }
    }
}

pub(super) fn checks(config: Option<&Config>) -> Vec<Check> {
    let name = "firewall";
    let output = match Command::new("nft").args(["-j", "list", "ruleset"]).output() {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            return vec![Check::warn(
                name,
                format!(
                    "cannot read the nftables ruleset: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                "run doctor as root",
            )];
        }
        Err(_) => return vec![Check::pass(name, "nft is not installed: no nftables rules")],
    };
    let ruleset: Value = match serde_json::from_slice(&output.stdout) {
        Ok(v) => v,
        Err(e) => return vec![Check::warn(name, format!("nft -j output: {e}"), "")],
    };
    let ipsec = config.is_none_or(|c| c.tunnels.iter().any(|t| t.mode == Mode::Ipsec));
    let plain = config.is_none_or(|c| c.tunnels.iter().any(|t| t.mode != Mode::Ipsec));
    let relevant = |need: Need| match need {
        Need::PacketTooBig => true,
        Need::Protocol4 | Need::Protocol41 => plain,
        Need::Esp | Need::Udp500 | Need::Udp4500 => ipsec,
    };
    let mut out = Vec::new();
    for (place, needs) in dropping_rules(&ruleset) {
        for need in needs.into_iter().filter(|n| relevant(*n)) {
            out.push(Check::fail(
                format!("firewall: {}", need.describe()),
                format!("{place} drops it"),
                format!("remove that rule, or accept {} before it", need.describe()),
            ));
        }
    }
    if out.is_empty() {
        out.push(Check::pass(name, "no rule drops what the tunnels need"));
    }
    out
}

/// Each drop/reject rule and what it catches, with its place (`inet filter input`).
fn dropping_rules(ruleset: &Value) -> Vec<(String, Vec<Need>)> {
    let items = ruleset["nftables"].as_array().cloned().unwrap_or_default();
    let mut found = Vec::new();
    for item in &items {
        let Some(rule) = item.get("rule") else {
            continue;
        };
        let exprs = rule["expr"].as_array().cloned().unwrap_or_default();
        let drops = exprs
            .iter()
            .any(|e| e.get("drop").is_some() || e.get("reject").is_some());
        if !drops {
            continue;
        }
        let needs: Vec<Need> = exprs
            .iter()
            .filter_map(|e| e.get("match"))
            .flat_map(caught)
            .collect();
        if !needs.is_empty() {
            let place = format!(
                "the rule in {} {} {} (handle {})",
                rule["family"].as_str().unwrap_or("?"),
                rule["table"].as_str().unwrap_or("?"),
                rule["chain"].as_str().unwrap_or("?"),
                rule["handle"]
            );
            found.push((place, needs));
        }
    }
    found
}

/// What one `match` expression catches among the needs.
fn caught(m: &Value) -> Vec<Need> {
    if m["op"].as_str().is_some_and(|op| op == "!=") {
        return Vec::new();
    }
    let left = &m["left"];
    let values = values(&m["right"]);
    let field = |protocol: &str, name: &str| {
        left["payload"]["protocol"].as_str() == Some(protocol)
            && left["payload"]["field"].as_str() == Some(name)
    };
    let is_protocol = left["meta"]["key"].as_str() == Some("l4proto")
        || field("ip", "protocol")
        || field("ip6", "nexthdr");
    let mut needs = Vec::new();
    if field("icmpv6", "type") && values.iter().any(|v| v.matches("packet-too-big", 2)) {
        needs.push(Need::PacketTooBig);
    }
    if is_protocol {
        for (need, name, number) in [
            (Need::Protocol4, "ipencap", 4),
            (Need::Protocol41, "ipv6", 41),
            (Need::Esp, "esp", 50),
        ] {
            if values.iter().any(|v| v.matches(name, number)) {
                needs.push(need);
            }
        }
    }
    if field("udp", "dport") || field("th", "dport") {
        for (need, name, number) in [
            (Need::Udp500, "isakmp", 500),
            (Need::Udp4500, "ipsec-nat-t", 4500),
        ] {
            if values.iter().any(|v| v.matches(name, number)) {
                needs.push(need);
            }
        }
    }
    needs
}

/// A value on the right of a match: a name, a number, or a range of numbers.
enum Right {
    Name(String),
    Range(u64, u64),
}

impl Right {
    fn matches(&self, name: &str, number: u64) -> bool {
        match self {
            Self::Name(n) => n == name,
            Self::Range(lo, hi) => (*lo..=*hi).contains(&number),
        }
    }
}

fn values(right: &Value) -> Vec<Right> {
    match right {
        Value::String(s) => vec![Right::Name(s.clone())],
        Value::Number(n) => n.as_u64().map(|n| Right::Range(n, n)).into_iter().collect(),
        Value::Array(items) => items.iter().flat_map(values).collect(),
        Value::Object(o) => {
            if let Some(set) = o.get("set") {
                values(set)
            } else if let Some(Value::Array(r)) = o.get("range") {
                match (
                    r.first().and_then(Value::as_u64),
                    r.get(1).and_then(Value::as_u64),
                ) {
                    (Some(lo), Some(hi)) => vec![Right::Range(lo, hi)],
                    _ => Vec::new(),
                }
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nft -j list ruleset` of a chain as nftables 1.0.6 prints it.
    fn ruleset(rules: &[&str]) -> Value {
        let items: Vec<String> = rules
            .iter()
            .enumerate()
            .map(|(i, expr)| {
                format!(
                    r#"{{"rule": {{"family": "inet", "table": "filter", "chain": "input", "handle": {i}, "expr": {expr}}}}}"#
                )
            })
            .collect();
        serde_json::from_str(&format!(r#"{{"nftables": [{}]}}"#, items.join(","))).unwrap()
    }

    #[test]
    fn finds_what_tunnels_need_among_drops() {
        let r = ruleset(&[
            r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "icmpv6", "field": "type"}}, "right": "packet-too-big"}}, {"drop": null}]"#,
            r#"[{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "ipencap"}}, {"drop": null}]"#,
            r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": {"set": [500, 4500]}}}, {"reject": {"type": "icmpx", "expr": "port-unreachable"}}]"#,
            r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "nexthdr"}}, "right": "esp"}}, {"accept": null}]"#,
            r#"[{"match": {"op": "!=", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 500}}, {"drop": null}]"#,
            r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": {"range": [1, 1024]}}}, {"drop": null}]"#,
        ]);
        let found = dropping_rules(&r);
        let needs: Vec<Vec<Need>> = found.iter().map(|(_, n)| n.clone()).collect();
        assert_eq!(
            needs,
            [
                vec![Need::PacketTooBig],
                vec![Need::Protocol4],
                vec![Need::Udp500, Need::Udp4500],
                vec![Need::Udp500],
            ]
        );
        assert!(found[0].0.contains("inet filter input"), "{}", found[0].0);
    }
}
