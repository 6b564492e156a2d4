//! The Japanese VNEs' MAP-E rules, which are not delivered by DHCPv6 (S46 options) but known
//! from the vendors' routers and published calculators.
//!
//! Source of every row: the rule tables of the public MAP-E calculator at
//! <https://github.com/missing233/map-e> (`index.html`: `ruleprefix31` for v6plus and the BIGLOBE
//! /31s, `ruleprefix38` for the BIGLOBE /38s, `ruleprefix38_20` for OCN; BRs from its
//! `getPeeraddrByPrefix`), the continuation of the ipv4.web.fc2.com calculator. OCN's /38 rows
//! are written here merged where consecutive rows make one aligned block (sixteen /38 → /20 rows
//! are one /34 → /16 rule with 4 more EA bits), as OCN's own rule list has them. The JPNE BR
//! 2404:9200:225:100::64 and the 240- and 1008-port shapes agree with field reports (OpenWrt
//! issue 11972, fakemanhk/openwrt-jp-ipoe). Every row is checked by a known-answer test against
//! that calculator's output.
//!
//! The sets are not complete: a prefix outside them is refused with a message asking for the
//! rule in explicit form.

use ipnet::Ipv6Net;

use super::{Layout, MapError, Mapping, Rule};

/// One row of a built-in set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetRule {
    pub ipv6_prefix: &'static str,
    pub ipv4_prefix: &'static str,
    pub ea_bits: u8,
    pub br: &'static str,
}

/// A named rule set: one VNE's rules, all with the same PSID offset and layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleSet {
    pub name: &'static str,
    pub psid_offset: u8,
    pub layout: Layout,
    pub rows: &'static [SetRule],
}

impl RuleSet {
    /// The rows as checked rules.
    pub fn rules(&self) -> impl Iterator<Item = Rule> + '_ {
        self.rows.iter().map(|row| {
            // Every row is parsed and checked by the tests of this module.
            Rule::new(
                row.ipv6_prefix.parse().expect("built-in IPv6 prefix"),
                row.ipv4_prefix.parse().expect("built-in IPv4 prefix"),
                row.ea_bits,
                self.psid_offset,
                row.br.parse().expect("built-in BR"),
                self.layout,
            )
            .expect("built-in rule")
        })
    }

    /// The rule covering `prefix` (the longest, should rows nest).
    pub fn rule_for(&self, prefix: &Ipv6Net) -> Option<Rule> {
        self.rules()
            .filter(|r| r.covers(prefix))
            .max_by_key(|r| r.ipv6_prefix().prefix_len())
    }

    /// What the set gives the CE delegated `prefix`.
    pub fn map(&self, prefix: Ipv6Net) -> Result<(Rule, Mapping), MapError> {
        let rule = self.rule_for(&prefix).ok_or(MapError::NoRule {
            prefix,
            set: self.name,
        })?;
        Ok((rule, rule.map(prefix)?))
    }
}

/// The built-in set called `name`.
pub fn builtin(name: &str) -> Option<&'static RuleSet> {
    SETS.iter().find(|s| s.name == name)
}

/// Names of the built-in sets, for messages.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    SETS.iter().map(|s| s.name)
}

const JPNE_BR: &str = "2404:9200:225:100::64";
const OCN_BR: &str = "2001:380:a120::9";
const BIGLOBE_BR_275: &str = "2001:260:700:1::1:275";
const BIGLOBE_BR_276: &str = "2001:260:700:1::1:276";

const fn row(
    ipv6_prefix: &'static str,
    ipv4_prefix: &'static str,
    ea_bits: u8,
    br: &'static str,
) -> SetRule {
    SetRule {
        ipv6_prefix,
        ipv4_prefix,
        ea_bits,
        br,
    }
}

static SETS: [RuleSet; 3] = [
    // JPNE v6プラス: 15 ranges of 16 ports (offset 4, PSID 8).
    RuleSet {
        name: "v6plus",
        psid_offset: 4,
        layout: Layout::Draft03,
        rows: &[
            row("240b:10::/31", "106.72.0.0/15", 25, JPNE_BR),
            row("240b:12::/31", "14.8.0.0/15", 25, JPNE_BR),
            row("240b:250::/31", "14.10.0.0/15", 25, JPNE_BR),
            row("240b:252::/31", "14.12.0.0/15", 25, JPNE_BR),
        ],
    },
    // OCN バーチャルコネクト: 63 ranges of 16 ports (offset 6, PSID 6).
    RuleSet {
        name: "ocn",
        psid_offset: 6,
        layout: Layout::Draft03,
        rows: &[
            row("2400:4050::/34", "153.240.0.0/16", 22, OCN_BR),
            row("2400:4050:4000::/35", "153.241.0.0/17", 21, OCN_BR),
            row("2400:4050:6000::/35", "153.241.128.0/17", 21, OCN_BR),
            row("2400:4050:8000::/33", "153.242.0.0/15", 23, OCN_BR),
            row("2400:4051::/35", "122.26.0.0/17", 21, OCN_BR),
            row("2400:4053:8000::/34", "153.173.0.0/16", 22, OCN_BR),
            row("2400:4053:c000::/34", "153.238.0.0/16", 22, OCN_BR),
            row("2400:4150::/34", "153.239.0.0/16", 22, OCN_BR),
            row("2400:4150:4000::/34", "153.252.0.0/16", 22, OCN_BR),
            row("2400:4150:8800::/37", "123.225.96.0/19", 19, OCN_BR),
            row("2400:4151::/34", "180.60.0.0/16", 22, OCN_BR),
        ],
    },
    // BIGLOBE (JPNE-style rules, BIGLOBE's own BRs): 240 ports.
    RuleSet {
        name: "biglobe",
        psid_offset: 4,
        layout: Layout::Draft03,
        rows: &[
            row("2404:7a80::/31", "133.200.0.0/15", 25, BIGLOBE_BR_275),
            row("2404:7a84::/31", "133.206.0.0/15", 25, BIGLOBE_BR_276),
            row("2404:7a82::/38", "125.196.208.0/22", 18, BIGLOBE_BR_275),
            row("2404:7a82:400::/38", "125.196.212.0/22", 18, BIGLOBE_BR_275),
            row("2404:7a82:800::/38", "125.198.140.0/22", 18, BIGLOBE_BR_275),
            row("2404:7a82:c00::/38", "125.198.144.0/22", 18, BIGLOBE_BR_275),
            row("2404:7a86::/38", "133.204.128.0/22", 18, BIGLOBE_BR_276),
            row("2404:7a86:400::/38", "133.204.132.0/22", 18, BIGLOBE_BR_276),
            row("2404:7a86:800::/38", "133.204.136.0/22", 18, BIGLOBE_BR_276),
            row("2404:7a86:c00::/38", "133.204.140.0/22", 18, BIGLOBE_BR_276),
        ],
    },
];
