//! `[[table]]` and `[[rule]]`.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use toml::Value;

use super::{Check, DEFAULT_RULE_PRIORITY, MAIN_RULE_PRIORITY, MAX_ENTRIES};
use crate::file::Int;
use crate::firewall::file::{FileRule, FileTable};
use crate::firewall::model::{Family, POLICY_MARK_BASE, PolicyRule, RouteTable, TableRoute};
use crate::model::{Gateway, MAIN_TABLE};

impl Check<'_> {
    pub(super) fn tables(&mut self, files: Vec<FileTable>, gateway: &Gateway) -> Vec<RouteTable> {
        self.count("table", files.len());
        let mut names = HashSet::new();
        let mut ids = HashMap::new();
        let mut out = Vec::new();
        for (i, t) in files.into_iter().enumerate() {
            let key = |k: &str| format!("table[{i}].{k}");
            let before = self.errors.len();
            if self.name(&key("name"), &t.name) {
                if ["main", "local", "default", "unspec"].contains(&t.name.as_str()) {
                    self.error(
                        key("name"),
                        format!(
                            "{:?} is a kernel table; v6gate fills only tables of its own",
                            t.name
                        ),
                    );
                } else if !names.insert(t.name.clone()) {
                    self.error(
                        key("name"),
                        format!("[[table]] {:?} is defined twice", t.name),
                    );
                }
            }
            let Int(id) = t.id;
            let id = match u32::try_from(id) {
                Ok(0 | 253..=255) => {
                    self.error(
                        key("id"),
                        format!("{id} is a kernel table (unspec, default, main, local)"),
                    );
                    None
                }
                Ok(id) if id == gateway.pin_table => {
                    self.error(
                        key("id"),
                        format!("{id} is the pin table (gateway.pin_table)"),
                    );
                    None
                }
                Ok(id) => {
                    if let Some(other) = ids.insert(id, t.name.clone()) {
                        self.error(key("id"), format!("{id} is also the id of table {other:?}"));
                    }
                    Some(id)
                }
                Err(_) => {
                    self.error(
                        key("id"),
                        format!("expected a table id 1-4294967295, found {id}"),
                    );
                    None
                }
            };
            let routes = t.routes.unwrap_or_default();
            if routes.len() > MAX_ENTRIES {
                self.error(
                    key("routes"),
                    format!("has {} routes, more than {MAX_ENTRIES}", routes.len()),
                );
            }
            let mut parsed = Vec::new();
            for (j, r) in routes.into_iter().enumerate() {
                let k = |f: &str| format!("table[{i}].routes[{j}].{f}");
                let dst = self.prefix(&k("dst"), &r.dst);
                let via = r.via.as_deref().and_then(|v| match v.parse::<IpAddr>() {
                    Ok(a) => Some(a),
                    Err(_) => {
                        self.error(k("via"), format!("expected a gateway address, found {v:?}"));
                        None
                    }
                });
                if let (Some(dst), Some(via)) = (dst, via)
                    && dst.addr().is_ipv4() != via.is_ipv4()
                {
                    self.error(k("via"), format!("{via} is not of {dst}'s family"));
                }
                if let Some(d) = &r.device {
                    self.device(&k("device"), d, false);
                }
                if r.via.is_none() && r.device.is_none() {
                    self.error(k("dst"), "the route needs `via`, `device` or both");
                }
                let metric = match r.metric {
                    None => Some(gateway.route_metric),
                    Some(Int(m)) => u32::try_from(m).ok().or_else(|| {
                        self.error(k("metric"), format!("expected 0-4294967295, found {m}"));
                        None
                    }),
                };
                if let (Some(dst), Some(metric)) = (dst, metric) {
                    parsed.push(TableRoute {
                        dst,
                        via,
                        device: r.device,
                        metric,
                    });
                }
            }
            if self.errors.len() == before
                && let Some(id) = id
            {
                out.push(RouteTable {
                    name: t.name,
                    id,
                    routes: parsed,
                });
            }
        }
        out
    }

    pub(super) fn rules(
        &mut self,
        files: Vec<FileRule>,
        tables: &[RouteTable],
        written: &HashSet<String>,
        gateway: &Gateway,
    ) -> Vec<PolicyRule> {
        self.count("rule", files.len());
        let mut names = HashSet::new();
        let mut priorities = HashMap::new();
        let mut marks = 0u32;
        let mut out = Vec::new();
        for (i, r) in files.into_iter().enumerate() {
            let key = |k: &str| format!("rule[{i}].{k}");
            let before = self.errors.len();
            if self.name(&key("name"), &r.name) && !names.insert(r.name.clone()) {
                self.error(
                    key("name"),
                    format!("[[rule]] {:?} is defined twice", r.name),
                );
            }
            let lo = i64::from(gateway.pin_rule_priority) + 1;
            let priority = match r.priority {
                None => Some(DEFAULT_RULE_PRIORITY.saturating_add(i as u32)),
                Some(Int(p)) if (lo..MAIN_RULE_PRIORITY).contains(&p) => Some(p as u32),
                Some(Int(p)) => {
                    self.error(
                        key("priority"),
                        format!(
                            "expected {lo}..={}, found {p}: after the pin rule \
                             (gateway.pin_rule_priority) and before `main` (32766)",
                            MAIN_RULE_PRIORITY - 1
                        ),
                    );
                    None
                }
            };
            if let Some(p) = priority
                && let Some(other) = priorities.insert(p, r.name.clone())
            {
                self.error(
                    key("priority"),
                    format!("{p} is also the priority of rule {other:?}"),
                );
            }
            let from = r.from.as_deref().and_then(|t| self.prefix(&key("from"), t));
            let to = r.to.as_deref().and_then(|t| self.prefix(&key("to"), t));
            let family = match (from, to) {
                (Some(f), Some(t)) if f.addr().is_ipv4() != t.addr().is_ipv4() => {
                    self.error(
                        key("to"),
                        format!("{t} is not of the family of `from` ({f})"),
                    );
                    Family::Any
                }
                (Some(n), _) | (None, Some(n)) if n.addr().is_ipv4() => Family::Ipv4,
                (Some(_), _) | (None, Some(_)) => Family::Ipv6,
                (None, None) => Family::Any,
            };
            if let Some(d) = &r.iif {
                self.device(&key("iif"), d, false);
            }
            let table = match &r.table {
                Value::String(s) if s == "main" => Some(MAIN_TABLE),
                Value::String(s) => match tables.iter().find(|t| t.name == *s) {
                    Some(t) => Some(t.id),
                    // A table written but refused has its own error already.
                    None if written.contains(s) => None,
                    None => {
                        self.error(key("table"), format!("no [[table]] is named {s:?}"));
                        None
                    }
                },
                Value::Integer(n) => {
                    match u32::try_from(*n) {
                        Ok(id @ (1..=254 | 256..)) => Some(id),
                        _ => {
                            self.error(key("table"), format!("expected a table id 1-4294967295 other than 255 (local), found {n}"));
                            None
                        }
                    }
                }
                other => {
                    self.error(
                        key("table"),
                        format!(
                            "expected a [[table]] name or an id, found {}",
                            other.type_str()
                        ),
                    );
                    None
                }
            };
            let protocols = self.protocols(&key("proto"), r.proto.as_deref(), &[]);
            if let Some(ps) = &protocols {
                self.protocols_fit_family(&key("proto"), ps, family);
            }
            let ports = self.ports(
                &key("ports"),
                r.ports.as_ref(),
                protocols.as_deref().filter(|p| !p.is_empty()),
            );
            if r.ports.is_some() && protocols.as_ref().is_some_and(Vec::is_empty) {
                self.error(
                    key("ports"),
                    "ports need proto = [\"tcp\"], [\"udp\"] or [\"sctp\"]",
                );
            }
            if self.errors.len() == before
                && let (Some(priority), Some(table), Some(protocols), Some(ports)) =
                    (priority, table, protocols, ports)
            {
                let mark = (!protocols.is_empty() || !ports.is_empty()).then(|| {
                    marks += 1;
                    POLICY_MARK_BASE + marks
                });
                out.push(PolicyRule {
                    name: r.name,
                    priority,
                    from,
                    to,
                    iif: r.iif,
                    table,
                    family,
                    protocols,
                    ports,
                    mark,
                });
            }
        }
        out
    }
}
