//! `v6gate mape`: the MAP-E calculator. Prints what a rule gives the CE of a prefix (shared
//! IPv4 address, PSID, port ranges, MAP address, BR) without touching the host.

use std::fmt::Write as _;
use std::net::Ipv6Addr;

use clap::Args;
use control::mape::{self, Layout, MapError, Mapping, Rule, RuleField};
use ipnet::{Ipv4Net, Ipv6Net};
use serde::Serialize;

/// Flags of `v6gate mape`.
#[derive(Debug, Args)]
pub struct MapeArgs {
    /// The delegated prefix (or the /64 of an RA-only line), e.g. 240b:10:1234:5600::/56.
    #[arg(long)]
    prefix: Ipv6Net,
    /// A built-in rule set: v6plus, ocn or biglobe.
    #[arg(long, value_name = "NAME", conflicts_with_all = [
        "rule_ipv6_prefix", "rule_ipv4_prefix", "ea_bits", "psid_offset", "br", "layout",
    ])]
    rule: Option<String>,
    /// Explicit rule: the rule IPv6 prefix.
    #[arg(long, value_name = "PREFIX")]
    rule_ipv6_prefix: Option<Ipv6Net>,
    /// Explicit rule: the rule IPv4 prefix.
    #[arg(long, value_name = "PREFIX")]
    rule_ipv4_prefix: Option<Ipv4Net>,
    /// Explicit rule: the EA-bits length (0..=48).
    #[arg(long, value_name = "N")]
    ea_bits: Option<u8>,
    /// Explicit rule: the PSID offset (RFC 7597's default is 6).
    #[arg(long, value_name = "N")]
    psid_offset: Option<u8>,
    /// Explicit rule: the Border Relay's IPv6 address.
    #[arg(long, value_name = "ADDRESS")]
    br: Option<Ipv6Addr>,
    /// Explicit rule: interface-ID layout of the MAP address, rfc7597 or draft03 (the
    /// Japanese services).
    #[arg(long, value_name = "LAYOUT", default_value = "rfc7597", value_parser = parse_layout)]
    layout: Layout,
    /// Print JSON: {"ipv4", "psid", "psid_len", "ports", "map_address", "br"}.
    #[arg(long)]
    json: bool,
}

fn parse_layout(text: &str) -> Result<Layout, String> {
    Layout::parse(text).ok_or_else(|| format!("expected rfc7597 or draft03, found {text:?}"))
}

/// The calculator's answer in the JSON shape people script against.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Calculation {
    pub ipv4: String,
    pub psid: u16,
    pub psid_len: u8,
    /// First and last port of each range, lowest first.
    pub ports: Vec<[u16; 2]>,
    pub map_address: String,
    pub br: String,
}

impl From<&Mapping> for Calculation {
    fn from(map: &Mapping) -> Self {
        Self {
            ipv4: map.ipv4.to_string(),
            psid: map.ports.psid(),
            psid_len: map.ports.psid_len(),
            ports: map.ports.ranges().map(|r| [*r.start(), *r.end()]).collect(),
            map_address: map.map_address.to_string(),
            br: map.br.to_string(),
        }
    }
}

/// Runs the command: the text (or JSON) to print, or a message naming the flag at fault.
pub fn run(args: &MapeArgs) -> Result<String, String> {
    let (rule, map, set) = calculate(args)?;
    if args.json {
        let json = serde_json::to_string(&Calculation::from(&map)).expect("plain data serialises");
        return Ok(json + "\n");
    }
    Ok(render(&rule, &map, set))
}

fn calculate(args: &MapeArgs) -> Result<(Rule, Mapping, Option<&'static str>), String> {
    if let Some(name) = &args.rule {
        let set = mape::builtin(name).ok_or_else(|| {
            format!(
                "--rule: no built-in rule set {name:?}; known: {}",
                mape::builtin_names().collect::<Vec<_>>().join(", ")
            )
        })?;
        let (rule, map) = set.map(args.prefix).map_err(prefix_error)?;
        return Ok((rule, map, Some(set.name)));
    }
    let missing: Vec<&str> = [
        ("--rule-ipv6-prefix", args.rule_ipv6_prefix.is_none()),
        ("--rule-ipv4-prefix", args.rule_ipv4_prefix.is_none()),
        ("--ea-bits", args.ea_bits.is_none()),
        ("--br", args.br.is_none()),
    ]
    .into_iter()
    .filter_map(|(flag, absent)| absent.then_some(flag))
    .collect();
    let (Some(v6), Some(v4), Some(ea), Some(br)) = (
        args.rule_ipv6_prefix,
        args.rule_ipv4_prefix,
        args.ea_bits,
        args.br,
    ) else {
        return Err(format!(
            "give --rule NAME, or the rule itself; missing: {}",
            missing.join(", ")
        ));
    };
    let offset = args.psid_offset.unwrap_or(mape::DEFAULT_PSID_OFFSET);
    let rule = Rule::new(v6, v4, ea, offset, br, args.layout)
        .map_err(|e| format!("{}: {e}", flag(e.field())))?;
    let map = rule.map(args.prefix).map_err(prefix_error)?;
    Ok((rule, map, None))
}

fn flag(field: RuleField) -> &'static str {
    match field {
        RuleField::Ipv6Prefix => "--rule-ipv6-prefix",
        RuleField::Ipv4Prefix => "--rule-ipv4-prefix",
        RuleField::EaBits => "--ea-bits",
        RuleField::PsidOffset => "--psid-offset",
        RuleField::Br => "--br",
    }
}

fn prefix_error(e: MapError) -> String {
    format!("--prefix: {e}")
}

fn render(rule: &Rule, map: &Mapping, set: Option<&str>) -> String {
    let mut out = String::new();
    let origin = set.map_or_else(String::new, |s| format!(" (built-in set {s:?})"));
    let _ = writeln!(
        out,
        "rule         {} -> {}, {} EA bits, PSID offset {}, {} layout{origin}",
        rule.ipv6_prefix(),
        rule.ipv4_prefix(),
        rule.ea_bits(),
        rule.psid_offset(),
        rule.layout(),
    );
    let _ = writeln!(out, "ipv4         {}", map.ipv4);
    let _ = writeln!(
        out,
        "psid         {} ({} bits)",
        map.ports.psid(),
        map.ports.psid_len()
    );
    let _ = writeln!(
        out,
        "ports        {} in {} ranges of {}",
        map.ports.len(),
        map.ports.range_count(),
        map.ports.range_len()
    );
    let ranges: Vec<String> = map
        .ports
        .ranges()
        .map(|r| format!("{}-{}", r.start(), r.end()))
        .collect();
    for line in ranges.chunks(6) {
        let _ = writeln!(out, "             {}", line.join(" "));
    }
    let _ = writeln!(out, "map address  {}", map.map_address);
    let _ = writeln!(out, "br           {}", map.br);
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        args: MapeArgs,
    }

    fn run_with(argv: &[&str]) -> Result<String, String> {
        let cmd = Cmd::try_parse_from(std::iter::once("mape").chain(argv.iter().copied()))
            .map_err(|e| e.to_string())?;
        run(&cmd.args)
    }

    #[test]
    fn json_has_exactly_the_documented_keys() {
        let out = run_with(&[
            "--prefix",
            "2001:db8:12:3400::/56",
            "--rule-ipv6-prefix",
            "2001:db8::/40",
            "--rule-ipv4-prefix",
            "192.0.2.0/24",
            "--ea-bits",
            "16",
            "--br",
            "2001:db8:ffff::1",
            "--json",
        ])
        .unwrap();
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        let obj = value.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["br", "ipv4", "map_address", "ports", "psid", "psid_len"]
        );
        // RFC 7597 Appendix A, Example 1.
        assert_eq!(obj["ipv4"], "192.0.2.18");
        assert_eq!(obj["psid"], 0x34);
        assert_eq!(obj["psid_len"], 8);
        assert_eq!(obj["map_address"], "2001:db8:12:3400:0:c000:212:34");
        assert_eq!(obj["ports"][0], serde_json::json!([1232, 1235]));
        assert_eq!(obj["ports"].as_array().unwrap().len(), 63);
    }

    #[test]
    fn builtin_rule_prints_the_calculation() {
        let out = run_with(&["--prefix", "240b:12:9a3d:d300::/56", "--rule", "v6plus"]).unwrap();
        assert!(out.contains("ipv4         14.8.154.61\n"), "{out}");
        assert!(out.contains("psid         211 (8 bits)\n"), "{out}");
        assert!(out.contains("240 in 15 ranges of 16"), "{out}");
        assert!(out.contains("7472-7487"), "{out}");
        assert!(
            out.contains("map address  240b:12:9a3d:d300:e:89a:3d00:d300\n"),
            "{out}"
        );
        assert!(
            out.contains("br           2404:9200:225:100::64\n"),
            "{out}"
        );
    }

    #[test]
    fn errors_name_the_flag() {
        let err = |argv: &[&str]| run_with(argv).unwrap_err();
        assert!(err(&["--prefix", "240b:10::/56", "--rule", "nope"]).starts_with("--rule:"));
        assert!(err(&["--prefix", "2001:db8::/56", "--rule", "v6plus"]).starts_with("--prefix:"));
        let e = err(&[
            "--prefix",
            "2001:db8::/56",
            "--rule-ipv6-prefix",
            "2001:db8::/40",
        ]);
        assert!(e.contains("--rule-ipv4-prefix, --ea-bits, --br"), "{e}");
        let explicit = [
            "--prefix",
            "2001:db8:12:3400::/56",
            "--rule-ipv6-prefix",
            "2001:db8::/40",
            "--rule-ipv4-prefix",
            "192.0.2.0/24",
            "--br",
            "2001:db8::1",
        ];
        let e = err(&[&explicit[..], &["--ea-bits", "30"]].concat());
        assert!(e.starts_with("--ea-bits:"), "{e}");
        let e = err(&[&explicit[..], &["--ea-bits", "16", "--psid-offset", "9"]].concat());
        assert!(e.starts_with("--psid-offset:"), "{e}");
        let e = err(&[&explicit[..], &["--ea-bits", "16", "--layout", "draft"]].concat());
        assert!(e.contains("--layout"), "{e}");
        let e = err(&[
            "--prefix",
            "240b:10::/56",
            "--rule",
            "v6plus",
            "--ea-bits",
            "3",
        ]);
        assert!(e.contains("--ea-bits") && e.contains("--rule"), "{e}");
        let e = err(&["--prefix", "nonsense", "--rule", "v6plus"]);
        assert!(e.contains("--prefix"), "{e}");
    }
}
