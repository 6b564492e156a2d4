//! `[[ddns]]` tables: every key read, every problem named by key and line.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use control::ddns::{AddressSource, Family, Provider, Select, Server};
use support::*;

/// A credentials file that lives as long as the test.
struct Secret {
    dir: PathBuf,
    path: PathBuf,
}

impl Secret {
    fn new(tag: &str, mode: u32) -> Self {
        let dir = std::env::temp_dir().join(format!("v6gate-ddns-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ddns.secret");
        std::fs::write(&path, "user:password\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        Self { dir, path }
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ddns(secret: &Secret, extra: &str) -> String {
    format!(
        "[[ddns]]\nname = \"www\"\nprovider = \"dyndns2\"\nhostname = \"www.example.org\"\n\
         credentials_file = {:?}\nserver = \"https://members.example\"\n{extra}",
        secret.path.display().to_string()
    )
}

const V6: &str = "address = { device = \"eth0\", family = \"ipv6\" }\n";

#[test]
fn every_key_is_read() {
    let s = Secret::new("all", 0o600);
    let text = format!(
        "[[ddns]]\nname = \"dns\"\nprovider = \"rfc2136\"\nhostname = \"Home.Example.JP.\"\n\
         credentials_file = {:?}\n\
         address = {{ device = \"eth0\", family = \"ipv6\", select = \"temporary\" }}\n\
         server = \"[2001:db8::53]:53\"\nzone = \"example.jp\"\nmin_interval = \"5s\"\n",
        s.path.display().to_string()
    );
    let c = valid(&text);
    let d = &c.ddns[0];
    assert_eq!(d.name, "dns");
    assert_eq!(d.provider, Provider::Rfc2136);
    assert_eq!(d.hostname, "home.example.jp");
    assert_eq!(d.credentials_file, s.path);
    assert_eq!(
        d.address,
        AddressSource::Device {
            device: "eth0".into(),
            family: Family::Ipv6,
            select: Select::Temporary
        }
    );
    assert_eq!(d.server, Server::Dns("[2001:db8::53]:53".parse().unwrap()));
    assert_eq!(d.zone.as_deref(), Some("example.jp"));
    assert_eq!(d.min_interval, Duration::from_secs(5));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn provider_defaults() {
    let s = Secret::new("defaults", 0o600);
    let text = ddns(&s, V6)
        .replace("dyndns2", "cloudflare")
        .replace("server = \"https://members.example\"\n", "");
    let d = &valid(&text).ddns[0];
    assert_eq!(d.min_interval, Duration::from_secs(300));
    assert_eq!(
        d.server,
        Server::Https("https://api.cloudflare.com/client/v4".into())
    );
    assert_eq!(
        valid(&ddns(&s, V6)).ddns[0].address,
        AddressSource::Device {
            device: "eth0".into(),
            family: Family::Ipv6,
            select: Select::Stable
        }
    );
}

#[test]
fn problems_name_their_key() {
    let s = Secret::new("problems", 0o600);
    let base = ddns(&s, V6);
    only_problem(
        &base.replace("\"dyndns2\"", "\"noip\""),
        "ddns[0].provider",
        "expected one of value-domain, dyndns2, cloudflare, rfc2136, url",
        "provider =",
    );
    only_problem(
        &base.replace("https://members", "http://members"),
        "ddns[0].server",
        "expected an https:// URL",
        "server =",
    );
    only_problem(
        &base.replace("server = \"https://members.example\"\n", ""),
        "ddns[0].server",
        "missing field `server`",
        "[[ddns]]",
    );
    only_problem(
        &ddns(&s, "address = { device = \"eth0\" }\n"),
        "ddns[0].address.family",
        "missing field `family`",
        "address =",
    );
    only_problem(
        &ddns(
            &s,
            "address = { device = \"ppp0\", family = \"ipv4\", select = \"stable\" }\n",
        ),
        "ddns[0].address.select",
        "chooses among IPv6 addresses",
        "address =",
    );
    only_problem(
        &ddns(&s, "address = { tunnel = \"home\", path = \"ipoe\" }\n"),
        "ddns[0].address.tunnel",
        "no [[tunnel]] is called \"home\"",
        "address =",
    );
    only_problem(
        &ddns(&s, "address = { device = \"eth0\", tunnel = \"home\" }\n"),
        "ddns[0].address",
        "expected { device",
        "address =",
    );
    only_problem(
        &base.replace("www.example.org", "www_1.example.org"),
        "ddns[0].hostname",
        "expected a host name",
        "hostname =",
    );
    only_problem(
        &format!("{base}zone = \"example.jp\"\n")
            .replace("dyndns2", "rfc2136")
            .replace("https://members.example", "198.51.100.53:53"),
        "ddns[0].zone",
        "www.example.org is not inside zone example.jp",
        "zone =",
    );
    only_problem(
        &format!("{base}min_interval = \"2h\"\n"),
        "ddns[0].min_interval",
        "longer than 1h",
        "min_interval",
    );
    let twice = format!("{base}\n{base}");
    let e = invalid(&twice);
    has_problem(
        &e,
        "ddns[1].name",
        last_line_starting(&twice, "name ="),
        "already the name of ddns[0]",
    );
    has_problem(
        &e,
        "ddns[1].hostname",
        last_line_starting(&twice, "hostname ="),
        "already publishes the AAAA record of www.example.org",
    );
}

#[test]
fn an_entry_follows_a_tunnel_path() {
    let s = Secret::new("path", 0o600);
    let text = format!(
        "{}\n{}",
        tunnel("home", "peer.example.net", ""),
        ddns(&s, "address = { tunnel = \"home\", path = \"default\" }\n")
    );
    let c = valid(&text);
    assert_eq!(
        c.ddns[0].address,
        AddressSource::Path {
            tunnel: "home".into(),
            path: "default".into()
        }
    );
    assert_eq!(
        c.ddns[0].family(),
        None,
        "the path's family, known at run time"
    );
}

#[test]
fn warnings_for_loose_secrets_and_short_intervals() {
    let s = Secret::new("loose", 0o644);
    let text = ddns(&s, V6).replace("dyndns2", "value-domain").replace(
        "server = \"https://members.example\"\n",
        "min_interval = \"10s\"\n",
    );
    let c = valid(&text);
    let keys: Vec<&str> = c.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(keys, ["ddns[0].credentials_file", "ddns[0].min_interval"]);
    assert!(c.warnings[0].message.contains("mode 0644"));
    assert!(c.warnings[1].message.contains("60 s value-domain asks for"));
    assert_eq!(
        c.ddns[0].min_interval,
        Duration::from_secs(10),
        "obeyed all the same"
    );
}

#[test]
fn a_linked_secret_is_refused() {
    let s = Secret::new("link", 0o600);
    let link = s.dir.join("link");
    std::os::unix::fs::symlink(&s.path, &link).unwrap();
    let text = ddns(&s, V6).replace(&s.path.display().to_string(), &link.display().to_string());
    only_problem(
        &text,
        "ddns[0].credentials_file",
        "is a symbolic link",
        "credentials_file",
    );
}

#[test]
fn state_dir_and_resolvers_are_read() {
    let c = valid(
        "[gateway]\nstate_dir = \"/srv/v6gate/state\"\nresolvers = [\"2001:db8::53\", \
         \"[2001:db8::54]:5353\", \"198.51.100.53:53\"]\n",
    );
    assert_eq!(c.gateway.state_dir, PathBuf::from("/srv/v6gate/state"));
    let servers: Vec<String> = c.gateway.resolvers.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        servers,
        [
            "[2001:db8::53]:53",
            "[2001:db8::54]:5353",
            "198.51.100.53:53"
        ]
    );

    let d = valid("");
    assert_eq!(d.gateway.state_dir, PathBuf::from("/var/lib/v6gate"));
    assert!(d.gateway.resolvers.is_empty());
}

#[test]
fn state_dir_and_resolvers_problems_name_the_key() {
    only_problem(
        "[gateway]\nstate_dir = \"state\"\n",
        "gateway.state_dir",
        "absolute path",
        "state_dir",
    );
    only_problem(
        "[gateway]\nresolvers = [\"2001:db8::53\", \"ns.example.jp\"]\n",
        "gateway.resolvers[1]",
        "name server's address",
        "resolvers",
    );
    only_problem(
        "[gateway]\nresolvers = [\"[::]:53\"]\n",
        "gateway.resolvers[0]",
        "name server's address",
        "resolvers",
    );
    only_problem(
        "[gateway]\nresolvers = [\"2001:db8::1\", \"2001:db8::2\", \"2001:db8::3\", \
         \"2001:db8::4\", \"2001:db8::5\"]\n",
        "gateway.resolvers",
        "at most 4",
        "resolvers",
    );
}
