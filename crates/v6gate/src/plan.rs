//! `v6gate plan`: what a config means for the host (nftables ruleset, policy routes and rules,
//! sysctls) and what differs from what the host has now, without changing anything.
//!
//! The ruleset is shown in nft's own syntax, as nft prints it after loading the rendered JSON
//! into a private network namespace, so what is shown is exactly what the kernel would hold.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use control::Config;
use control::firewall::routing::{self, PolicyRoute, RulePlan};
use control::firewall::ruleset::{FAMILY, TABLE, ruleset};
use sys::netlink::{Family, Netlink};

/// The kernel's main routing table.
const MAIN_TABLE: u32 = 254;

/// Prints the plan of the config at `path` to stdout.
pub fn run(path: &Path) -> Result<()> {
    let config = Config::load(path)?;
    for warning in &config.warnings {
        eprintln!("{}:{warning} (warning)", path.display());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the netlink runtime")?;
    let text = runtime.block_on(plan(&config))?;
    print!("{text}");
    Ok(())
}

/// One line on the firewall and policy routing of a config, for `check`; `None` when it has
/// neither.
pub fn summary(config: &Config) -> Option<String> {
    let routing = &config.routing;
    let firewall = config.firewall.as_ref().map(|f| {
        format!(
            "firewall: {} zone(s), {} pinhole(s), {} port forward(s)",
            f.zones.len(),
            f.allows.len(),
            f.port_forwards.len()
        )
    });
    let policy = (!routing.tables.is_empty() || !routing.rules.is_empty()).then(|| {
        format!(
            "policy routing: {} table(s), {} rule(s)",
            routing.tables.len(),
            routing.rules.len()
        )
    });
    let parts: Vec<String> = firewall.into_iter().chain(policy).collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

async fn plan(config: &Config) -> Result<String> {
    let netlink = Netlink::new()?;
    // A running daemon's own devices, which an endpoint must not be routed through.
    let own: Vec<u32> = config
        .enabled_tunnels()
        .flat_map(|t| t.devices())
        .filter_map(|d| {
            std::fs::read_to_string(format!("/sys/class/net/{d}/ifindex"))
                .ok()?
                .trim()
                .parse()
                .ok()
        })
        .collect();
    let mut underlays = Vec::new();
    for tunnel in config.enabled_tunnels() {
        for path in &tunnel.paths {
            let device = underlay(&netlink, path.remote, &own)
                .await
                .and_then(link_name);
            underlays.push(((tunnel.name.clone(), path.name.clone()), device));
        }
    }
    let mut out = String::new();
    ruleset_section(config, &underlays, &mut out)?;
    routes_section(config, &netlink, &mut out).await?;
    rules_section(config, &netlink, &mut out).await?;
    sysctls_section(config, &mut out);
    Ok(out)
}

/// The device `remote` is reached through, as the daemon pins it: the kernel's route
/// bypassing the pin table, or, when that leads into one of `own` devices or into the
/// daemon's blackhole backstop, the main table's best route around them.
pub async fn underlay(netlink: &Netlink, remote: std::net::IpAddr, own: &[u32]) -> Option<u32> {
    use crate::daemon::pin::{Decision, Facts, Pin, decide};
    let lookup = netlink
        .route_get(remote, Some(control::PIN_BYPASS_MARK))
        .await
        .ok();
    let main = netlink
        .routes(Family::of(remote), Some(MAIN_TABLE), None)
        .await
        .unwrap_or_default();
    let facts = Facts {
        lookup: lookup.as_ref(),
        main_routes: &main,
        own_devices: own,
        // Only a running daemon has kernel-path routes, and it decides its pins itself.
        kernel_routes: &[],
    };
    match decide(remote, &facts) {
        Decision::Pin(Pin::Via { oif, .. }) => Some(oif),
        _ => None,
    }
}

/// The name of interface `index` (this namespace's sysfs).
fn link_name(index: u32) -> Option<String> {
    std::fs::read_dir("/sys/class/net")
        .ok()?
        .flatten()
        .find_map(|e| {
            let ifindex = std::fs::read_to_string(e.path().join("ifindex")).ok()?;
            (ifindex.trim().parse::<u32>().ok()? == index)
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
}

fn ruleset_section(
    config: &Config,
    underlays: &[((String, String), Option<String>)],
    out: &mut String,
) -> Result<()> {
    let desired = ruleset(config, |t, p| {
        underlays
            .iter()
            .find(|((tn, pn), _)| *tn == t.name && *pn == p.name)
            .and_then(|(_, d)| d.clone())
    });
    let installed = sys::nft::installed(FAMILY, TABLE)?;
    let Some(desired) = desired else {
        writeln!(out, "# ruleset: none ([firewall] is not in the config)")?;
        if installed.is_some() {
            writeln!(
                out,
                "#   installed now: table inet {TABLE}, which would be removed"
            )?;
        }
        return Ok(());
    };
    let (text, normal) = sys::netns::in_private_netns(move || {
        sys::nft::replace_table(&desired.table, &desired.content)?;
        let text = sys::nft::listing(FAMILY, TABLE)?.unwrap_or_default();
        let normal = sys::nft::installed(FAMILY, TABLE)?;
        Ok::<_, sys::nft::NftError>((text, normal))
    })
    .context("loading the ruleset into a private network namespace")??;
    match (&installed, normal == installed) {
        (None, _) => writeln!(out, "# ruleset: not installed; would be:")?,
        (Some(_), true) => writeln!(out, "# ruleset: installed, unchanged")?,
        (Some(_), false) => writeln!(out, "# ruleset: installed, differs; would be:")?,
    }
    out.push_str(&text);
    if installed.is_some() && normal != installed {
        let now = sys::nft::listing(FAMILY, TABLE)?.unwrap_or_default();
        writeln!(out, "# ruleset changes (- installed now, + planned):")?;
        for line in line_diff(&now, &text) {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

async fn routes_section(config: &Config, netlink: &Netlink, out: &mut String) -> Result<()> {
    let desired = routing::routes(config);
    writeln!(out, "# routes ({}):", desired.len())?;
    for route in &desired {
        let family = Family::of(route.dst.addr());
        let present = netlink
            .routes(family, Some(route.table), None)
            .await?
            .iter()
            .any(|r| same_route(r, route));
        writeln!(out, "{} {route}", if present { "=" } else { "+" })?;
    }
    Ok(())
}

fn same_route(installed: &sys::netlink::Route, planned: &PolicyRoute) -> bool {
    installed.dst == planned.dst
        && installed.gateway == planned.via
        && installed.metric.unwrap_or(0) == planned.metric
}

async fn rules_section(config: &Config, netlink: &Netlink, out: &mut String) -> Result<()> {
    let desired = routing::rules(config);
    writeln!(out, "# rules ({}):", desired.len())?;
    for rule in &desired {
        let family = if rule.ipv4 { Family::V4 } else { Family::V6 };
        let present = netlink
            .rules(family)
            .await?
            .iter()
            .any(|r| same_rule(r, rule));
        writeln!(
            out,
            "{} {rule}  # {}",
            if present { "=" } else { "+" },
            rule.name
        )?;
    }
    Ok(())
}

/// Rules are compared on what the kernel's dump tells: priority, table and mark.
fn same_rule(installed: &sys::netlink::Rule, planned: &RulePlan) -> bool {
    installed.priority == planned.priority
        && installed.table == planned.table
        && installed.fwmark == planned.fwmark
}

fn sysctls_section(config: &Config, out: &mut String) {
    let plan = control::plan(config, |_, _| 1500);
    let _ = writeln!(out, "# sysctls ({}):", plan.sysctls.len());
    for change in &plan.sysctls {
        let now = sys::sysctl::read(&change.key).map(|v| v.trim().to_owned());
        let mark = match &now {
            Ok(v) if *v == change.value => "=",
            _ => "+",
        };
        let now = now.unwrap_or_else(|e| format!("unreadable: {e}"));
        let _ = writeln!(
            out,
            "{mark} {} = {}  # now {now}",
            change.key.replace('/', "."),
            change.value
        );
    }
}

/// Lines only in `old` as `- line`, only in `new` as `+ line`, in order (longest common
/// subsequence; rulesets are small).
fn line_diff(old: &str, new: &str) -> Vec<String> {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("- {}", a[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", b[j]));
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_what_the_config_has() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/s2-home.toml"
        ))
        .unwrap();
        let config = Config::from_toml_str(&text, "s2-home.toml").unwrap();
        assert_eq!(
            summary(&config).unwrap(),
            "firewall: 3 zone(s), 1 pinhole(s), 1 port forward(s); \
             policy routing: 1 table(s), 1 rule(s)"
        );
        let minimal = Config::from_toml_str(
            "[[tunnel]]\nname = \"a\"\nmode = \"ipip6\"\nlocal = \"2001:db8::1\"\nremote = \"2001:db8::2\"\n",
            "m.toml",
        )
        .unwrap();
        assert_eq!(summary(&minimal), None);
    }

    #[test]
    fn line_diff_shows_only_changes_in_order() {
        let old = "table\n a\n b\n c\n";
        let new = "table\n a\n x\n c\n d\n";
        assert_eq!(
            line_diff(old, new),
            ["- \tb", "+ \tx", "+ \td"].map(|s| s.replace('\t', " "))
        );
        assert!(line_diff(new, new).is_empty());
    }
}
