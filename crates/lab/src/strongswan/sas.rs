//! Reading `swanctl --list-sas` output.

/// One IKE_SA of `swanctl --list-sas`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IkeSaSummary {
    pub name: String,
    /// `ESTABLISHED`, `CONNECTING`, `DELETING`, ...
    pub state: String,
    /// The identities as strongSwan prints them.
    pub local_id: Option<String>,
    pub remote_id: Option<String>,
    /// e.g. `AES_GCM_16-128/PRF_HMAC_SHA2_256/MODP_2048`.
    pub proposal: Option<String>,
    pub children: Vec<ChildSaSummary>,
}

/// One CHILD_SA of `swanctl --list-sas`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildSaSummary {
    pub name: String,
    /// `INSTALLED`, `REKEYED`, ...
    pub state: String,
    /// `TUNNEL`, or `TUNNEL-in-UDP` when ESP is UDP-encapsulated (always with libipsec).
    pub mode: String,
    /// e.g. `ESP:AES_GCM_16-128`.
    pub proposal: String,
    pub bytes_in: u64,
    pub packets_in: u64,
    pub bytes_out: u64,
    pub packets_out: u64,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
}

/// Reads `swanctl --list-sas` text (strongSwan 5.9): IKE_SA headers at column 0
/// (`NAME: #N, STATE, IKEv2, ...`), their CHILD_SAs indented by two spaces
/// (`NAME: #N, reqid R, STATE, MODE, PROPOSAL`), details below each. Lines it does not
/// know are skipped.
pub fn parse_list_sas(text: &str) -> Vec<IkeSaSummary> {
    let mut sas: Vec<IkeSaSummary> = Vec::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let body = line.trim();
        if body.is_empty() {
            continue;
        }
        if indent == 0 {
            if let Some((name, fields)) = sa_header(body) {
                sas.push(IkeSaSummary {
                    name: name.to_owned(),
                    state: fields.get(1).copied().unwrap_or_default().to_owned(),
                    local_id: None,
                    remote_id: None,
                    proposal: None,
                    children: Vec::new(),
                });
            }
            continue;
        }
        let Some(ike) = sas.last_mut() else {
            continue;
        };
        if indent == 2 {
            if let Some((name, fields)) = sa_header(body) {
                // "#1", "reqid 1", STATE, MODE, PROPOSAL
                ike.children.push(ChildSaSummary {
                    name: name.to_owned(),
                    state: fields.get(2).copied().unwrap_or_default().to_owned(),
                    mode: fields.get(3).copied().unwrap_or_default().to_owned(),
                    proposal: fields.get(4).copied().unwrap_or_default().to_owned(),
                    bytes_in: 0,
                    packets_in: 0,
                    bytes_out: 0,
                    packets_out: 0,
                    local_ts: Vec::new(),
                    remote_ts: Vec::new(),
                });
            } else if let Some(rest) = body.strip_prefix("local ") {
                ike.local_id = quoted(rest);
            } else if let Some(rest) = body.strip_prefix("remote ") {
                ike.remote_id = quoted(rest);
            } else if body.starts_with(|c: char| c.is_ascii_uppercase()) && body.contains('/') {
                ike.proposal = Some(body.to_owned());
            }
            continue;
        }
        let Some(child) = ike.children.last_mut() else {
            continue;
        };
        if let Some(rest) = body.strip_prefix("in ") {
            (child.bytes_in, child.packets_in) = counters(rest);
        } else if let Some(rest) = body.strip_prefix("out ") {
            (child.bytes_out, child.packets_out) = counters(rest);
        } else if let Some(rest) = body.strip_prefix("local ") {
            child.local_ts = rest.split_whitespace().map(str::to_owned).collect();
        } else if let Some(rest) = body.strip_prefix("remote ") {
            child.remote_ts = rest.split_whitespace().map(str::to_owned).collect();
        }
    }
    sas
}

/// `NAME: #N, a, b, c` -> (NAME, ["N", "a", "b", "c"]).
fn sa_header(body: &str) -> Option<(&str, Vec<&str>)> {
    let (name, rest) = body.split_once(": #")?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    Some((name, rest.split(',').map(str::trim).collect()))
}

/// The text between the first pair of single quotes.
fn quoted(text: &str) -> Option<String> {
    let start = text.find('\'')? + 1;
    let len = text[start..].find('\'')?;
    Some(text[start..start + len].to_owned())
}

/// `SPI, N bytes, M packets, ...` -> (N, M); missing numbers read as 0.
fn counters(text: &str) -> (u64, u64) {
    let mut bytes = 0;
    let mut packets = 0;
    for part in text.split(',').map(str::trim) {
        if let Some(n) = part.strip_suffix(" bytes") {
            bytes = n.trim().parse().unwrap_or(0);
        } else if let Some(n) = part.strip_suffix(" packets") {
            packets = n.trim().parse().unwrap_or(0);
        }
    }
    (bytes, packets)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `swanctl --list-sas` of strongSwan 5.9.8 with a legacy-suite SA next to a GCM one.
    const LISTING: &str = "\
leg: #2, ESTABLISHED, IKEv2, 720d9e0a9627e91e_i* 658354ec66aadb7a_r
  local  '2001:db8:0:1::1' @ 2001:db8:0:1::1[4500]
  remote '2001:db8:0:1::2' @ 2001:db8:0:1::2[4500]
  AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024
  established 1s ago, rekeying in 13550s
  ab: #2, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_CBC-128/HMAC_SHA1_96
    installed 1s ago, rekeying in 3255s, expires in 3959s
    in  3e519aca,    252 bytes,     3 packets,     0s ago
    out 52b360b4,    252 bytes,     3 packets,     0s ago
    local  198.51.100.0/24
    remote 203.0.113.0/24
ab: #1, ESTABLISHED, IKEv2, 2e52aa87894f96f0_i* a88814adfa37b80a_r
  local  '2001:db8:0:1::1' @ 2001:db8:0:1::1[4500]
  remote '2001:db8:0:1::2' @ 2001:db8:0:1::2[4500]
  AES_GCM_16-128/PRF_HMAC_SHA2_256/MODP_2048
  established 7s ago, rekeying in 13197s
  ab: #1, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-128
    installed 7s ago, rekeying in 3340s, expires in 3953s
    in  e8824d70, 1234567 bytes,  9876 packets,     5s ago
    out dd63fb37,      0 bytes,     0 packets
    local  198.51.100.0/24 198.18.1.1/32
    remote 203.0.113.0/24
";

    #[test]
    fn list_sas_of_strongswan_5_9_is_read_field_by_field() {
        let sas = parse_list_sas(LISTING);
        assert_eq!(sas.len(), 2);
        let legacy = &sas[0];
        assert_eq!(legacy.name, "leg");
        assert_eq!(legacy.state, "ESTABLISHED");
        assert_eq!(legacy.local_id.as_deref(), Some("2001:db8:0:1::1"));
        assert_eq!(legacy.remote_id.as_deref(), Some("2001:db8:0:1::2"));
        assert_eq!(
            legacy.proposal.as_deref(),
            Some("AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024")
        );
        assert_eq!(
            legacy.children,
            [ChildSaSummary {
                name: "ab".into(),
                state: "INSTALLED".into(),
                mode: "TUNNEL-in-UDP".into(),
                proposal: "ESP:AES_CBC-128/HMAC_SHA1_96".into(),
                bytes_in: 252,
                packets_in: 3,
                bytes_out: 252,
                packets_out: 3,
                local_ts: vec!["198.51.100.0/24".into()],
                remote_ts: vec!["203.0.113.0/24".into()],
            }]
        );
        let gcm = &sas[1];
        assert_eq!(gcm.name, "ab");
        assert_eq!(
            gcm.proposal.as_deref(),
            Some("AES_GCM_16-128/PRF_HMAC_SHA2_256/MODP_2048")
        );
        let child = &gcm.children[0];
        assert_eq!((child.bytes_in, child.packets_in), (1_234_567, 9876));
        assert_eq!((child.bytes_out, child.packets_out), (0, 0));
        assert_eq!(child.local_ts, ["198.51.100.0/24", "198.18.1.1/32"]);
    }

    #[test]
    fn list_sas_without_children_or_with_noise_does_not_confuse_the_reader() {
        assert!(parse_list_sas("").is_empty());
        let text = "\
no IKE_SAs here
  orphan: #3, reqid 1, INSTALLED, TUNNEL, ESP:AES_GCM_16-128
ab: #4, CONNECTING, IKEv2, 0123456789abcdef_i* 0000000000000000_r
  local  '%any' @ 2001:db8:0:1::1[500]
  remote '%any' @ 2001:db8:0:2::1[500]
    in  garbage, x bytes
";
        let sas = parse_list_sas(text);
        assert_eq!(sas.len(), 1);
        assert_eq!(
            (sas[0].name.as_str(), sas[0].state.as_str()),
            ("ab", "CONNECTING")
        );
        assert_eq!(sas[0].local_id.as_deref(), Some("%any"));
        assert!(sas[0].proposal.is_none());
        assert!(sas[0].children.is_empty());
        // Truncated at any byte, the reader never panics.
        for end in 0..=LISTING.len() {
            if LISTING.is_char_boundary(end) {
                let _ = parse_list_sas(&LISTING[..end]);
            }
        }
    }
}
