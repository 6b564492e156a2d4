//! Running a loaded BPF program once on given bytes (`BPF_PROG_TEST_RUN`), which the loader
//! crate does not wrap: the kernel runs the program as it would on a packet and hands back
//! the rewritten bytes and the program's return value, without any device or traffic.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `BPF_PROG_TEST_RUN` in `enum bpf_cmd` of the UAPI `linux/bpf.h`.
const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// The `test` member of `union bpf_attr`, up to the fields used here; the kernel accepts a
/// shorter attribute as long as the bytes it leaves out would be zero.
#[repr(C, align(8))]
#[derive(Default)]
struct TestAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    /// Named so that it is zero: the kernel refuses an attribute with non-zero bytes past
    /// the fields it knows, and padding would be left undefined.
    _pad: u32,
}

/// What one run gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRun {
    /// The program's return value (a tc verdict for classifiers, -1 being `TC_ACT_UNSPEC`).
    pub retval: i32,
    /// The packet as the program left it.
    pub data: Vec<u8>,
}

/// Runs the program behind `prog` once with `data` as the packet (from its Ethernet header
/// for tc programs). The output may grow by up to `headroom` bytes.
pub fn test_run(prog: BorrowedFd<'_>, data: &[u8], headroom: usize) -> io::Result<TestRun> {
    let mut out = vec![0u8; data.len() + headroom];
    let mut attr = TestAttr {
        prog_fd: u32::try_from(prog.as_raw_fd()).map_err(|_| io::ErrorKind::InvalidInput)?,
        data_size_in: u32::try_from(data.len()).map_err(|_| io::ErrorKind::InvalidInput)?,
        data_size_out: u32::try_from(out.len()).map_err(|_| io::ErrorKind::InvalidInput)?,
        data_in: data.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: 1,
        ..TestAttr::default()
    };
    // SAFETY: `attr` is a valid, 8-byte aligned `bpf_attr` prefix whose size is passed; the
    // kernel reads `data_size_in` bytes from `data_in` (borrowed from `data`) and writes at
    // most `data_size_out` bytes to `data_out` (owned by `out`), both alive for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestAttr,
            size_of::<TestAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    out.truncate(attr.data_size_out as usize);
    Ok(TestRun {
        retval: attr.retval as i32,
        data: out,
    })
}
