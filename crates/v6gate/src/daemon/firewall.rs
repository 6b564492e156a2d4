//! The firewall and policy routing (`[firewall]`, `[[zone]]`, `[[allow]]`, `[[port_forward]]`,
//! `[[table]]`, `[[rule]]`) as objects of the host state, under one owner name.
//!
//! The nftables table is rendered with each tunnel path's underlay device as its pin has it
//! (decided like a pin for a path not running yet), so a tunnel's outer packets are accepted
//! only there. Routes whose device does not exist yet (a PPPoE link that
//! comes up later) are left out and added when it appears: the owner re-renders after every
//! burst of link and route changes, and an unchanged rendering changes nothing on the host.

use std::collections::BTreeSet;

use anyhow::Context as _;
use control::Config;
use control::firewall::napt::{Napt, with_napt};
use control::firewall::routing;
use control::firewall::ruleset::{FAMILY, Ruleset, ruleset};
use sys::netlink::{Family, Netlink, Route, RouteKind, Rule};
use tracing::{debug, info, warn};

use crate::firewall_status::{FirewallStatus, ZoneStatus};

use super::host::table::{NAME as TABLE, Table};
use super::host::{Changes, Object};
use super::pin::Pin;
use super::{Daemon, ROUTE_PROTOCOL, link_index, link_name};

/// Host-state owner name of the firewall and policy-routing objects.
pub(super) const FIREWALL: &str = "firewall";

/// The objects a config wants, and the routes left out for a missing device.
pub(super) struct FirewallPlan {
    pub objects: Vec<Object>,
    pub missing: BTreeSet<String>,
}

impl FirewallPlan {
    /// What `config` means on this host now.
    /// `pinned` gives the underlay device of each running tunnel's path, by tunnel and path
    /// name; other paths are looked up.
    pub async fn of(
        config: &Config,
        netlink: &Netlink,
        pinned: &[((String, String), Option<u32>)],
        own: &[u32],
    ) -> Self {
        let mut underlays = Vec::new();
        for tunnel in config.enabled_tunnels() {
            for path in &tunnel.paths {
                let key = (tunnel.name.clone(), path.name.clone());
                let oif = match pinned.iter().find(|(k, _)| *k == key) {
                    Some((_, oif)) => *oif,
                    None => crate::plan::underlay(netlink, path.remote, own).await,
                };
                underlays.push((key, oif.and_then(link_name)));
            }
        }
        let mut objects = Vec::new();
        let rendered = ruleset(config, |t, p| {
            underlays
                .iter()
                .find(|((tn, pn), _)| *tn == t.name && *pn == p.name)
                .and_then(|(_, d)| d.clone())
        });
        if let Some(r) = rendered {
            objects.push(Object::Table(Table::new(r)));
        }
        let mut missing = BTreeSet::new();
        for route in routing::routes(config) {
            let oif = match &route.device {
                Some(device) => match link_index(device) {
                    Some(index) => Some(index),
                    None => {
                        missing.insert(format!("{route} (no device {device} yet)"));
                        continue;
                    }
                },
                None => None,
            };
            objects.push(Object::Route(Route {
                dst: route.dst,
                table: route.table,
                protocol: ROUTE_PROTOCOL,
                // The kernel's default, as an unset metric.
                metric: (route.metric != 0).then_some(route.metric),
                oif,
                gateway: route.via,
                kind: RouteKind::Unicast,
                mtu: None,
                prefsrc: None,
                realm: None,
            }));
        }
        objects.extend(policy_rules(config).into_iter().map(Object::Rule));
        Self { objects, missing }
    }

    /// Has the kernel check the ruleset (`nft --check`), changing nothing, so a config it
    /// would refuse is refused before anything else changes.
    pub fn check(self) -> anyhow::Result<Self> {
        for object in &self.objects {
            if let Object::Table(t) = object
                && let Some(r) = t.ruleset()
            {
                sys::nft::check_table(&r.table, &r.content).context("[firewall]")?;
            }
        }
        Ok(self)
    }
}

/// The rules only one of two rulesets has, by chain and name: `+input: management tcp/2222`.
fn rule_changes(old: &Ruleset, new: &Ruleset) -> Vec<String> {
    let (before, after) = (old.named_rules(), new.named_rules());
    let mut lines: Vec<String> = after
        .iter()
        .filter(|(_, json)| !before.iter().any(|(_, j)| j == json))
        .map(|(name, _)| format!("+{name}"))
        .chain(
            before
                .iter()
                .filter(|(_, json)| !after.iter().any(|(_, j)| j == json))
                .map(|(name, _)| format!("-{name}")),
        )
        .collect();
    lines.dedup();
    if lines.is_empty() {
        lines.push("rules reordered".into());
    }
    lines
}

/// The ip rules of `[[rule]]`, as installed.
pub(super) fn policy_rules(config: &Config) -> Vec<Rule> {
    routing::rules(config)
        .into_iter()
        .map(|r| Rule {
            fwmark: r.fwmark,
            from: r.from.map(|n| n.trunc()),
            to: r.to.map(|n| n.trunc()),
            iif: r.iif,
            ..Rule::lookup(
                if r.ipv4 { Family::V4 } else { Family::V6 },
                r.priority,
                r.table,
            )
        })
        .collect()
}

/// The routing tables `[[table]]` fills, which a journal may name.
pub(super) fn policy_tables(config: &Config) -> Vec<u32> {
    config.routing.tables.iter().map(|t| t.id).collect()
}

impl Daemon {
    /// Makes the host hold `plan`; says what changed, naming the rules of a changed table.
    pub(super) async fn set_firewall(&mut self, plan: FirewallPlan) -> anyhow::Result<Changes> {
        let old = self.host.objects_of(FIREWALL).find_map(|o| match o {
            Object::Table(t) => t.ruleset().cloned(),
            _ => None,
        });
        let new = plan.objects.iter().find_map(|o| match o {
            Object::Table(t) => t.ruleset().cloned(),
            _ => None,
        });
        let mut changes = self.host.set(FIREWALL, plan.objects).await?;
        if let (Some(old), Some(new)) = (&old, &new)
            && old != new
        {
            changes.changed.retain(|c| !c.starts_with("nftables table"));
            let rules = rule_changes(old, new);
            changes
                .changed
                .push(format!("nftables table inet {TABLE}: {}", rules.join(", ")));
        }
        if plan.missing != self.firewall_missing {
            for route in plan.missing.difference(&self.firewall_missing) {
                warn!("[[table]] route {route}: left out until the device exists");
            }
            self.firewall_missing = plan.missing;
        }
        Ok(changes)
    }

    /// The underlay device of every path of every running tunnel, as pinned.
    pub(super) fn pinned_underlays(&self) -> Vec<((String, String), Option<u32>)> {
        self.tunnels
            .iter()
            .flat_map(|t| {
                t.config.paths.iter().zip(&t.paths).map(|(cfg, rt)| {
                    let oif = match rt.pin {
                        Pin::Via { oif, .. } => Some(oif),
                        Pin::Blackhole => None,
                    };
                    ((t.config.name.clone(), cfg.name.clone()), oif)
                })
            })
            .collect()
    }

    /// What `config` means for the firewall on this host now.
    pub(super) async fn firewall_plan(&self, config: &Config) -> FirewallPlan {
        let own: Vec<u32> = self
            .tunnels
            .iter()
            .flat_map(|t| t.ifindexes.iter().copied())
            .collect();
        let mut plan =
            FirewallPlan::of(config, &self.netlink, &self.pinned_underlays(), &own).await;
        add_napt(&mut plan, &self.softwire_napts());
        plan
    }

    /// Renders the running config again after the host changed (an underlay moved, a device
    /// appeared) and applies what differs.
    pub(super) async fn refresh_firewall(&mut self) {
        let plan = self.firewall_plan(&self.config).await;
        match self.set_firewall(plan).await {
            Ok(changes) if !changes.is_empty() => info!("firewall: {}", changes.describe()),
            Ok(_) => {}
            Err(e) => warn!("firewall: {e:#}"),
        }
    }
}

impl Daemon {
    /// The firewall part of `status`, or `None` when the config has no firewall, no policy
    /// routing and no pending confirmation. Counters are read from the kernel now.
    pub(super) fn firewall_status(&self) -> Option<FirewallStatus> {
        let config = &self.config;
        let routing = &config.routing;
        let revert_in_secs = self.revert_in();
        if config.firewall.is_none()
            && routing.tables.is_empty()
            && routing.rules.is_empty()
            && revert_in_secs.is_none()
        {
            return None;
        }
        let mut status = FirewallStatus {
            table: "none".into(),
            revert_in_secs,
            ..FirewallStatus::default()
        };
        if let Some(fw) = &config.firewall {
            status.input = Some(fw.input.to_string());
            status.forward = Some(fw.forward.to_string());
            status.management = fw.management.iter().map(ToString::to_string).collect();
            status.zones = fw
                .zones
                .iter()
                .map(|z| ZoneStatus {
                    name: z.name.clone(),
                    devices: z
                        .devices
                        .iter()
                        .cloned()
                        .chain(
                            z.tunnels
                                .iter()
                                .filter_map(|t| config.tunnel(t))
                                .flat_map(|t| t.devices().into_iter().map(str::to_owned)),
                        )
                        .collect(),
                    input: z.input.map(|v| v.to_string()),
                    forward_to: z.forward_to.clone(),
                    masquerade: z.masquerade,
                    mss_clamp: z.mss_clamp,
                })
                .collect();
            match sys::nft::counters(FAMILY, TABLE) {
                Ok(Some(counted)) => {
                    status.table = "installed".into();
                    for c in counted {
                        status.count(&c.comment, c.packets, c.bytes);
                    }
                }
                Ok(None) => status.table = "missing".into(),
                Err(e) => {
                    debug!("reading the firewall counters: {e}");
                    status.table = format!("unreadable: {e}");
                }
            }
        }
        for object in self.host.objects_of(FIREWALL) {
            match object {
                Object::Route(_) => {
                    let text = object.to_string();
                    status
                        .routes
                        .push(text.strip_prefix("route ").unwrap_or(&text).to_owned());
                }
                Object::Rule(_) => status.rules.push(object.to_string()),
                _ => {}
            }
        }
        status.routes_waiting = self.firewall_missing.iter().cloned().collect();
        Some(status)
    }
}

/// `plan` with the NAPT of `napts` in its table (a table of its own without `[firewall]`).
fn add_napt(plan: &mut FirewallPlan, napts: &[Napt]) {
    if napts.is_empty() {
        return;
    }
    let at = plan
        .objects
        .iter()
        .position(|o| matches!(o, Object::Table(t) if t.ruleset().is_some()));
    let ruleset = at.and_then(|i| match &plan.objects[i] {
        Object::Table(t) => t.ruleset().cloned(),
        _ => None,
    });
    let Some(ruleset) = with_napt(ruleset, napts) else {
        return;
    };
    let table = Object::Table(Table::new(ruleset));
    match at {
        Some(i) => plan.objects[i] = table,
        None => plan.objects.push(table),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(extra: &str) -> Ruleset {
        let text = format!(
            "[firewall]\nmanagement = [\"tcp/22\"{extra}]\n[[zone]]\nname = \"wan\"\ndevices = [\"eth0\"]\n\
             [[table]]\nname = \"pppoe\"\nid = 300\nroutes = [{{ dst = \"0.0.0.0/0\", device = \"ppp0\" }}]\n\
             [[rule]]\nname = \"web\"\nproto = [\"tcp\"]\nports = \"443\"\ntable = \"pppoe\"\n"
        );
        let config = Config::from_toml_str(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        ruleset(&config, |_, _| None).expect("a firewall")
    }

    #[test]
    fn a_changed_table_is_named_by_the_rules_that_differ() {
        let (old, new) = (rendered(""), rendered(", \"tcp/2222\""));
        assert_eq!(rule_changes(&old, &new), ["+input: management tcp/2222"]);
        assert_eq!(rule_changes(&new, &old), ["-input: management tcp/2222"]);
        assert_eq!(rule_changes(&old, &old), ["rules reordered"]);
    }

    #[test]
    fn policy_rules_match_only_the_mark_when_the_firewall_marks() {
        let text = "[firewall]\n[[zone]]\nname = \"lan\"\ndevices = [\"br0\"]\n\
             [[table]]\nname = \"pppoe\"\nid = 300\nroutes = [{ dst = \"0.0.0.0/0\", device = \"ppp0\" }]\n\
             [[rule]]\nname = \"server\"\nfrom = \"198.51.100.5/32\"\niif = \"br0\"\ntable = \"pppoe\"\n\
             [[rule]]\nname = \"nat-t\"\nto = \"0.0.0.0/0\"\nproto = [\"udp\"]\nports = \"4500\"\ntable = \"pppoe\"\n";
        let config = Config::from_toml_str(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let rules = policy_rules(&config);
        assert_eq!(rules.len(), 2, "{rules:?}");
        assert_eq!(
            rules[0].to_string(),
            "ipv4 rule priority 1000 from 198.51.100.5/32 iif br0 table 300"
        );
        assert_eq!(
            rules[1].to_string(),
            "ipv4 rule priority 1001 fwmark 0x76470001 table 300"
        );
        assert_eq!(policy_tables(&config), [300]);
    }
}
