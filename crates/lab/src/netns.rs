//! Lab namespace names, entering a namespace, and sweeping namespaces left behind by killed
//! test processes.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Mutex;

use crate::command::run;

/// Prefix of every namespace and temporary directory a lab creates.
pub(crate) const NAME_PREFIX: &str = "v6gl";

pub(crate) fn random_tag() -> u16 {
    let mut bytes = [0u8; 2];
    if fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_err()
    {
        // Uniqueness already comes from pid + counter; the tag only guards against a
        // recycled pid meeting a lab that was never torn down.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        bytes = (nanos as u16).to_le_bytes();
    }
    u16::from_le_bytes(bytes)
}

/// Deletes namespaces left by lab processes that no longer exist (a test run killed
/// before its Drop could run), and their temporary directories. Namespaces of live lab
/// processes are never touched, nor namespaces some process still runs in (a lab kept up
/// on purpose by `v6gate-demo --keep`).
pub(crate) fn sweep_stale_namespaces() {
    let _sweeping = SWEEP.lock().unwrap_or_else(|e| e.into_inner());
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return;
    };
    let in_use = namespaces_in_use();
    let mut kept_labs = HashSet::new();
    let mut dead_labs = HashSet::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name
            .strip_prefix(NAME_PREFIX)
            .and_then(|r| r.strip_prefix('-'))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        // "{prefix}-{pid}-{counter}-{tag}-{node}" without the node is the lab id.
        let lab_id = name
            .rsplit_once('-')
            .map_or(name.as_str(), |(id, _)| id)
            .to_owned();
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let inode = std::os::unix::fs::MetadataExt::ino(&match entry.metadata() {
            Ok(metadata) => metadata,
            Err(_) => continue,
        });
        if in_use.contains(&inode) {
            kept_labs.insert(lab_id);
        } else {
            let _ = run("ip", &["netns", "del", &name]);
            dead_labs.insert(lab_id);
        }
    }
    for lab_id in dead_labs.difference(&kept_labs) {
        let _ = fs::remove_dir_all(std::env::temp_dir().join(lab_id));
    }
    // Directories whose namespaces were removed by hand (a kept demo taken down).
    let Ok(dirs) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for dir in dirs.flatten() {
        let id = dir.file_name().to_string_lossy().into_owned();
        let Some(pid) = id
            .strip_prefix(NAME_PREFIX)
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let has_namespaces = fs::read_dir("/run/netns").is_ok_and(|mut entries| {
            entries.any(|e| {
                e.is_ok_and(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{id}-"))
                })
            })
        });
        if !has_namespaces && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(dir.path());
        }
    }
}

/// Serialises sweeps within this process (and lets a test set up a namespace without a
/// parallel sweep taking it for stale).
pub(crate) static SWEEP: Mutex<()> = Mutex::new(());

/// Inode numbers of the network namespaces that some process runs in.
fn namespaces_in_use() -> HashSet<u64> {
    let Ok(processes) = fs::read_dir("/proc") else {
        return HashSet::new();
    };
    processes
        .flatten()
        .filter_map(|p| fs::read_link(p.path().join("ns/net")).ok())
        .filter_map(|link| {
            // "net:[4026531840]"
            let text = link.to_string_lossy().into_owned();
            text.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// Moves the calling thread into the network namespace `/run/netns/{name}`.
///
/// Network namespace membership is per thread, so this must only be called on a thread
/// spawned for the purpose, which then never runs anything else.
pub fn enter_netns(name: &str) -> io::Result<()> {
    sys::netns::enter(name)
}

/// Names of all network namespaces in `/run/netns`.
#[cfg(test)]
pub(crate) fn netns_names() -> Vec<String> {
    fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::thread;
    use std::time::Duration;

    use super::*;
    use crate::command::{is_root, run_ok};

    #[test]
    fn sweep_removes_labs_of_dead_processes_but_not_namespaces_in_use() {
        assert!(is_root(), "the lab tests must run as root");
        // A pid that surely belonged to a process which has exited.
        let mut exited = Command::new("true").spawn().unwrap();
        exited.wait().unwrap();
        let dead = exited.id();
        let stale = format!("{NAME_PREFIX}-{dead}-0-{:04x}", random_tag());
        let kept = format!("{NAME_PREFIX}-{dead}-1-{:04x}", random_tag());
        let setting_up = SWEEP.lock().unwrap_or_else(|e| e.into_inner());
        let stale_dir = std::env::temp_dir().join(&stale);
        fs::create_dir_all(&stale_dir).unwrap();
        let orphan_dir = std::env::temp_dir().join(format!("{NAME_PREFIX}-{dead}-2-0000"));
        fs::create_dir_all(&orphan_dir).unwrap();
        run_ok("ip", &["netns", "add", &format!("{stale}-sa")]).unwrap();
        run_ok("ip", &["netns", "add", &format!("{kept}-sa")]).unwrap();
        let mut resident = Command::new("ip")
            .args(["netns", "exec", &format!("{kept}-sa"), "sleep", "30"])
            .spawn()
            .unwrap();
        // Wait until the sleeper has entered the namespace.
        let entered = (0..100).any(|_| {
            thread::sleep(Duration::from_millis(20));
            fs::read_to_string(format!("/proc/{}/cmdline", resident.id()))
                .is_ok_and(|c| c.starts_with("sleep"))
        });
        drop(setting_up);

        sweep_stale_namespaces();
        let names = netns_names();
        let stale_gone = !names.contains(&format!("{stale}-sa"));
        let kept_there = names.contains(&format!("{kept}-sa"));
        let _ = resident.kill();
        let _ = resident.wait();
        let _ = run("ip", &["netns", "del", &format!("{kept}-sa")]);
        assert!(entered);
        assert!(stale_gone, "{names:?}");
        assert!(!stale_dir.exists());
        assert!(!orphan_dir.exists());
        assert!(kept_there, "a namespace in use was swept: {names:?}");
    }
}
