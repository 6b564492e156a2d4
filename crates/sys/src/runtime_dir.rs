//! The daemon's runtime directory: the instance lock and the journal of what it installed.
//!
//! The daemon runs as root and acts on what it reads here (it deletes routes and writes
//! sysctls named in a journal), so nothing in it may be steerable by anyone else: the
//! directory must belong to us and be writable by nobody else, files are opened without
//! following symlinks, must be regular files of ours, and are replaced by an atomic rename.
//! Reads are bounded.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Result, SysError};

/// Longest file this module reads; a journal of thousands of objects fits many times over.
pub const MAX_FILE: u64 = 4 << 20;

/// Group- or other-writable bits.
const WRITABLE_BY_OTHERS: u32 = 0o022;

/// A directory that only we can write to.
#[derive(Debug, Clone)]
pub struct RuntimeDir {
    path: PathBuf,
}

/// An exclusive hold on one instance name, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    path: PathBuf,
}

impl InstanceLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Why [`RuntimeDir::lock`] failed.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds the lock; its pid, as it wrote it, if readable.
    Held {
        pid: Option<u32>,
        path: PathBuf,
    },
    Other(SysError),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Held {
                pid: Some(pid),
                path,
            } => {
                write!(f, "another v6gate, pid {pid}, holds {}", path.display())
            }
            Self::Held { pid: None, path } => {
                write!(f, "another v6gate holds {}", path.display())
            }
            Self::Other(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for LockError {}

impl RuntimeDir {
    /// Opens `path`, creating it (mode 0700) if it does not exist, and checks that it is a
    /// real directory (not a symlink) owned by us and writable by no one else, and that no
    /// one else can swap it or any directory above it (see [`check_ancestors`]).
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_absolute() {
            return Err(refused(path, "is not an absolute path"));
        }
        check_ancestors(path)?;
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(path)
                    .map_err(|io| file_error("create directory", path, io))?;
            }
            Err(io) => return Err(file_error("inspect directory", path, io)),
            Ok(_) => {}
        }
        let meta =
            fs::symlink_metadata(path).map_err(|io| file_error("inspect directory", path, io))?;
        if !meta.file_type().is_dir() {
            return Err(refused(
                path,
                "is not a directory (a symlink is not accepted)",
            ));
        }
        check_owner(path, &meta)?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the exclusive lock `name`, writing our pid into it. Fails at once, naming the
    /// holder, when another process has it.
    pub fn lock(&self, name: &str) -> std::result::Result<InstanceLock, LockError> {
        let path = self.file(name).map_err(LockError::Other)?;
        self.check_existing(&path).map_err(LockError::Other)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|io| LockError::Other(file_error("open lock", &path, io)))?;
        match try_lock(&file) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
                let mut text = String::new();
                let pid = (&file)
                    .take(32)
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                return Err(LockError::Held { pid, path });
            }
            Err(io) => return Err(LockError::Other(file_error("lock", &path, io))),
        }
        let pid = format!("{}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.write_all(pid.as_bytes()))
            .map_err(|io| LockError::Other(file_error("write lock", &path, io)))?;
        Ok(InstanceLock { _file: file, path })
    }

    /// The contents of `name`, or `None` if there is no such file. A file that is not a
    /// regular file of ours, is writable by others, or is larger than [`MAX_FILE`] is refused.
    pub fn read(&self, name: &str) -> Result<Option<String>> {
        let path = self.file(name)?;
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(refused(&path, "is a symlink"));
            }
            Err(io) => return Err(file_error("open", &path, io)),
        };
        let meta = file
            .metadata()
            .map_err(|io| file_error("inspect", &path, io))?;
        if !meta.file_type().is_file() {
            return Err(refused(&path, "is not a regular file"));
        }
        check_owner(&path, &meta)?;
        if meta.len() > MAX_FILE {
            return Err(refused(&path, "is larger than 4 MiB"));
        }
        let mut text = String::new();
        file.take(MAX_FILE)
            .read_to_string(&mut text)
            .map_err(|io| file_error("read", &path, io))?;
        Ok(Some(text))
    }

    /// Replaces `name` with `text` atomically: written to `NAME-new` (never through a
    /// symlink), synced, then renamed over `name`.
    pub fn write(&self, name: &str, text: &str) -> Result<()> {
        let path = self.file(name)?;
        let aside = self.file(&format!("{name}-new"))?;
        self.check_existing(&path)?;
        self.check_existing(&aside)?;
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&aside)
            .map_err(|io| file_error("open", &aside, io))?;
        // A file someone else created keeps its owner and mode through O_TRUNC.
        let meta = file
            .metadata()
            .map_err(|io| file_error("inspect", &aside, io))?;
        check_owner(&aside, &meta)?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|io| file_error("write", &aside, io))?;
        fs::rename(&aside, &path).map_err(|io| file_error("rename into place", &path, io))
    }

    /// Opens the existing file `name` for appending (never through a symlink), after checking
    /// that it is a regular file of ours that no one else may write.
    pub fn append(&self, name: &str) -> Result<File> {
        let path = self.file(name)?;
        let file = OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|io| match io.raw_os_error() {
                Some(libc::ELOOP) => refused(&path, "is a symlink"),
                _ => file_error("open", &path, io),
            })?;
        let meta = file
            .metadata()
            .map_err(|io| file_error("inspect", &path, io))?;
        if !meta.file_type().is_file() {
            return Err(refused(&path, "is not a regular file"));
        }
        check_owner(&path, &meta)?;
        Ok(file)
    }

    /// Removes `name` if it is a regular file; anything else there is left alone.
    pub fn remove(&self, name: &str) -> Result<()> {
        let path = self.file(name)?;
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(io) => Err(file_error("inspect", &path, io)),
            Ok(meta) if meta.file_type().is_file() => {
                fs::remove_file(&path).map_err(|io| file_error("remove", &path, io))
            }
            Ok(_) => Err(refused(&path, "is not a regular file; left in place")),
        }
    }

    /// Refuses `name` (and `NAME-new`) when it exists and is not a regular file of ours that
    /// no one else may write, so a start fails before it touches the host.
    pub fn check(&self, name: &str) -> Result<()> {
        self.check_existing(&self.file(name)?)?;
        self.check_existing(&self.file(&format!("{name}-new"))?)
    }

    fn check_existing(&self, path: &Path) -> Result<()> {
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(io) => Err(file_error("inspect", path, io)),
            Ok(meta) if meta.file_type().is_symlink() => Err(refused(path, "is a symlink")),
            Ok(meta) if !meta.file_type().is_file() => Err(refused(path, "is not a regular file")),
            Ok(meta) => check_owner(path, &meta),
        }
    }

    fn file(&self, name: &str) -> Result<PathBuf> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(SysError::Invalid {
                what: "runtime file name",
                value: name.chars().take(64).collect(),
                reason: "must be a plain file name",
            });
        }
        Ok(self.path.join(name))
    }
}

/// What is at `path` when it is not something this module may replace: `None` if nothing is.
pub fn is_socket(path: &Path) -> Result<Option<bool>> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(io) => Err(file_error("inspect", path, io)),
        Ok(meta) => Ok(Some(meta.file_type().is_socket())),
    }
}

/// Restricts `path` (a socket we just bound) to its owner.
pub fn make_private(path: &Path) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|io| file_error("restrict", path, io))
}

/// Every directory above `path` must be ours, and writable by others only with the sticky bit
/// (`/tmp`), where no one else may rename or remove what we own; a symlink on the way must be
/// ours too. Otherwise someone could swap a directory on the way for one of their choosing.
fn check_ancestors(path: &Path) -> Result<()> {
    let euid = effective_uid();
    for ancestor in path.ancestors().skip(1) {
        if ancestor.as_os_str().is_empty() {
            continue;
        }
        let meta = match fs::symlink_metadata(ancestor) {
            Ok(meta) => meta,
            // Created below, with our owner and mode 0700.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(io) => return Err(file_error("inspect", ancestor, io)),
        };
        if meta.uid() != euid {
            return Err(refused(
                ancestor,
                &format!("is owned by uid {}, not by uid {euid}", meta.uid()),
            ));
        }
        let sticky = meta.mode() & 0o1000 != 0;
        if meta.file_type().is_dir() && meta.mode() & WRITABLE_BY_OTHERS != 0 && !sticky {
            return Err(refused(
                ancestor,
                &format!(
                    "is writable by group or others without the sticky bit (mode {:o})",
                    meta.mode() & 0o7777
                ),
            ));
        }
    }
    Ok(())
}

fn check_owner(path: &Path, meta: &fs::Metadata) -> Result<()> {
    let euid = effective_uid();
    if meta.uid() != euid {
        return Err(refused(
            path,
            &format!("is owned by uid {}, not by uid {euid}", meta.uid()),
        ));
    }
    if meta.mode() & WRITABLE_BY_OTHERS != 0 {
        return Err(refused(
            path,
            &format!(
                "is writable by group or others (mode {:o})",
                meta.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

/// `flock(LOCK_EX | LOCK_NB)`: held by the open file, released when it closes or the process
/// dies, so a crashed daemon never leaves a stale lock.
fn try_lock(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is owned by `file`, open for the duration of the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The user the process acts as (root for the daemon).
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn refused(path: &Path, reason: &str) -> SysError {
    SysError::Refused {
        path: path.display().to_string(),
        reason: reason.to_owned(),
    }
}

fn file_error(op: &'static str, path: &Path, io: io::Error) -> SysError {
    SysError::File {
        op,
        path: path.display().to_string(),
        io,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("v6g-rt-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn creates_a_private_directory_and_round_trips_a_file() {
        let dir = scratch("create");
        let rt = RuntimeDir::open(&dir.join("run")).unwrap();
        let meta = fs::metadata(rt.path()).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
        assert_eq!(rt.read("j").unwrap(), None);
        rt.write("j", "one\n").unwrap();
        rt.write("j", "two\n").unwrap();
        rt.append("j").unwrap().write_all(b"three\n").unwrap();
        assert_eq!(rt.read("j").unwrap().as_deref(), Some("two\nthree\n"));
        assert_eq!(
            fs::metadata(dir.join("run/j")).unwrap().mode() & 0o777,
            0o600
        );
        assert!(!dir.join("run/j-new").exists());
        rt.remove("j").unwrap();
        assert_eq!(rt.read("j").unwrap(), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_a_directory_others_can_write() {
        let dir = scratch("open");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let error = RuntimeDir::open(&dir).unwrap_err().to_string();
        assert!(error.contains("writable by group or others"), "{error}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn never_writes_through_a_symlink_nor_deletes_what_is_not_a_file() {
        let dir = scratch("symlink");
        let rt = RuntimeDir::open(&dir).unwrap();
        let target = dir.join("target");
        fs::write(&target, "precious").unwrap();
        symlink(&target, dir.join("j-new")).unwrap();
        let error = rt.write("j", "x").unwrap_err().to_string();
        assert!(error.contains("symlink"), "{error}");
        assert!(rt.check("j").is_err());
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
        fs::remove_file(dir.join("j-new")).unwrap();

        symlink(&target, dir.join("j")).unwrap();
        assert!(rt.read("j").unwrap_err().to_string().contains("symlink"));
        fs::remove_file(dir.join("j")).unwrap();

        fs::create_dir(dir.join("d")).unwrap();
        assert!(rt.remove("d").is_err());
        assert!(dir.join("d").is_dir());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_a_directory_below_one_others_can_write() {
        let dir = scratch("ancestor");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let error = RuntimeDir::open(&dir.join("run")).unwrap_err().to_string();
        assert!(error.contains("without the sticky bit"), "{error}");
        assert!(!dir.join("run").exists());
        // With the sticky bit (like /tmp) no one else can swap what is ours.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777)).unwrap();
        RuntimeDir::open(&dir.join("run")).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_a_symlink_of_someone_else_on_the_way() {
        let dir = scratch("link");
        fs::create_dir_all(dir.join("real")).unwrap();
        symlink(dir.join("real"), dir.join("via")).unwrap();
        std::os::unix::fs::lchown(dir.join("via"), Some(65534), Some(65534)).unwrap();
        let error = RuntimeDir::open(&dir.join("via/run"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("owned by uid 65534"), "{error}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_a_file_others_can_write() {
        let dir = scratch("mode");
        let rt = RuntimeDir::open(&dir).unwrap();
        fs::write(dir.join("j"), "x").unwrap();
        fs::set_permissions(dir.join("j"), fs::Permissions::from_mode(0o666)).unwrap();
        assert!(rt.read("j").is_err());
        assert!(rt.check("j").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_lock_names_the_first_holder() {
        let dir = scratch("lock");
        let rt = RuntimeDir::open(&dir).unwrap();
        let held = rt.lock("a.lock").unwrap();
        match rt.lock("a.lock") {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("second lock: {other:?}"),
        }
        drop(held);
        let again = rt.lock("a.lock").unwrap();
        assert!(again.path().ends_with("a.lock"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
