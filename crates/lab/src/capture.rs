//! tcpdump captures in lab namespaces, as pcap files or as decoded text.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::LabError;
use crate::lab::Lab;
use crate::process::{Process, TERMINATE_GRACE};
use crate::topology::Node;

/// A tcpdump running in a lab namespace, writing a pcap file.
pub struct Capture {
    process: Process,
    file: PathBuf,
}

impl Capture {
    /// Stops tcpdump (letting it flush) and returns the pcap bytes.
    pub fn finish(self) -> Result<Vec<u8>, LabError> {
        // tcpdump -U flushes per packet, but give in-flight packets a moment to land.
        thread::sleep(Duration::from_millis(200));
        self.process
            .terminate(TERMINATE_GRACE)
            .map_err(|e| LabError::io("cannot stop tcpdump", e))?;
        warn_dropped(&self.process);
        fs::read(&self.file)
            .map_err(|e| LabError::io(format!("reading {}", self.file.display()), e))
    }

    pub fn path(&self) -> &Path {
        &self.file
    }
}

/// A tcpdump running in a lab namespace, printing decoded packets (`-n -v -l`).
pub struct TextCapture {
    process: Process,
}

impl TextCapture {
    /// Stops tcpdump and returns what it printed.
    pub fn finish(self) -> Result<String, LabError> {
        thread::sleep(Duration::from_millis(200));
        self.process
            .terminate(TERMINATE_GRACE)
            .map_err(|e| LabError::io("cannot stop tcpdump", e))?;
        warn_dropped(&self.process);
        Ok(self.process.stdout())
    }
}

impl Lab {
    /// Starts tcpdump on `device` in `node` writing a pcap, and waits until it listens.
    pub fn capture(&self, node: Node, device: &str, filter: &str) -> Result<Capture, LabError> {
        let file = self.dir.join(format!(
            "{}.pcap",
            self.unique(&format!("{}-{device}", node.tag()))
        ));
        let file_arg = file.to_string_lossy().into_owned();
        // Immediate mode: otherwise packets wait in the capture ring for up to a second
        // and are lost when the capture is stopped right after the traffic.
        let mut args = vec![
            "tcpdump",
            "--immediate-mode",
            "-Z",
            "root",
            "-n",
            "-U",
            "-i",
            device,
            "-w",
            &file_arg,
        ];
        args.extend(filter.split_whitespace());
        let process = self.spawn(node, "tcpdump", &args)?;
        wait_listening(&process)?;
        Ok(Capture { process, file })
    }

    /// Starts tcpdump on `device` in `node` printing packets (`-n -v -l`), and waits until
    /// it listens.
    pub fn capture_text(
        &self,
        node: Node,
        device: &str,
        filter: &str,
    ) -> Result<TextCapture, LabError> {
        let mut args = vec![
            "tcpdump",
            "--immediate-mode",
            "-Z",
            "root",
            "-n",
            "-v",
            "-l",
            "-i",
            device,
        ];
        args.extend(filter.split_whitespace());
        let process = self.spawn(node, "tcpdump", &args)?;
        wait_listening(&process)?;
        Ok(TextCapture { process })
    }
}

/// Says so on stderr when a stopped tcpdump's ring overflowed: a burst of small packets can
/// arrive faster than tcpdump takes them, and the capture then holds only some of them.
fn warn_dropped(process: &Process) {
    if let Some(n) = kernel_drops(&process.stderr()).filter(|&n| n > 0) {
        eprintln!(
            "{}: tcpdump dropped {n} packets (its ring overflowed); the capture holds only part \
             of the traffic",
            process.label()
        );
    }
}

/// The "N packets dropped by kernel" of tcpdump's closing statistics.
fn kernel_drops(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|l| {
        l.strip_suffix(" packets dropped by kernel")?
            .trim()
            .parse()
            .ok()
    })
}

fn wait_listening(process: &Process) -> Result<(), LabError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if process.stderr().contains("listening on") {
            return Ok(());
        }
        if let Ok(Some(status)) = process.exit_status() {
            return Err(LabError::Command {
                command: "tcpdump".to_owned(),
                status: status.code(),
                stderr: process.stderr(),
            });
        }
        if Instant::now() >= deadline {
            return Err(LabError::Timeout {
                what: "tcpdump to listen".to_owned(),
                detail: process.stderr(),
            });
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capture_reads_the_kernel_drops_of_tcpdump() {
        // tcpdump's statistics on exit, as it prints them to stderr.
        let stderr = "tcpdump: listening on lan0, link-type EN10MB (Ethernet), snapshot \
                      length 262144 bytes\n37 packets captured\n240 packets received by \
                      filter\n203 packets dropped by kernel\n";
        assert_eq!(kernel_drops(stderr), Some(203));
        assert_eq!(kernel_drops("listening on lan0\n"), None);
    }
}
