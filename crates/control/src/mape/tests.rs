//! Known answers from RFC 7597 Appendix A, draft-ietf-softwire-map-03 and the published MAP-E
//! calculator; properties of port sets and rules.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use proptest::prelude::*;

use super::*;

fn net(text: &str) -> Ipv6Net {
    text.parse().unwrap()
}

fn rfc_example_rule() -> Rule {
    // RFC 7597 Appendix A, Example 1: {2001:db8::/40, 192.0.2.0/24, 16}, offset 6. The BR is
    // not part of the example.
    Rule::new(
        net("2001:db8::/40"),
        "192.0.2.0/24".parse().unwrap(),
        16,
        6,
        "2001:db8:ffff::1".parse().unwrap(),
        Layout::Rfc7597,
    )
    .unwrap()
}

#[test]
fn rfc7597_example_1() {
    // End-user prefix 2001:db8:0012:3400::/56 -> EA bits 0x1234: IPv4 192.0.2.18, PSID 0x34,
    // PSID length 8, 63 ranges 1232-1235, 2256-2259, ..., 63696-63699, 64720-64723, and CE
    // 2001:db8:0012:3400:0000:c000:0212:0034 (RFC 7597 Appendix A; the same figures are in
    // RFC 7599 Appendix A Example 5 as corrected by erratum 5324).
    let rule = rfc_example_rule();
    assert_eq!(rule.psid_len(), 8);
    let map = rule.map(net("2001:db8:12:3400::/56")).unwrap();
    assert_eq!(map.ipv4, Ipv4Addr::new(192, 0, 2, 18));
    assert_eq!(map.ports.psid(), 0x34);
    assert_eq!(map.ports.psid_len(), 8);
    let ranges: Vec<_> = map.ports.ranges().collect();
    assert_eq!(ranges.len(), 63);
    assert_eq!(ranges[0], 1232..=1235);
    assert_eq!(ranges[1], 2256..=2259);
    assert_eq!(ranges[61], 63696..=63699);
    assert_eq!(ranges[62], 64720..=64723);
    assert_eq!(
        map.map_address,
        "2001:db8:0012:3400:0000:c000:0212:0034"
            .parse::<Ipv6Addr>()
            .unwrap()
    );
}

#[test]
fn rfc7597_example_2_port_to_psid() {
    // Example 2 (FMR): destination 192.0.2.18 port 1232 under the same rule is PSID 0x34,
    // which with the IPv4 suffix 0x12 gives EA bits 0x1234 and the same CE address.
    assert_eq!(psid_of(1232, 8, 6), Some(0x34));
    let map = rfc_example_rule()
        .map(net("2001:db8:12:3400::/56"))
        .unwrap();
    assert!(map.ports.contains(1232));
    assert!(!map.ports.contains(1236));
}

#[test]
fn draft03_example_4_fixed_address() {
    // draft-ietf-softwire-map-03 Example 4 as checked against a YAMAHA NVR700W on OCN's fixed
    // IPv4 service (motoyuki.hatenablog.jp, "MAP-EでのIPv4固定アドレスサービス"): prefix
    // xxxx:xxxx:xxxx:xxxx::/56 with 192.0.2.1 and no sharing gives the CE address
    // xxxx:xxxx:xxxx:xxxx:00c0:0002:0100:0000.
    let rule = Rule::new(
        net("2001:db8:12:3400::/56"),
        "192.0.2.1/32".parse().unwrap(),
        0,
        0,
        "2001:db8:ffff::1".parse().unwrap(),
        Layout::Draft03,
    )
    .unwrap();
    let map = rule.map(net("2001:db8:12:3400::/56")).unwrap();
    assert_eq!(map.ipv4, Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(
        map.map_address,
        "2001:db8:12:3400:00c0:0002:0100:0000"
            .parse::<Ipv6Addr>()
            .unwrap()
    );
    assert_eq!(map.ports.len(), 65536);
}

/// Outputs of the published MAP-E calculator (github.com/missing233/map-e, the continuation of
/// ipv4.web.fc2.com/map-e.html) for these prefixes: IPv4 address, PSID, CE address, BR.
const CALCULATOR: &[(&str, &str, &str, u16, &str, &str)] = &[
    // v6plus (JPNE)
    (
        "v6plus",
        "240b:10:1234:5600::/56",
        "106.72.18.52",
        86,
        "240b:10:1234:5600:6a:4812:3400:5600",
        "2404:9200:225:100::64",
    ),
    (
        "v6plus",
        "240b:11:ff01:2300::/56",
        "106.73.255.1",
        35,
        "240b:11:ff01:2300:6a:49ff:100:2300",
        "2404:9200:225:100::64",
    ),
    (
        "v6plus",
        "240b:12:9a3d:d300::/56",
        "14.8.154.61",
        211,
        "240b:12:9a3d:d300:e:89a:3d00:d300",
        "2404:9200:225:100::64",
    ),
    (
        "v6plus",
        "240b:13:1:ff00::/56",
        "14.9.0.1",
        255,
        "240b:13:1:ff00:e:900:100:ff00",
        "2404:9200:225:100::64",
    ),
    (
        "v6plus",
        "240b:250:abcd:ef00::/56",
        "14.10.171.205",
        239,
        "240b:250:abcd:ef00:e:aab:cd00:ef00",
        "2404:9200:225:100::64",
    ),
    (
        "v6plus",
        "240b:251:8000::/56",
        "14.11.128.0",
        0,
        "240b:251:8000:0:e:b80:0:0",
        "2404:9200:225:100::64",
    ),
    (
        "v6plus",
        "240b:252:7:8000::/56",
        "14.12.0.7",
        128,
        "240b:252:7:8000:e:c00:700:8000",
        "2404:9200:225:100::64",
    ),
    (
        "v6plus",
        "240b:253:ff00:100::/56",
        "14.13.255.0",
        1,
        "240b:253:ff00:100:e:dff:0:100",
        "2404:9200:225:100::64",
    ),
    // OCN
    (
        "ocn",
        "2400:4050:1234:5600::/56",
        "153.240.72.209",
        22,
        "2400:4050:1234:5600:99:f048:d100:1600",
        "2001:380:a120::9",
    ),
    (
        "ocn",
        "2400:4050:2abc:de00::/56",
        "153.240.170.243",
        30,
        "2400:4050:2abc:de00:99:f0aa:f300:1e00",
        "2001:380:a120::9",
    ),
    (
        "ocn",
        "2400:4050:5555:4400::/56",
        "153.241.85.85",
        4,
        "2400:4050:5555:4400:99:f155:5500:400",
        "2001:380:a120::9",
    ),
    (
        "ocn",
        "2400:4050:7fff:3f00::/56",
        "153.241.255.252",
        63,
        "2400:4050:7fff:3f00:99:f1ff:fc00:3f00",
        "2001:380:a120::9",
    ),
    (
        "ocn",
        "2400:4050:c001:100::/56",
        "153.243.0.4",
        1,
        "2400:4050:c001:100:99:f300:400:100",
        "2001:380:a120::9",
    ),
    (
        "ocn",
        "2400:4051:1fed:cb00::/56",
        "122.26.127.183",
        11,
        "2400:4051:1fed:cb00:7a:1a7f:b700:b00",
        "2001:380:a120::9",
    ),
    (
        "ocn",
        "2400:4053:9876:5400::/56",
        "153.173.97.217",
        20,
        "2400:4053:9876:5400:99:ad61:d900:1400",
        "2001:380:a120::9",
    ),
    (
        "ocn",
        "2400:4053:c0de:ab00::/56",
        "153.238.3.122",
        43,
        "2400:4053:c0de:ab00:99:ee03:7a00:2b00",
        "2001:380:a120::9",
    ),
    (
        "ocn",
        "2400:4053:fedc:ba00::/56",
        "153.238.251.114",
        58,
        "2400:4053:fedc:ba00:99:eefb:7200:3a00",
        "2001:380:a120::9",
    ),
    (
        "ocn",
        "2400:4150:3333:2200::/56",
        "153.239.204.204",
        34,
        "2400:4150:3333:2200:99:efcc:cc00:2200",
        "2001:380:a120::9",
    ),
    (
        "ocn",
        "2400:4150:4444:1100::/56",
        "153.252.17.16",
        17,
        "2400:4150:4444:1100:99:fc11:1000:1100",
        "2001:380:a120::9",
    ),
    (
        "ocn",
        "2400:4150:8a01:800::/56",
        "123.225.104.4",
        8,
        "2400:4150:8a01:800:7b:e168:400:800",
        "2001:380:a120::9",
    ),
    (
        "ocn",
        "2400:4150:8e12:3400::/56",
        "123.225.120.72",
        52,
        "2400:4150:8e12:3400:7b:e178:4800:3400",
        "2001:380:a120::9",
    ),
    (
        "ocn",
        "2400:4151:1:200::/56",
        "180.60.0.4",
        2,
        "2400:4151:1:200:b4:3c00:400:200",
        "2001:380:a120::9",
    ),
    (
        "ocn",
        "2400:4151:3210:fe00::/56",
        "180.60.200.67",
        62,
        "2400:4151:3210:fe00:b4:3cc8:4300:3e00",
        "2001:380:a120::9",
    ),
    // BIGLOBE
    (
        "biglobe",
        "2404:7a80:1234:5600::/56",
        "133.200.18.52",
        86,
        "2404:7a80:1234:5600:85:c812:3400:5600",
        "2001:260:700:1::1:275",
    ),
    (
        "biglobe",
        "2404:7a81:beef:ca00::/56",
        "133.201.190.239",
        202,
        "2404:7a81:beef:ca00:85:c9be:ef00:ca00",
        "2001:260:700:1::1:275",
    ),
    (
        "biglobe",
        "2404:7a84::/56",
        "133.206.0.0",
        0,
        "2404:7a84:0:0:85:ce00:0:0",
        "2001:260:700:1::1:276",
    ),
    (
        "biglobe",
        "2404:7a85:aaaa:bb00::/56",
        "133.207.170.170",
        187,
        "2404:7a85:aaaa:bb00:85:cfaa:aa00:bb00",
        "2001:260:700:1::1:276",
    ),
    (
        "biglobe",
        "2404:7a82:123:4500::/56",
        "125.196.209.35",
        69,
        "2404:7a82:123:4500:7d:c4d1:2300:4500",
        "2001:260:700:1::1:275",
    ),
    (
        "biglobe",
        "2404:7a82:7ff:ff00::/56",
        "125.196.215.255",
        255,
        "2404:7a82:7ff:ff00:7d:c4d7:ff00:ff00",
        "2001:260:700:1::1:275",
    ),
    (
        "biglobe",
        "2404:7a82:8ab:cd00::/56",
        "125.198.140.171",
        205,
        "2404:7a82:8ab:cd00:7d:c68c:ab00:cd00",
        "2001:260:700:1::1:275",
    ),
    (
        "biglobe",
        "2404:7a82:fff:100::/56",
        "125.198.147.255",
        1,
        "2404:7a82:fff:100:7d:c693:ff00:100",
        "2001:260:700:1::1:275",
    ),
    (
        "biglobe",
        "2404:7a86:1:200::/56",
        "133.204.128.1",
        2,
        "2404:7a86:1:200:85:cc80:100:200",
        "2001:260:700:1::1:276",
    ),
    (
        "biglobe",
        "2404:7a86:5a5:a500::/56",
        "133.204.133.165",
        165,
        "2404:7a86:5a5:a500:85:cc85:a500:a500",
        "2001:260:700:1::1:276",
    ),
    (
        "biglobe",
        "2404:7a86:9ff:ff00::/56",
        "133.204.137.255",
        255,
        "2404:7a86:9ff:ff00:85:cc89:ff00:ff00",
        "2001:260:700:1::1:276",
    ),
    (
        "biglobe",
        "2404:7a86:c00::/56",
        "133.204.140.0",
        0,
        "2404:7a86:c00:0:85:cc8c:0:0",
        "2001:260:700:1::1:276",
    ),
];

#[test]
fn builtin_sets_match_the_published_calculator() {
    for &(set, prefix, ipv4, psid, ce, br) in CALCULATOR {
        let (_, map) = builtin(set).unwrap().map(net(prefix)).unwrap();
        let got = (
            map.ipv4.to_string(),
            map.ports.psid(),
            map.map_address,
            map.br,
        );
        let want = (
            ipv4.to_owned(),
            psid,
            ce.parse().unwrap(),
            br.parse().unwrap(),
        );
        assert_eq!(got, want, "{set} {prefix}");
    }
}

/// `calculator.txt`: the same calculator's output for two random /56s of every built-in rule.
fn calculator_file() -> Vec<(
    &'static str,
    &'static str,
    &'static str,
    u16,
    &'static str,
    &'static str,
)> {
    include_str!("calculator.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 6, "{l}");
            (f[0], f[1], f[2], f[3].parse().unwrap(), f[4], f[5])
        })
        .collect()
}

#[test]
fn builtin_sets_match_the_calculator_for_every_row() {
    let answers = calculator_file();
    assert!(answers.len() > 400, "{}", answers.len());
    for (set, prefix, ipv4, psid, ce, br) in answers {
        let (_, map) = builtin(set)
            .unwrap()
            .map(net(prefix))
            .unwrap_or_else(|e| panic!("{set} {prefix}: {e}"));
        let got = (
            map.ipv4.to_string(),
            map.ports.psid(),
            map.map_address,
            map.br,
        );
        let want = (
            ipv4.to_owned(),
            psid,
            ce.parse().unwrap(),
            br.parse().unwrap(),
        );
        assert_eq!(got, want, "{set} {prefix}");
    }
}

#[test]
fn every_builtin_row_has_a_known_answer() {
    let answers = calculator_file();
    for set in builtin_names().map(|n| builtin(n).unwrap()) {
        for rule in set.rules() {
            assert!(
                answers
                    .iter()
                    .chain(CALCULATOR)
                    .any(|(s, p, ..)| *s == set.name && rule.covers(&net(p))),
                "{} {} has no known answer",
                set.name,
                rule.ipv6_prefix()
            );
        }
    }
}

/// `a-b a-b ...` as the calculator prints port ranges.
fn published_ranges(text: &str) -> Vec<std::ops::RangeInclusive<u16>> {
    text.split_whitespace()
        .map(|r| {
            let (a, b) = r.split_once('-').unwrap();
            a.parse().unwrap()..=b.parse().unwrap()
        })
        .collect()
}

#[test]
fn v6plus_ports_match_calculator_and_field_dump() {
    // The calculator's port list for 240b:12:9a3d:d300::/56 (PSID 211); the same 240 ports,
    // 7472-7487 ... 64816-64831, are the NAPT map dumped from a working v6plus CE in
    // openwrt/openwrt#11972.
    let want = published_ranges(
        "7472-7487 11568-11583 15664-15679 19760-19775 23856-23871 27952-27967 32048-32063 \
         36144-36159 40240-40255 44336-44351 48432-48447 52528-52543 56624-56639 60720-60735 \
         64816-64831",
    );
    let (_, map) = builtin("v6plus")
        .unwrap()
        .map(net("240b:12:9a3d:d300::/56"))
        .unwrap();
    assert_eq!(map.ports.ranges().collect::<Vec<_>>(), want);
    assert_eq!(map.ports.len(), 240);
}

#[test]
fn ocn_ports_match_calculator() {
    // The calculator's 63 ranges for 2400:4050:1234:5600::/56 (PSID 22): 1008 ports.
    let want = published_ranges(
        "1376-1391 2400-2415 3424-3439 4448-4463 5472-5487 6496-6511 7520-7535 8544-8559 \
         9568-9583 10592-10607 11616-11631 12640-12655 13664-13679 14688-14703 15712-15727 \
         16736-16751 17760-17775 18784-18799 19808-19823 20832-20847 21856-21871 22880-22895 \
         23904-23919 24928-24943 25952-25967 26976-26991 28000-28015 29024-29039 30048-30063 \
         31072-31087 32096-32111 33120-33135 34144-34159 35168-35183 36192-36207 37216-37231 \
         38240-38255 39264-39279 40288-40303 41312-41327 42336-42351 43360-43375 44384-44399 \
         45408-45423 46432-46447 47456-47471 48480-48495 49504-49519 50528-50543 51552-51567 \
         52576-52591 53600-53615 54624-54639 55648-55663 56672-56687 57696-57711 58720-58735 \
         59744-59759 60768-60783 61792-61807 62816-62831 63840-63855 64864-64879",
    );
    let (_, map) = builtin("ocn")
        .unwrap()
        .map(net("2400:4050:1234:5600::/56"))
        .unwrap();
    assert_eq!(map.ports.ranges().collect::<Vec<_>>(), want);
    assert_eq!(map.ports.len(), 1008);
}

#[test]
fn ra_only_slash64_keeps_its_own_subnet() {
    // A line without a delegated prefix has only its /64: the CE address stays inside it.
    let (_, map) = builtin("v6plus")
        .unwrap()
        .map(net("240b:10:1234:5678::/64"))
        .unwrap();
    assert_eq!(map.ipv4.to_string(), "106.72.18.52");
    assert_eq!(map.ports.psid(), 0x56);
    assert_eq!(
        map.map_address,
        "240b:10:1234:5678:6a:4812:3400:5600"
            .parse::<Ipv6Addr>()
            .unwrap()
    );
}

#[test]
fn rules_refuse_what_cannot_work() {
    let v6 = net("2001:db8::/40");
    let v4 = "192.0.2.0/24".parse().unwrap();
    let br: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let new = |v6, v4, ea, off, br| Rule::new(v6, v4, ea, off, br, Layout::Rfc7597);
    let field = |r: Result<Rule, RuleError>| r.unwrap_err().field();
    assert_eq!(field(new(v6, v4, 49, 6, br)), RuleField::EaBits);
    assert_eq!(field(new(v6, v4, 25, 6, br)), RuleField::EaBits); // /40 + 25 > /64
    assert_eq!(field(new(v6, v4, 7, 6, br)), RuleField::EaBits); // suffix needs 8
    assert_eq!(field(new(v6, v4, 24, 1, br)), RuleField::PsidOffset); // 16-bit PSID + 1
    assert_eq!(field(new(v6, v4, 8, 16, br)), RuleField::PsidOffset); // RFC 7598: 0..15
    assert_eq!(
        field(new(net("2001:db8::1/40"), v4, 16, 6, br)),
        RuleField::Ipv6Prefix
    );
    assert_eq!(
        field(new(v6, "192.0.2.1/24".parse().unwrap(), 16, 6, br)),
        RuleField::Ipv4Prefix
    );
    assert_eq!(
        field(new(v6, v4, 16, 6, Ipv6Addr::UNSPECIFIED)),
        RuleField::Br
    );

    let rule = rfc_example_rule();
    assert!(matches!(
        rule.map(net("2001:db9::/56")),
        Err(MapError::OutsideRule { .. })
    ));
    assert!(matches!(
        rule.map(net("2001:db8::/48")),
        Err(MapError::TooShort { needed: 56, .. })
    ));
    assert!(matches!(
        rule.map(net("2001:db8:12:3400::/80")),
        Err(MapError::TooLong(_))
    ));
    assert!(matches!(
        builtin("v6plus").unwrap().map(net("2001:db8:12:3400::/56")),
        Err(MapError::NoRule { set: "v6plus", .. })
    ));
}

#[test]
fn builtin_set_shapes() {
    let shape = |name: &str| {
        let set = builtin(name).unwrap();
        set.rules()
            .map(|r| {
                let p = PortSet::new(0, r.psid_len(), r.psid_offset()).unwrap();
                (p.range_count(), p.range_len())
            })
            .collect::<std::collections::HashSet<_>>()
    };
    assert_eq!(shape("v6plus"), [(15, 16)].into());
    assert_eq!(shape("biglobe"), [(15, 16)].into());
    assert_eq!(shape("ocn"), [(63, 16)].into());
    assert!(builtin("transix").is_none());
}

fn port_set() -> impl Strategy<Value = PortSet> {
    (0u8..=16)
        .prop_flat_map(|offset| (Just(offset), 0u8..=16 - offset))
        .prop_flat_map(|(offset, psid_len)| {
            let max = if psid_len == 16 {
                u16::MAX
            } else {
                (1u16 << psid_len) - 1
            };
            (0..=max).prop_map(move |psid| PortSet::new(psid, psid_len, offset).unwrap())
        })
}

proptest! {
    #[test]
    fn every_port_of_a_set_maps_back_to_its_psid(set in port_set()) {
        let mut count = 0u32;
        let mut last: Option<u16> = None;
        for range in set.ranges() {
            prop_assert!(last.is_none_or(|l| l < *range.start()), "ranges ascend, disjoint");
            for port in range.clone() {
                prop_assert_eq!(psid_of(port, set.psid_len(), set.offset()), Some(set.psid()));
                prop_assert!(set.contains(port));
                count += 1;
            }
            last = Some(*range.end());
        }
        prop_assert_eq!(count, set.len());
    }

    #[test]
    fn ranges_skip_the_a0_ports(set in port_set()) {
        if set.offset() > 0 {
            let reserved = 1u32 << (16 - set.offset());
            for range in set.ranges() {
                prop_assert!(u32::from(*range.start()) >= reserved);
            }
            prop_assert!(!set.contains(0));
            prop_assert!(!set.contains((reserved - 1) as u16));
        }
    }

    #[test]
    fn each_port_has_at_most_one_owner(port in any::<u16>(), offset in 0u8..=12, extra in 0u8..=4) {
        let psid_len = extra.min(16 - offset);
        let owner = psid_of(port, psid_len, offset);
        prop_assert_eq!(owner.is_none(), offset > 0 && u32::from(port) < 1u32 << (16 - offset));
        if let Some(psid) = owner {
            for other in 0..(1u16 << psid_len) {
                let set = PortSet::new(other, psid_len, offset).unwrap();
                prop_assert_eq!(set.contains(port), other == psid);
            }
        }
    }

    #[test]
    fn mapping_round_trips_the_ea_bits(
        v6_len in 24u8..=40,
        v4_len in 16u8..=32,
        psid_len in 0u8..=8,
        offset in 0u8..=8,
        ea_value in any::<u64>(),
        draft in any::<bool>(),
    ) {
        let ea_bits = (32 - v4_len) + psid_len;
        prop_assume!(u16::from(v6_len) + u16::from(ea_bits) <= 64);
        let v6 = Ipv6Net::new("2001:db8::".parse().unwrap(), v6_len).unwrap().trunc();
        let v4 = Ipv4Net::new(Ipv4Addr::new(198, 18, 0, 0), v4_len).unwrap().trunc();
        let layout = if draft { Layout::Draft03 } else { Layout::Rfc7597 };
        let rule = Rule::new(v6, v4, ea_bits, offset, "2001:db8:ffff::1".parse().unwrap(), layout)
            .unwrap();
        let ea = if ea_bits == 0 { 0 } else { ea_value & ((1u64 << ea_bits) - 1) };
        let end = v6_len + ea_bits;
        let bits = u128::from(v6.network()) | (u128::from(ea) << (128 - u32::from(end)));
        let prefix = Ipv6Net::new(Ipv6Addr::from(bits), end.max(48)).unwrap().trunc();
        prop_assume!(prefix.prefix_len() >= end);
        let map = rule.map(prefix).unwrap();
        prop_assert!(v4.contains(&map.ipv4));
        let suffix = u64::from(u32::from(map.ipv4) - u32::from(v4.network()));
        prop_assert_eq!((suffix << psid_len) | u64::from(map.ports.psid()), ea);
        prop_assert!(prefix.contains(&map.map_address));
        let iid = u128::from(map.map_address) as u64;
        let (v4_field, psid_field) = match layout {
            Layout::Rfc7597 => ((iid >> 16) as u32, iid as u16),
            Layout::Draft03 => ((iid >> 24) as u32, (iid >> 8) as u16),
        };
        prop_assert_eq!(v4_field, u32::from(map.ipv4));
        prop_assert_eq!(psid_field, map.ports.psid());
    }
}
