//! RFC 2136 dynamic update signed with TSIG (RFC 8945, HMAC-SHA256), through hickory-proto.
//!
//! One UPDATE per change: in zone Z, delete the hostname's A (or AAAA) set and add the new
//! address, as `nsupdate` does with `update delete` + `update add`. The answer must carry a
//! valid TSIG over our request's MAC; an unsigned NOERROR could come from anyone.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use control::ddns::Family;
use control::ddns::schedule::Outcome;
use hickory_proto::dnssec::rdata::tsig::TsigAlgorithm;
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::op::{Message, MessageType, MessageVerifier, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::secret::Secret;

/// TTL of the published record: short, since the address moves.
pub const RECORD_TTL: u32 = 60;
/// Clock difference the server may allow (RFC 8945 §10 recommends 300 s).
const FUDGE: u16 = 300;
/// Tries per attempt, each waiting this long for the answer.
const TRIES: u32 = 3;
const TRY_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest answer read; an UPDATE answer is an echo of the zone section and a TSIG.
const MAX_ANSWER: usize = 4096;

/// A TSIG key written as `nsupdate -y` takes it: `hmac-sha256:NAME:BASE64`.
pub fn signer(secret: &Secret) -> anyhow::Result<TSigner> {
    let mut parts = secret.expose().splitn(3, ':');
    let (Some(algorithm), Some(name), Some(key)) = (parts.next(), parts.next(), parts.next())
    else {
        bail!("the TSIG key must be written as hmac-sha256:NAME:BASE64");
    };
    if !algorithm.eq_ignore_ascii_case("hmac-sha256") {
        bail!("TSIG algorithm {algorithm:?} is not supported; use hmac-sha256");
    }
    let key = data_encoding::BASE64
        .decode(key.trim().as_bytes())
        .map_err(|_| anyhow!("the TSIG key of {name} is not valid base64"))?;
    let name = Name::from_ascii(name).with_context(|| format!("TSIG key name {name:?}"))?;
    TSigner::new(key, TsigAlgorithm::HmacSha256, name, FUDGE).map_err(|e| anyhow!("TSIG key: {e}"))
}

/// The zone to update: configured, else the hostname's parent.
pub fn zone_of(hostname: &str, zone: Option<&str>) -> String {
    zone.map(str::to_owned).unwrap_or_else(|| {
        hostname
            .split_once('.')
            .map_or(hostname, |(_, parent)| parent)
            .to_owned()
    })
}

/// The unsigned UPDATE replacing the hostname's record of `addr`'s family with `addr`.
pub fn update(zone: &str, hostname: &str, addr: IpAddr, id: u16) -> anyhow::Result<Message> {
    let zone = Name::from_ascii(format!("{zone}.")).context("zone")?;
    let name = Name::from_ascii(format!("{hostname}.")).context("hostname")?;
    if !zone.zone_of(&name) {
        bail!("{hostname} is not inside zone {zone}");
    }
    let (rtype, rdata) = match addr {
        IpAddr::V4(v4) => (RecordType::A, RData::A(A(v4))),
        IpAddr::V6(v6) => (RecordType::AAAA, RData::AAAA(AAAA(v6))),
    };
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Update);
    let mut zone_query = Query::query(zone, RecordType::SOA);
    zone_query.set_query_class(DNSClass::IN);
    message.add_query(zone_query);
    // RFC 2136 §2.5.2: class ANY, TTL 0, no data deletes the whole RRset of that type.
    let mut delete = Record::update0(name.clone(), 0, rtype);
    delete.set_dns_class(DNSClass::ANY);
    message.add_name_server(delete);
    message.add_name_server(Record::from_rdata(name, RECORD_TTL, rdata));
    Ok(message)
}

/// Signs `message` at `unix_time`; returns the bytes to send and the verifier of the answer.
pub fn sign(
    mut message: Message,
    signer: &TSigner,
    unix_time: u32,
) -> anyhow::Result<(Vec<u8>, MessageVerifier)> {
    let verifier = message
        .finalize(signer, unix_time)
        .context("signing the update")?
        .ok_or_else(|| anyhow!("TSIG gave no verifier"))?;
    Ok((message.to_vec().context("encoding the update")?, verifier))
}

/// What the server's answer to UPDATE `id` means.
pub fn outcome(answer: &[u8], id: u16, verifier: &mut MessageVerifier) -> Option<Outcome> {
    let message = Message::from_vec(answer).ok()?;
    if message.id() != id || message.message_type() != MessageType::Response {
        return None;
    }
    let code = message.response_code();
    Some(match code {
        ResponseCode::NoError => match verifier(answer) {
            Ok(_) => Outcome::Accepted,
            Err(e) => Outcome::Retry {
                reason: format!("the answer's TSIG does not verify: {e}"),
                at_least: None,
            },
        },
        ResponseCode::ServFail => Outcome::Retry {
            reason: "the server answered SERVFAIL".into(),
            at_least: None,
        },
        other => Outcome::Stop {
            reason: format!(
                "the server answered {other}{}",
                match other {
                    ResponseCode::NotAuth => " (wrong TSIG key, or the clocks differ)",
                    ResponseCode::Refused => " (the key may not update this name)",
                    ResponseCode::NotZone => " (set `zone`)",
                    _ => "",
                }
            ),
        },
    })
}

/// Sends one UPDATE to `server` over UDP and waits for a valid answer, up to three tries.
pub async fn send(
    server: SocketAddr,
    zone: &str,
    hostname: &str,
    secret: &Secret,
    addr: IpAddr,
) -> Outcome {
    match try_send(server, zone, hostname, secret, addr).await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Retry {
            reason: format!("{e:#}"),
            at_least: None,
        },
    }
}

async fn try_send(
    server: SocketAddr,
    zone: &str,
    hostname: &str,
    secret: &Secret,
    addr: IpAddr,
) -> anyhow::Result<Outcome> {
    let signer = match signer(secret) {
        Ok(s) => s,
        Err(e) => {
            return Ok(Outcome::Stop {
                reason: format!("{e:#}"),
            });
        }
    };
    let bind: SocketAddr = match Family::of(server.ip()) {
        Family::Ipv4 => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        Family::Ipv6 => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let mut buffer = vec![0u8; MAX_ANSWER];
    for _ in 0..TRIES {
        // A socket per try: connecting picks the source address, and the one picked for the
        // last try may have just gone (a prefix that moves takes the old address away).
        let socket = tokio::net::UdpSocket::bind(bind).await?;
        socket.connect(server).await?;
        let id: u16 = rand_id();
        let unix_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
            .unwrap_or(0);
        let (bytes, mut verifier) = sign(update(zone, hostname, addr, id)?, &signer, unix_time)?;
        socket.send(&bytes).await?;
        let deadline = tokio::time::Instant::now() + TRY_TIMEOUT;
        // Anything but a matching answer (a stray or forged datagram) is skipped.
        while let Ok(received) = tokio::time::timeout_at(deadline, socket.recv(&mut buffer)).await {
            let n = received?;
            if let Some(outcome) = outcome(&buffer[..n], id, &mut verifier) {
                return Ok(outcome);
            }
        }
    }
    bail!("no answer from {server} to {TRIES} tries")
}

fn rand_id() -> u16 {
    use rand_core::RngCore;
    (rand_core::OsRng.next_u32() & 0xffff) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    // The key from RFC 8945's examples is HMAC-MD5; this one is `tsig-keygen`'s shape.
    const KEY: &str = "hmac-sha256:ddns-key:c2VjcmV0LWtleS1mb3ItdGVzdHMtMDEyMzQ1Njc4OWFiY2RlZg==";

    #[test]
    fn keys_are_read_as_nsupdate_writes_them() {
        let signer = signer(&Secret::new(KEY)).unwrap();
        assert_eq!(signer.signer_name().to_ascii(), "ddns-key.");
        assert_eq!(signer.key(), b"secret-key-for-tests-0123456789abcdef");
        assert!(super::signer(&Secret::new("hmac-md5:k:AAAA")).is_err());
        assert!(super::signer(&Secret::new("hmac-sha256:k:!!")).is_err());
        assert!(super::signer(&Secret::new("k:AAAA")).is_err());
    }

    #[test]
    fn the_update_deletes_the_rrset_and_adds_the_address() {
        let m = update(
            "example.jp",
            "www.example.jp",
            "2001:db8::1".parse().unwrap(),
            7,
        )
        .unwrap();
        assert_eq!(m.op_code(), OpCode::Update);
        assert_eq!(m.queries()[0].name().to_ascii(), "example.jp.");
        assert_eq!(m.queries()[0].query_type(), RecordType::SOA);
        let updates = m.name_servers();
        assert_eq!(updates.len(), 2);
        assert_eq!(updates[0].dns_class(), DNSClass::ANY);
        assert_eq!(updates[0].record_type(), RecordType::AAAA);
        assert_eq!(updates[0].ttl(), 0);
        assert_eq!(updates[1].dns_class(), DNSClass::IN);
        assert_eq!(updates[1].ttl(), RECORD_TTL);
        assert!(
            update(
                "example.jp",
                "www.example.org",
                "198.51.100.1".parse().unwrap(),
                1
            )
            .is_err()
        );
    }

    #[test]
    fn signing_adds_a_tsig_that_a_server_with_the_key_accepts() {
        let signer = signer(&Secret::new(KEY)).unwrap();
        let m = update(
            "example.jp",
            "www.example.jp",
            "198.51.100.9".parse().unwrap(),
            9,
        )
        .unwrap();
        let (bytes, _) = sign(m, &signer, 1_700_000_000).unwrap();
        // What the server does: verify the request's TSIG with the same key.
        let (_, window, time) = signer.verify_message_byte(None, &bytes, true).unwrap();
        assert_eq!(time, 1_700_000_000);
        assert!(window.contains(&(1_700_000_000 + 299)));
        let other = super::signer(&Secret::new(
            "hmac-sha256:ddns-key:b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktMDAwMA==",
        ))
        .unwrap();
        assert!(other.verify_message_byte(None, &bytes, true).is_err());
    }

    proptest::proptest! {
        /// Any datagram as an answer: never a panic, never accepted without the TSIG.
        #[test]
        fn any_datagram_is_read(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let signer = signer(&Secret::new(KEY)).unwrap();
            let m = update("example.jp", "www.example.jp", "198.51.100.9".parse().unwrap(), 9).unwrap();
            let (_, mut verifier) = sign(m, &signer, 1_700_000_000).unwrap();
            proptest::prop_assert_ne!(outcome(&bytes, 9, &mut verifier), Some(Outcome::Accepted));
        }
    }

    #[test]
    fn unsigned_or_foreign_answers_are_not_accepted() {
        let signer = signer(&Secret::new(KEY)).unwrap();
        let m = update(
            "example.jp",
            "www.example.jp",
            "198.51.100.9".parse().unwrap(),
            9,
        )
        .unwrap();
        let (_, mut verifier) = sign(m, &signer, 1_700_000_000).unwrap();
        let mut answer = Message::new();
        answer
            .set_id(9)
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Update);
        let bytes = answer.to_vec().unwrap();
        assert!(matches!(
            outcome(&bytes, 9, &mut verifier),
            Some(Outcome::Retry { .. })
        ));
        assert_eq!(outcome(&bytes, 10, &mut verifier), None, "another id");
        answer.set_response_code(ResponseCode::NotAuth);
        assert!(matches!(
            outcome(&answer.to_vec().unwrap(), 9, &mut verifier),
            Some(Outcome::Stop { .. })
        ));
        assert_eq!(outcome(b"\x00", 9, &mut verifier), None);
    }
}
