//! Properties over generated input: no panic on any text, numeric keys accepted exactly in
//! range, and every reported location lies inside the text.

mod support;

use control::{Config, MssClamp};
use proptest::prelude::*;
use support::*;

const S1_HOME: &str = include_str!("../../../examples/s1-home.toml");
const S1_VPS: &str = include_str!("../../../examples/s1-vps.toml");

fn locations_inside(text: &str, e: &control::ConfigError) -> Result<(), TestCaseError> {
    let lines = text.split('\n').count();
    for d in e.diagnostics() {
        if let Some((line, col)) = d.location {
            prop_assert!(
                line >= 1 && line <= lines,
                "line {} of {}: {}",
                line,
                lines,
                e
            );
            prop_assert!(col >= 1, "{}", e);
        }
        prop_assert!(!d.message.is_empty());
    }
    prop_assert_eq!(e.to_string().lines().count(), e.diagnostics().len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        if let Err(e) = Config::from_toml_str(&text, "fuzz.toml") {
            locations_inside(&text, &e)?;
        }
    }

    #[test]
    fn mutated_examples_never_panic(
        which in 0..2usize,
        cut in 0usize..2000,
        len in 0usize..40,
        insert in "[a-z_=\\[\\]\"0-9 .:/\n]{0,12}",
    ) {
        let base = [S1_HOME, S1_VPS][which];
        let mut at = cut.min(base.len());
        while !base.is_char_boundary(at) { at -= 1; }
        let mut end = (at + len).min(base.len());
        while !base.is_char_boundary(end) { end -= 1; }
        let text = format!("{}{}{}", &base[..at], insert, &base[end..]);
        if let Err(e) = Config::from_toml_str(&text, "mutated.toml") {
            locations_inside(&text, &e)?;
        }
    }

    #[test]
    fn encap_limit_accepted_exactly_in_range(n in -1000i64..1000) {
        let text = tunnel("a", "2001:db8:a::2", &format!("encap_limit = {n}\n"));
        match Config::from_toml_str(&text, "t.toml") {
            Ok(c) => {
                prop_assert!((0..=255).contains(&n));
                prop_assert_eq!(c.tunnels[0].encap_limit.map(i64::from), Some(n));
            }
            Err(e) => {
                prop_assert!(!(0..=255).contains(&n));
                prop_assert_eq!(e.key(), "tunnel[0].encap_limit");
                prop_assert_eq!(e.line(), Some(6));
                let found = format!("found {n}");
                prop_assert!(e.to_string().ends_with(&found));
            }
        }
    }

    #[test]
    fn mtu_accepted_exactly_in_range(n in -10i64..70000, ipv6 in any::<bool>()) {
        let mode = if ipv6 { "ip6ip6" } else { "ipip6" };
        let text = tunnel("a", "2001:db8:a::2", &format!("mtu = {n}\n")).replace("ipip6", mode);
        let lo = if ipv6 { 1280 } else { 68 };
        match Config::from_toml_str(&text, "t.toml") {
            Ok(c) => {
                prop_assert!((lo..=65495).contains(&n));
                prop_assert_eq!(c.tunnels[0].mtu.map(i64::from), Some(n));
                prop_assert_eq!(i64::from(c.tunnels[0].effective_mtu(|_| 1500)), n);
            }
            Err(e) => {
                prop_assert!(!(lo..=65495).contains(&n));
                prop_assert_eq!(e.key(), "tunnel[0].mtu");
            }
        }
    }

    #[test]
    fn mss_clamp_accepted_exactly_in_range(n in 0i64..70000) {
        let text = tunnel("a", "2001:db8:a::2", &format!("mss_clamp = {n}\n"));
        let ok = (88..=65495).contains(&n);
        match Config::from_toml_str(&text, "t.toml") {
            Ok(c) => {
                prop_assert!(ok);
                prop_assert_eq!(c.tunnels[0].mss_clamp, MssClamp::Fixed(n as u16));
            }
            Err(e) => {
                prop_assert!(!ok);
                prop_assert_eq!(e.key(), "tunnel[0].mss_clamp");
            }
        }
    }

    /// Derived MTU: underlay minus 40, minus 8 more with the option, never below 1280 when IPv6
    /// is inside.
    #[test]
    fn derived_mtu_arithmetic(underlay in 1280u16..=65535, limit in proptest::option::of(0u8..=255), ipv6 in any::<bool>()) {
        let mode = if ipv6 { "any" } else { "ipip6" };
        let extra = limit.map_or(String::new(), |l| format!("encap_limit = {l}\n"));
        let text = tunnel("a", "2001:db8:a::2", &extra).replace("ipip6", mode);
        let c = valid(&text);
        let overhead = if limit.is_some() { 48 } else { 40 };
        let fits = underlay - overhead;
        let want = if ipv6 { fits.max(1280) } else { fits };
        prop_assert_eq!(c.tunnels[0].effective_mtu(|_| underlay), want);
        prop_assert_eq!(control::plan(&c, |_, _| underlay).tunnels[0].devices[0].mtu, want);
    }

    /// Two tunnels' routes are rejected exactly when one contains the other, unless exactly one
    /// of them is a default route.
    #[test]
    fn route_overlap_rule(
        a in any::<u32>(),
        alen in 0u8..=32,
        b in any::<u32>(),
        blen in 0u8..=32,
        near in any::<bool>(),
    ) {
        // Half the cases share the upper half of the address, so containment is common.
        let b = if near { a ^ (b >> 16) } else { b };
        let na = ipnet::Ipv4Net::new(a.into(), alen).unwrap().trunc();
        let nb = ipnet::Ipv4Net::new(b.into(), blen).unwrap().trunc();
        let text = tunnel("a", "2001:db8:a::2", &format!("routes = [\"{na}\"]\n"))
            + &tunnel("b", "2001:db8:a::3", &format!("routes = [\"{nb}\"]\n"));
        let contains = na.contains(&nb) || nb.contains(&na);
        let one_default = (alen == 0) != (blen == 0);
        match Config::from_toml_str(&text, "t.toml") {
            Ok(_) => prop_assert!(!contains || one_default),
            Err(e) => {
                prop_assert!(contains && !one_default, "{}", e);
                prop_assert_eq!(e.key(), "tunnel[1].routes[0]");
            }
        }
    }

    /// Derived MTU over several paths: the smallest underlay minus its overhead (20 over IPv4,
    /// 40 or 48 over IPv6), never below 1280 with IPv6 inside; with a device per path each
    /// device gets its own path's figure. The option on IPv4-only tunnels is refused.
    #[test]
    fn derived_mtu_over_paths(
        paths in proptest::collection::vec((any::<bool>(), 576u16..=9000), 1..5),
        limit in proptest::option::of(0u8..=255),
        ipv6_inside in any::<bool>(),
        per_path in any::<bool>(),
    ) {
        let mode = if ipv6_inside { "any" } else { "ipip6" };
        let mut text = format!(
            "[[tunnel]]\nname = \"t\"\nmode = \"{mode}\"\ndevice = \"t\"\ndevice_per_path = {per_path}\n"
        );
        if let Some(l) = limit {
            text += &format!("encap_limit = {l}\n");
        }
        for (j, (v6, underlay)) in paths.iter().enumerate() {
            let (local, remote, underlay) = if *v6 {
                (format!("2001:db8:{j}::1"), format!("2001:db8:{j}::2"), (*underlay).max(1280))
            } else {
                (format!("198.18.{j}.1"), format!("198.18.{j}.2"), *underlay)
            };
            text += &format!(
                "[[tunnel.path]]\nname = \"p{j}\"\nlocal = \"{local}\"\nremote = \"{remote}\"\n\
                 underlay_mtu = {underlay}\n"
            );
        }
        let any_v6 = paths.iter().any(|(v6, _)| *v6);
        let config = match Config::from_toml_str(&text, "t.toml") {
            Ok(c) => c,
            Err(e) => {
                prop_assert!(limit.is_some() && !any_v6, "{}", e);
                prop_assert_eq!(e.key(), "tunnel[0].encap_limit");
                return Ok(());
            }
        };
        prop_assert!(limit.is_none() || any_v6);
        let fits: Vec<u16> = paths
            .iter()
            .map(|(v6, underlay)| {
                let raw = if *v6 {
                    (*underlay).max(1280) - if limit.is_some() { 48 } else { 40 }
                } else {
                    *underlay - 20
                };
                if ipv6_inside { raw.max(1280) } else { raw }
            })
            .collect();
        let p = control::plan(&config, |_, _| panic!("every underlay is configured"));
        let mtus: Vec<u16> = p.tunnels[0].devices.iter().map(|d| d.mtu).collect();
        if per_path {
            prop_assert_eq!(mtus, fits);
        } else {
            prop_assert_eq!(mtus, vec![*fits.iter().min().unwrap()]);
            prop_assert_eq!(config.tunnels[0].effective_mtu(|_| 0), *fits.iter().min().unwrap());
        }
    }
}
