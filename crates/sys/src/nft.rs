//! nftables through `nft -j -f -`: replace one table atomically, delete it, read it back.
//!
//! v6gate owns whole tables and nothing else. A replacement is one transaction of `add table`,
//! `delete table`, `add table` and the content, so the kernel swaps the old table for the new
//! one at once (no packet sees a half-loaded ruleset, chains and sets the new config dropped
//! are gone) and a failure leaves the old one as it was. Deletion is `add` + `delete` in one
//! transaction, so deleting a table that is not there succeeds. Other tables (a user's
//! `table inet filter`, docker's, ufw's) are never named, flushed or listed in full.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Write};
use std::process::{Command, Stdio};

use nftables::schema::{NfCmd, NfListObject, NfObject, Nftables, Table};
use nftables::types::NfFamily;
use serde_json::Value;

/// Where Debian and other distributions install nft. Found by absolute path, not `PATH`: the
/// daemon runs as root, and a `PATH` entry someone else can write must not choose its program.
const NFT_PATHS: [&str; 3] = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"];

/// Longest `nft` output kept in an error or read back: far above any ruleset v6gate makes.
const MAX_OUTPUT: usize = 16 << 20;

/// A failed `nft` run: what it was for and what `nft` said.
#[derive(Debug)]
pub struct NftError {
    pub op: String,
    pub detail: String,
    pub io: Option<io::Error>,
}

impl fmt::Display for NftError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nft: {}: {}", self.op, self.detail.trim_end())
    }
}

impl std::error::Error for NftError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.io.as_ref().map(|e| e as _)
    }
}

/// The transaction that replaces (or creates) `table` with `content`.
pub fn replace_batch<'a>(table: &Table<'a>, content: &[NfListObject<'a>]) -> Nftables<'a> {
    let mut objects = vec![
        NfObject::CmdObject(NfCmd::Add(NfListObject::Table(table.clone()))),
        NfObject::CmdObject(NfCmd::Delete(NfListObject::Table(table.clone()))),
        NfObject::CmdObject(NfCmd::Add(NfListObject::Table(table.clone()))),
    ];
    objects.extend(
        content
            .iter()
            .cloned()
            .map(|o| NfObject::CmdObject(NfCmd::Add(o))),
    );
    Nftables {
        objects: Cow::Owned(objects),
    }
}

/// The transaction that deletes `table` whether or not it exists.
pub fn delete_batch(family: NfFamily, name: &str) -> Nftables<'static> {
    let table = Table {
        family,
        name: Cow::Owned(name.to_owned()),
        handle: None,
    };
    Nftables {
        objects: Cow::Owned(vec![
            NfObject::CmdObject(NfCmd::Add(NfListObject::Table(table.clone()))),
            NfObject::CmdObject(NfCmd::Delete(NfListObject::Table(table))),
        ]),
    }
}

/// Replaces `table` with `content` in one transaction.
pub fn replace_table<'a>(table: &Table<'a>, content: &[NfListObject<'a>]) -> Result<(), NftError> {
    run_batch(
        &replace_batch(table, content),
        false,
        &format!("replace table {}", name(table)),
    )
}

/// Asks the kernel whether the replacement would load (`nft --check`), changing nothing.
pub fn check_table<'a>(table: &Table<'a>, content: &[NfListObject<'a>]) -> Result<(), NftError> {
    run_batch(
        &replace_batch(table, content),
        true,
        &format!("check table {}", name(table)),
    )
}

/// Deletes the table `family name`; succeeds when there is none.
pub fn delete_table(family: NfFamily, name: &str) -> Result<(), NftError> {
    let batch = delete_batch(family, name);
    run_batch(
        &batch,
        false,
        &format!("delete table {} {name}", family_word(family)),
    )
}

/// The table as installed, in a form that compares equal for equal rulesets (see
/// [`Installed`]); `None` when there is no such table.
pub fn installed(family: NfFamily, name: &str) -> Result<Option<Installed>, NftError> {
    let Some(text) = list(family, name, true)? else {
        return Ok(None);
    };
    let value: Value = serde_json::from_str(&text).map_err(|e| NftError {
        op: format!("read table {} {name}", family_word(family)),
        detail: format!("nft printed JSON that does not parse: {e}"),
        io: None,
    })?;
    Ok(Some(Installed::from_listing(value)))
}

/// The table in nft's own syntax (`nft list table`), or `None` when there is none.
pub fn listing(family: NfFamily, name: &str) -> Result<Option<String>, NftError> {
    list(family, name, false)
}

/// One counted rule of a table: its comment and its counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub chain: String,
    pub comment: String,
    pub packets: u64,
    pub bytes: u64,
}

/// The counters of the table's commented rules, in rule order; `None` when there is no such
/// table. Rules without a comment or a counter are left out.
pub fn counters(family: NfFamily, name: &str) -> Result<Option<Vec<Counted>>, NftError> {
    let Some(text) = list(family, name, true)? else {
        return Ok(None);
    };
    parse_counters(&text).map(Some).map_err(|e| NftError {
        op: format!("read table {} {name}", family_word(family)),
        detail: format!("nft printed JSON that does not parse: {e}"),
        io: None,
    })
}

/// The commented, counted rules of the text of an `nft -j list` listing.
pub fn parse_counters(text: &str) -> Result<Vec<Counted>, serde_json::Error> {
    serde_json::from_str(text).map(|value: Value| counted(&value))
}

/// The commented, counted rules of an `nft -j list` listing.
pub fn counted(listing: &Value) -> Vec<Counted> {
    let Some(objects) = listing.get("nftables").and_then(Value::as_array) else {
        return Vec::new();
    };
    objects
        .iter()
        .filter_map(|o| o.get("rule"))
        .filter_map(|rule| {
            let comment = rule.get("comment")?.as_str()?;
            let counter = rule
                .get("expr")?
                .as_array()?
                .iter()
                .find_map(|e| e.get("counter"))?;
            Some(Counted {
                chain: rule.get("chain")?.as_str()?.to_owned(),
                comment: comment.to_owned(),
                packets: counter.get("packets")?.as_u64()?,
                bytes: counter.get("bytes")?.as_u64()?,
            })
        })
        .collect()
}

/// A table as the kernel holds it, without what changes by itself: rule handles, counter
/// values and nft's version stamp. Two of them are equal exactly when the rulesets are, so
/// comparing what was installed with what is there now finds drift, and loading the desired
/// ruleset into a private namespace and comparing finds what a reload would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    objects: Vec<Value>,
}

impl Installed {
    /// From the JSON `nft -j list table` prints.
    pub fn from_listing(mut value: Value) -> Self {
        let objects = match value.get_mut("nftables").map(Value::take) {
            Some(Value::Array(objects)) => objects,
            _ => Vec::new(),
        };
        let objects = objects
            .into_iter()
            .filter(|o| o.get("metainfo").is_none())
            .map(|mut o| {
                strip(&mut o);
                o
            })
            .collect();
        Self { objects }
    }

    /// Compact JSON of the normalised table, for logs and a stored fingerprint.
    pub fn fingerprint(&self) -> String {
        Value::Array(self.objects.clone()).to_string()
    }

    /// Number of rules in the table.
    pub fn rule_count(&self) -> usize {
        self.objects
            .iter()
            .filter(|o| o.get("rule").is_some())
            .count()
    }
}

/// Drops handles and zeroes counters, everywhere in `value`.
fn strip(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("handle");
            if let Some(Value::Object(counter)) = map.get_mut("counter") {
                for v in counter.values_mut() {
                    *v = Value::from(0);
                }
            }
            map.values_mut().for_each(strip);
        }
        Value::Array(items) => items.iter_mut().for_each(strip),
        _ => {}
    }
}

fn name(table: &Table<'_>) -> String {
    format!("{} {}", family_word(table.family), table.name)
}

fn family_word(family: NfFamily) -> &'static str {
    match family {
        NfFamily::IP => "ip",
        NfFamily::IP6 => "ip6",
        NfFamily::INet => "inet",
        NfFamily::ARP => "arp",
        NfFamily::Bridge => "bridge",
        NfFamily::NetDev => "netdev",
    }
}

fn run_batch(batch: &Nftables<'_>, check: bool, op: &str) -> Result<(), NftError> {
    let json = serde_json::to_vec(batch).map_err(|e| NftError {
        op: op.to_owned(),
        detail: format!("cannot serialise the ruleset: {e}"),
        io: None,
    })?;
    let mut args = vec!["-j"];
    if check {
        args.push("--check");
    }
    args.extend(["-f", "-"]);
    nft(&args, Some(&json), op).map(drop)
}

/// `nft [-j] list table FAMILY NAME`; `None` when the table does not exist.
fn list(family: NfFamily, name: &str, json: bool) -> Result<Option<String>, NftError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(NftError {
            op: "list table".into(),
            detail: format!("{name:?} is not a table name v6gate uses"),
            io: None,
        });
    }
    let family = family_word(family);
    let mut args = Vec::new();
    if json {
        args.push("-j");
    }
    args.extend(["list", "table", family, name]);
    let op = format!("list table {family} {name}");
    match nft(&args, None, &op) {
        Ok(text) => Ok(Some(text)),
        // nft says "No such file or directory" for a table that is not there.
        Err(e) if e.detail.contains("No such file or directory") => Ok(None),
        Err(e) => Err(e),
    }
}

fn nft(args: &[&str], stdin: Option<&[u8]>, op: &str) -> Result<String, NftError> {
    let fail = |detail: String, io: Option<io::Error>| NftError {
        op: op.to_owned(),
        detail,
        io,
    };
    let Some(program) = NFT_PATHS.iter().find(|p| std::path::Path::new(p).is_file()) else {
        return Err(fail(
            format!("nft is not installed (looked for {})", NFT_PATHS.join(", ")),
            None,
        ));
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run nft: {e}"), Some(e)))?;
    if let Some(input) = stdin {
        // Dropped after writing, so nft sees the end of its input.
        let mut pipe = child.stdin.take().expect("stdin was piped");
        pipe.write_all(input)
            .map_err(|e| fail(format!("writing the ruleset to nft: {e}"), Some(e)))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| fail(format!("waiting for nft: {e}"), Some(e)))?;
    if output.stdout.len() > MAX_OUTPUT {
        return Err(fail(format!("printed more than {MAX_OUTPUT} bytes"), None));
    }
    if !output.status.success() {
        let mut stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        stderr.truncate(4096);
        return Err(fail(
            format!("{} ({})", stderr.trim_end(), output.status),
            None,
        ));
    }
    String::from_utf8(output.stdout).map_err(|e| fail(format!("output is not UTF-8: {e}"), None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replacement_is_add_delete_add_then_content() {
        let table = Table {
            family: NfFamily::INet,
            name: "v6gate".into(),
            handle: None,
        };
        let json = serde_json::to_value(replace_batch(&table, &[])).unwrap();
        let t = json!({"family": "inet", "name": "v6gate"});
        assert_eq!(
            json,
            json!({"nftables": [{"add": {"table": t}}, {"delete": {"table": t}}, {"add": {"table": t}}]})
        );
        let json = serde_json::to_value(delete_batch(NfFamily::INet, "v6gate")).unwrap();
        assert_eq!(
            json,
            json!({"nftables": [{"add": {"table": t}}, {"delete": {"table": t}}]})
        );
    }

    #[test]
    fn normal_form_ignores_handles_counters_and_version() {
        let listing = |handle: u32, packets: u64| {
            json!({"nftables": [
                {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
                {"table": {"family": "inet", "name": "v6gate", "handle": handle}},
                {"rule": {"family": "inet", "table": "v6gate", "chain": "input", "handle": handle + 3,
                  "expr": [{"counter": {"packets": packets, "bytes": packets * 60}}, {"drop": null}]}}
            ]})
        };
        let a = Installed::from_listing(listing(1, 0));
        let b = Installed::from_listing(listing(7, 42));
        assert_eq!(a, b);
        assert_eq!(a.rule_count(), 1);
        assert!(!a.fingerprint().contains("handle"));
        let mut changed = listing(1, 0);
        changed["nftables"][2]["rule"]["expr"][1] = json!({"accept": null});
        assert_ne!(a, Installed::from_listing(changed));
    }

    #[test]
    fn counted_rules_are_read_with_their_comment() {
        let listing = json!({"nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"rule": {"family": "inet", "table": "v6gate", "chain": "input", "handle": 4,
              "comment": "input policy",
              "expr": [{"counter": {"packets": 7, "bytes": 420}}, {"drop": null}]}},
            {"rule": {"family": "inet", "table": "v6gate", "chain": "input", "handle": 5,
              "comment": "icmpv6", "expr": [{"accept": null}]}},
            {"rule": {"family": "inet", "table": "v6gate", "chain": "input", "handle": 6,
              "expr": [{"counter": {"packets": 1, "bytes": 1}}, {"accept": null}]}}
        ]});
        assert_eq!(
            counted(&listing),
            [Counted {
                chain: "input".into(),
                comment: "input policy".into(),
                packets: 7,
                bytes: 420
            }]
        );
        assert!(counted(&json!({"nope": 1})).is_empty());
    }

    #[test]
    fn refuses_table_names_nft_would_parse_as_syntax() {
        for bad in ["", "filter; flush ruleset", "a b", "../x"] {
            assert!(list(NfFamily::INet, bad, true).is_err(), "{bad:?}");
        }
    }
}
