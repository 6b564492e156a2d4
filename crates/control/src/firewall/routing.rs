//! The routes and ip rules of `[[table]]` and `[[rule]]`, as plain data for the host shell.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::model::{Family, PolicyRule};
use crate::model::Config;

/// One route v6gate installs in a policy table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyRoute {
    pub table: u32,
    pub dst: IpNet,
    pub via: Option<IpAddr>,
    pub device: Option<String>,
    pub metric: u32,
}

/// `ip route` words, for `plan` and logs.
impl fmt::Display for PolicyRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.dst)?;
        if let Some(via) = self.via {
            write!(f, " via {via}")?;
        }
        if let Some(device) = &self.device {
            write!(f, " dev {device}")?;
        }
        write!(f, " table {} metric {}", self.table, self.metric)
    }
}

/// One ip rule of one family.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RulePlan {
    pub name: String,
    pub ipv4: bool,
    pub priority: u32,
    pub from: Option<IpNet>,
    pub to: Option<IpNet>,
    /// Only for rules without a mark: with one, the firewall matched the device already.
    pub iif: Option<String>,
    pub fwmark: Option<u32>,
    pub table: u32,
}

/// `ip rule` words, for `plan` and logs.
impl fmt::Display for RulePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let family = if self.ipv4 { "-4" } else { "-6" };
        write!(f, "{family} priority {}", self.priority)?;
        if let Some(from) = self.from {
            write!(f, " from {from}")?;
        }
        if let Some(to) = self.to {
            write!(f, " to {to}")?;
        }
        if let Some(iif) = &self.iif {
            write!(f, " iif {iif}")?;
        }
        if let Some(mark) = self.fwmark {
            write!(f, " fwmark {mark:#x}")?;
        }
        write!(f, " lookup {}", self.table)
    }
}

/// Every route of every `[[table]]`, in file order.
pub fn routes(config: &Config) -> Vec<PolicyRoute> {
    config
        .routing
        .tables
        .iter()
        .flat_map(|t| {
            t.routes.iter().map(|r| PolicyRoute {
                table: t.id,
                dst: r.dst,
                via: r.via,
                device: r.device.clone(),
                metric: r.metric,
            })
        })
        .collect()
}

/// The ip rules of every `[[rule]]`: one per family it applies to. A rule with a mark matches
/// only the mark, since the firewall matched everything else when it set it.
pub fn rules(config: &Config) -> Vec<RulePlan> {
    config.routing.rules.iter().flat_map(rule_plans).collect()
}

fn rule_plans(rule: &PolicyRule) -> Vec<RulePlan> {
    let families: &[bool] = match rule.family {
        Family::Ipv4 => &[true],
        Family::Ipv6 => &[false],
        Family::Any => &[true, false],
    };
    families
        .iter()
        .map(|&ipv4| {
            let marked = rule.mark.is_some();
            RulePlan {
                name: rule.name.clone(),
                ipv4,
                priority: rule.priority,
                from: rule.from.filter(|_| !marked),
                to: rule.to.filter(|_| !marked),
                iif: rule.iif.clone().filter(|_| !marked),
                fwmark: rule.mark,
                table: rule.table,
            }
        })
        .collect()
}
