//! OpenWrt's port syntax: `"80 443 8000:8999"`.

use std::fmt;

/// Most ports or ranges one `ports` value may hold.
pub const MAX_PORT_ITEMS: usize = 64;

/// An inclusive range of ports; a single port has `first == last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn single(port: u16) -> Self {
        Self {
            first: port,
            last: port,
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}:{}", self.first, self.last)
        }
    }
}

/// Parses ports and ranges separated by spaces (`"80 443 8000:8999"`); the error says what is
/// wrong in words. Port 0 is refused: it is no destination.
pub fn parse_ports(text: &str) -> Result<Vec<PortRange>, String> {
    let items: Vec<&str> = text.split_whitespace().collect();
    if items.is_empty() {
        return Err("expected ports like \"80 443 8000:8999\", found an empty string".into());
    }
    if items.len() > MAX_PORT_ITEMS {
        return Err(format!(
            "has {} ports or ranges, more than {MAX_PORT_ITEMS}",
            items.len()
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let range = match item.split_once(':') {
            Some((a, b)) => {
                let (first, last) = (port(a, item)?, port(b, item)?);
                if first > last {
                    return Err(format!("range {item:?} runs backwards"));
                }
                PortRange { first, last }
            }
            None => PortRange::single(port(item, item)?),
        };
        out.push(range);
    }
    Ok(out)
}

fn port(text: &str, item: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(0) => Err(format!("{item:?}: port 0 is not a destination")),
        Ok(p) if text.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(format!(
            "{item:?} is not a port (1-65535) or range (first:last); \
             ports are separated by spaces, ranges written with ':'"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(first: u16, last: u16) -> PortRange {
        PortRange { first, last }
    }

    #[test]
    fn openwrt_examples() {
        assert_eq!(
            parse_ports("80 443 8000:8999").unwrap(),
            [r(80, 80), r(443, 443), r(8000, 8999)]
        );
        assert_eq!(parse_ports("  22 ").unwrap(), [r(22, 22)]);
        assert_eq!(parse_ports("1:65535").unwrap(), [r(1, 65535)]);
    }

    #[test]
    fn rejects_what_openwrt_users_get_wrong() {
        for bad in [
            "",
            "80,443",
            "8000-8999",
            "0",
            "65536",
            "9:8",
            "+80",
            "80:",
            ":80",
            "http",
        ] {
            assert!(parse_ports(bad).is_err(), "{bad:?} accepted");
        }
        let many = vec!["1"; MAX_PORT_ITEMS + 1].join(" ");
        assert!(parse_ports(&many).unwrap_err().contains("more than"));
    }

    #[test]
    fn displays_in_the_same_syntax() {
        let text = "80 443 8000:8999";
        let shown: Vec<String> = parse_ports(text)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown.join(" "), text);
    }

    proptest::proptest! {
        #[test]
        fn display_and_parse_round_trip(
            ranges in proptest::collection::vec((1u16.., 0u16..), 1..MAX_PORT_ITEMS)
        ) {
            let ranges: Vec<PortRange> = ranges
                .into_iter()
                .map(|(first, span)| PortRange { first, last: first.saturating_add(span % 100) })
                .collect();
            let text: Vec<String> = ranges.iter().map(ToString::to_string).collect();
            proptest::prop_assert_eq!(parse_ports(&text.join(" ")).unwrap(), ranges);
        }

        #[test]
        fn never_panics(text in "\\PC{0,40}") {
            let _ = parse_ports(&text);
        }
    }
}
