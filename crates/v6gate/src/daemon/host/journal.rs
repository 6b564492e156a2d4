//! The journal: what one instance has installed, and the original of every sysctl it changed.
//! The next start of the same instance reads it to remove what a crash left and to restore
//! the sysctls the crashed run had changed.
//!
//! One tab-separated line per entry, so it reads with `cat`. A line records an object (or a
//! sysctl original); the same line behind `-` says it is gone again. The owner appends a line
//! before each change to the host and rewrites the whole file (atomically, in the root-only
//! runtime directory) when the removals pile up, so a change costs one line, not the file. Reading accepts only what the
//! current config could have installed: sysctl keys it sets, routes in its tables, its exact
//! pin rules. Anything else is reported and ignored, never acted on.

use std::collections::HashMap;

use ipnet::IpNet;
use sys::netlink::{Family, Route, RouteKind, Rule};

use super::object::{Identity, Object};

const HEADER: &str = "v6gate journal 1";
/// Longest sysctl value accepted from a journal (forwarding flags are one byte).
const MAX_VALUE: usize = 256;

/// What one instance recorded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Journal {
    /// Sysctl keys with the value they had before this instance first wrote them.
    pub originals: Vec<(String, String)>,
    /// Installed objects, in the order installed.
    pub objects: Vec<Object>,
}

/// What a journal may name, derived from the config.
#[derive(Debug, Default, Clone)]
pub struct Accept {
    pub sysctl_keys: Vec<String>,
    pub route_tables: Vec<u32>,
    pub route_protocol: u8,
    pub rules: Vec<Rule>,
    /// The config installs the nftables table too: a crashed run's is replaced, not deleted.
    pub keep_table: bool,
    /// The instance's kernel-path clamping table, the one other table a journal may name; a
    /// crashed run's is deleted (its routes go with it, so nothing needs its clamping).
    pub mss_table: String,
}

impl Journal {
    /// The whole journal: header, originals, objects.
    pub fn render(&self, instance: &str) -> String {
        let mut out = format!("{HEADER}\ninstance\t{instance}\n");
        for (key, value) in &self.originals {
            out.push_str(&original_line(key, value));
        }
        for object in &self.objects {
            out.push_str(&line(object));
        }
        out
    }

    /// Reads `text`, keeping only what `accept` allows; the rest comes back as short
    /// descriptions of the refused lines.
    pub fn parse(text: &str, accept: &Accept) -> (Self, Vec<String>) {
        let mut journal = Self::default();
        let mut refused = Vec::new();
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return legacy(text, accept);
        }
        let mut objects: Vec<Option<Object>> = Vec::new();
        let mut index: HashMap<Identity, usize> = HashMap::new();
        for (n, text) in lines.enumerate() {
            let (gone, entry) = match text.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, text),
            };
            match parse_line(entry, accept) {
                Ok(Entry::Original(key, value)) => {
                    let known = journal.originals.iter().position(|(k, _)| *k == key);
                    match (gone, known) {
                        (true, Some(i)) => {
                            journal.originals.remove(i);
                        }
                        (false, None) => journal.originals.push((key, value)),
                        // The first original counts; a repeat or an unknown removal is moot.
                        _ => {}
                    }
                }
                Ok(Entry::Object(object)) => {
                    let id = object.identity();
                    match (gone, index.get(&id)) {
                        (true, Some(&i)) => {
                            objects[i] = None;
                            index.remove(&id);
                        }
                        (true, None) => {}
                        (false, Some(&i)) => objects[i] = Some(object),
                        (false, None) => {
                            index.insert(id, objects.len());
                            objects.push(Some(object));
                        }
                    }
                }
                Ok(Entry::Skip) => {}
                Err(why) => {
                    let shown: String = text.chars().take(80).collect();
                    refused.push(format!("line {}: {why}: {shown:?}", n + 2));
                }
            }
        }
        journal.objects = objects.into_iter().flatten().collect();
        (journal, refused)
    }
}

/// The sysctl journal of earlier versions: `key=original` lines and nothing else. Its
/// originals still count after an upgrade that follows a crash.
fn legacy(text: &str, accept: &Accept) -> (Journal, Vec<String>) {
    let mut journal = Journal::default();
    let mut refused = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let entry = line
            .split_once('=')
            .map(|(key, value)| format!("original\t{key}\t{value}"));
        match entry.as_deref().map(|e| parse_line(e, accept)) {
            Some(Ok(Entry::Original(key, value)))
                if !journal.originals.iter().any(|(k, _)| *k == key) =>
            {
                journal.originals.push((key, value));
            }
            Some(Ok(_)) => {}
            Some(Err(why)) => refused.push(format!("line {}: {why}", n + 1)),
            None => refused.push(format!("line {}: not a journal entry", n + 1)),
        }
    }
    (journal, refused)
}

enum Entry {
    Original(String, String),
    Object(Object),
    Skip,
}

fn parse_line(line: &str, accept: &Accept) -> Result<Entry, &'static str> {
    let (kind, rest) = line.split_once('\t').ok_or("not an entry")?;
    match kind {
        "instance" => Ok(Entry::Skip),
        "original" | "sysctl" => {
            // Values may hold tabs (ping_group_range); keys never do.
            let (key, value) = rest.split_once('\t').ok_or("no value")?;
            if !accept.sysctl_keys.iter().any(|k| k == key) {
                return Err("a sysctl key this config does not set");
            }
            if value.len() > MAX_VALUE || value.contains(['\n', '\0']) {
                return Err("an implausible sysctl value");
            }
            Ok(if kind == "original" {
                Entry::Original(key.to_owned(), value.to_owned())
            } else {
                Entry::Object(Object::Sysctl {
                    key: key.to_owned(),
                    value: value.to_owned(),
                })
            })
        }
        "route" => {
            let f: Vec<&str> = rest.split('\t').collect();
            let [dst, table, metric, kind, oif, gateway] = f[..] else {
                return Err("a route needs 6 fields");
            };
            let route = Route {
                dst: dst.parse::<IpNet>().map_err(|_| "bad destination")?,
                table: table.parse().map_err(|_| "bad table")?,
                protocol: accept.route_protocol,
                metric: parse_opt(metric).ok_or("bad metric")?,
                kind: match kind {
                    "unicast" => RouteKind::Unicast,
                    "blackhole" => RouteKind::Blackhole,
                    _ => return Err("a route kind v6gate does not install"),
                },
                oif: parse_opt(oif).ok_or("bad device index")?,
                gateway: parse_opt(gateway).ok_or("bad gateway")?,
                mtu: None,
                prefsrc: None,
                realm: None,
            };
            if !accept.route_tables.contains(&route.table) {
                return Err("a table this config does not use");
            }
            Ok(Entry::Object(Object::Route(route)))
        }
        "rule" => {
            let f: Vec<&str> = rest.split('\t').collect();
            // Journals of earlier versions have no selector fields.
            let (fields, selectors) = match f.len() {
                7 => (&f[..], ["-", "-", "-"]),
                10 => (&f[..7], [f[7], f[8], f[9]]),
                _ => return Err("a rule needs 7 or 10 fields"),
            };
            let [family, priority, table, fwmark, fwmask, invert, suppress] = fields[..] else {
                return Err("a rule needs 7 or 10 fields");
            };
            let [from, to, iif] = selectors;
            let rule = Rule {
                family: match family {
                    "ipv4" => Family::V4,
                    "ipv6" => Family::V6,
                    _ => return Err("bad family"),
                },
                priority: priority.parse().map_err(|_| "bad priority")?,
                table: table.parse().map_err(|_| "bad table")?,
                fwmark: parse_opt(fwmark).ok_or("bad fwmark")?,
                fwmask: parse_opt(fwmask).ok_or("bad fwmask")?,
                invert: invert == "1",
                suppress_prefixlen: parse_opt(suppress).ok_or("bad suppress_prefixlength")?,
                from: parse_opt(from).ok_or("bad from")?,
                to: parse_opt(to).ok_or("bad to")?,
                iif: parse_opt::<String>(iif).ok_or("bad iif")?,
            };
            if !accept.rules.contains(&rule) {
                return Err("a rule this config does not install");
            }
            Ok(Entry::Object(Object::Rule(rule)))
        }
        "link" => {
            let f: Vec<&str> = rest.splitn(3, '\t').collect();
            let [ifindex, mtu, device] = f[..] else {
                return Err("a link needs 3 fields");
            };
            Ok(Entry::Object(Object::Link {
                ifindex: ifindex.parse().map_err(|_| "bad device index")?,
                mtu: mtu.parse().map_err(|_| "bad mtu")?,
                device: device.chars().take(16).collect(),
            }))
        }
        "address" => {
            let f: Vec<&str> = rest.splitn(3, '\t').collect();
            let [ifindex, net, device] = f[..] else {
                return Err("an address needs 3 fields");
            };
            Ok(Entry::Object(Object::Address {
                ifindex: ifindex.parse().map_err(|_| "bad device index")?,
                net: net.parse().map_err(|_| "bad address")?,
                device: device.chars().take(16).collect(),
            }))
        }
        "table" => {
            let name = rest.strip_prefix("inet\t").unwrap_or_default();
            if name != super::table::NAME && (name.is_empty() || name != accept.mss_table) {
                return Err("a table v6gate does not own");
            }
            Ok(Entry::Object(Object::Table(super::table::Table::leftover(
                name,
            ))))
        }
        "program" => {
            let f: Vec<&str> = rest.split('\t').collect();
            let [tunnel, device, hook, mode] = f[..] else {
                return Err("a program needs 4 fields");
            };
            // IFNAMSIZ less the terminating NUL; no path separators.
            if device.is_empty() || device.len() > 15 || device.contains(['/', ' ']) {
                return Err("bad device name");
            }
            Ok(Entry::Object(Object::Program(
                super::program::Program::leftover(
                    tunnel.chars().take(64).collect(),
                    device.to_owned(),
                    hook.parse().map_err(|()| "bad hook")?,
                    match mode {
                        "clsact" => true,
                        "tcx" => false,
                        _ => return Err("bad attach mode"),
                    },
                ),
            )))
        }
        _ => Err("unknown entry"),
    }
}

/// The line recording `object`.
pub fn line(object: &Object) -> String {
    match object {
        Object::Sysctl { key, value } => format!("sysctl\t{key}\t{value}\n"),
        Object::Route(r) => format!(
            "route\t{}\t{}\t{}\t{}\t{}\t{}\n",
            r.dst,
            r.table,
            opt(r.metric),
            r.kind,
            opt(r.oif),
            opt(r.gateway)
        ),
        Object::Rule(r) => format!(
            "rule\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            r.family,
            r.priority,
            r.table,
            opt(r.fwmark),
            opt(r.fwmask),
            u8::from(r.invert),
            opt(r.suppress_prefixlen),
            opt(r.from),
            opt(r.to),
            opt(r.iif.as_deref())
        ),
        Object::Link {
            ifindex,
            device,
            mtu,
        } => format!("link\t{ifindex}\t{mtu}\t{device}\n"),
        Object::Address {
            ifindex,
            device,
            net,
        } => format!("address\t{ifindex}\t{net}\t{device}\n"),
        Object::Table(t) => format!("table\tinet\t{}\n", t.name()),
        Object::Program(p) => format!(
            "program\t{}\t{}\t{}\t{}\n",
            p.tunnel,
            p.device,
            p.hook,
            if p.clsact { "clsact" } else { "tcx" }
        ),
    }
}

/// The line recording a sysctl's original value.
pub fn original_line(key: &str, value: &str) -> String {
    format!("original\t{key}\t{value}\n")
}

fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// `-` is none; anything else must parse. The outer `None` is a parse failure.
fn parse_opt<T: std::str::FromStr>(text: &str) -> Option<Option<T>> {
    if text == "-" {
        Some(None)
    } else {
        text.parse().ok().map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin_rule() -> Rule {
        Rule {
            family: Family::V6,
            priority: 100,
            table: 6464,
            fwmark: Some(0x7636),
            fwmask: Some(u32::MAX),
            invert: true,
            suppress_prefixlen: None,
            from: None,
            to: None,
            iif: None,
        }
    }

    fn policy_rule() -> Rule {
        Rule {
            from: Some("198.51.100.5/32".parse().unwrap()),
            iif: Some("br0".into()),
            ..Rule::lookup(Family::V4, 1000, 300)
        }
    }

    fn accept() -> Accept {
        Accept {
            sysctl_keys: vec!["net/ipv4/ip_forward".into()],
            route_tables: vec![6464, 254],
            route_protocol: 118,
            rules: vec![pin_rule(), policy_rule()],
            keep_table: false,
            mss_table: "v6gate_mss_v6gate".into(),
        }
    }

    fn journal() -> Journal {
        Journal {
            originals: vec![("net/ipv4/ip_forward".into(), "0".into())],
            objects: vec![
                Object::Sysctl {
                    key: "net/ipv4/ip_forward".into(),
                    value: "1".into(),
                },
                Object::Route(Route {
                    dst: "2001:db8:0:2::1/128".parse().unwrap(),
                    table: 6464,
                    protocol: 118,
                    metric: None,
                    oif: Some(2),
                    gateway: Some("fe80::1".parse().unwrap()),
                    kind: RouteKind::Unicast,
                    mtu: None,
                    prefsrc: None,
                    realm: None,
                }),
                Object::Route(Route {
                    dst: "2001:db8:0:2::1/128".parse().unwrap(),
                    table: 254,
                    protocol: 118,
                    metric: Some(4_294_967_295),
                    oif: None,
                    gateway: None,
                    kind: RouteKind::Blackhole,
                    mtu: None,
                    prefsrc: None,
                    realm: None,
                }),
                Object::Rule(pin_rule()),
                Object::Link {
                    ifindex: 7,
                    device: "v6g-ab".into(),
                    mtu: 1460,
                },
                Object::Address {
                    ifindex: 7,
                    device: "v6g-ab".into(),
                    net: "198.51.100.1/30".parse().unwrap(),
                },
                Object::Program(super::super::program::Program::leftover(
                    "ab".into(),
                    "wan0".into(),
                    kpath::Hook::Ingress,
                    true,
                )),
            ],
        }
    }

    #[test]
    fn round_trips() {
        let j = journal();
        let (back, refused) = Journal::parse(&j.render("/run/v6gate/v6gate.sock"), &accept());
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(back, j);
    }

    #[test]
    fn refuses_what_the_config_does_not_set() {
        let text = format!(
            "{HEADER}\n\
             original\tkernel/core_pattern\t|/tmp/x\n\
             sysctl\tkernel/core_pattern\t|/tmp/x\n\
             route\t198.51.100.0/24\t10\t-\tunicast\t-\t-\n\
             route\t198.51.100.0/24\t6464\t-\tlocal\t-\t-\n\
             rule\tipv6\t100\t6465\t-\t-\t0\t-\n\
             program\tab\t../../etc\tingress\tclsact\n\
             program\tab\twan0\tsideways\tclsact\n\
             original\tnet/ipv4/ip_forward\t0\n"
        );
        let (j, refused) = Journal::parse(&text, &accept());
        assert_eq!(refused.len(), 7, "{refused:?}");
        assert_eq!(j.originals, [("net/ipv4/ip_forward".into(), "0".into())]);
        assert!(j.objects.is_empty());
    }

    #[test]
    fn removals_and_replacements_replay_in_order() {
        let j = journal();
        let mut text = j.render("/run/v6gate/v6gate.sock");
        // The pin route moved to a blackhole, the address went, then the rule went and came
        // back, and the forwarding original was restored.
        let Object::Route(pin) = &j.objects[1] else {
            unreachable!()
        };
        let moved = Object::Route(Route {
            oif: None,
            gateway: None,
            kind: RouteKind::Blackhole,
            mtu: None,
            prefsrc: None,
            realm: None,
            ..pin.clone()
        });
        text.push_str(&line(&moved));
        text.push_str(&format!("-{}", line(&j.objects[5])));
        text.push_str(&format!("-{}", line(&j.objects[3])));
        text.push_str(&line(&j.objects[3]));
        text.push_str(&format!("-{}", original_line("net/ipv4/ip_forward", "0")));
        let (back, refused) = Journal::parse(&text, &accept());
        assert!(refused.is_empty(), "{refused:?}");
        assert!(back.originals.is_empty());
        assert_eq!(
            back.objects,
            [
                j.objects[0].clone(),
                moved,
                j.objects[2].clone(),
                j.objects[4].clone(),
                j.objects[6].clone(),
                j.objects[3].clone()
            ]
        );
    }

    #[test]
    fn policy_rules_and_our_tables_round_trip_and_older_rule_lines_still_read() {
        use super::super::table::Table;
        let j = Journal {
            originals: Vec::new(),
            objects: vec![
                Object::Rule(policy_rule()),
                Object::Table(Table::leftover("v6gate")),
                Object::Table(Table::leftover("v6gate_mss_v6gate")),
            ],
        };
        let (back, refused) = Journal::parse(&j.render("v6gate.sock"), &accept());
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(back.objects.len(), 3);
        assert_eq!(back.objects[0], j.objects[0]);
        let names: Vec<&str> = back.objects[1..]
            .iter()
            .filter_map(|o| match o {
                Object::Table(t) => Some(t.name()),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["v6gate", "v6gate_mss_v6gate"]);
        // Seven fields, as written before rules had selectors; another table is not ours,
        // nor is another instance's clamping table.
        let text = format!(
            "{HEADER}\nrule\tipv6\t100\t6464\t30262\t4294967295\t1\t-\n\
             table\tinet\tfilter\n\
             table\tinet\tv6gate_mss_other\n\
             table\tinet\t\n"
        );
        let (back, refused) = Journal::parse(&text, &accept());
        assert_eq!(back.objects, [Object::Rule(pin_rule())]);
        assert_eq!(refused.len(), 3, "{refused:?}");
    }

    #[test]
    fn a_journal_of_the_earlier_format_gives_its_accepted_originals() {
        let text = "net/ipv4/ip_forward=0\nkernel/core_pattern=|/tmp/x\nno equals\n";
        let (j, refused) = Journal::parse(text, &accept());
        assert_eq!(j.originals, [("net/ipv4/ip_forward".into(), "0".into())]);
        assert!(j.objects.is_empty());
        assert_eq!(refused.len(), 2, "{refused:?}");
    }
}
