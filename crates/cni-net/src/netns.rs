//! Network namespaces.
//!
//! A thread enters a namespace only through [`NetNs::run`], whose guard switches back
//! when the closure returns, so `?` inside cannot leave the thread in the wrong
//! namespace. If switching back fails the process aborts: continuing in the container's
//! namespace would apply host changes to the container.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

use crate::{NetError, Result};

/// Filesystem magic of nsfs (bind-mounted namespaces) and of procfs (`/proc/PID/ns/net`).
const NSFS_MAGIC: i64 = 0x6e73_6673;
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// Where `ip netns` keeps named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// An open network namespace: a real one, or one of the fake kernel's.
#[derive(Debug)]
pub struct NetNs {
    inner: Inner,
    path: PathBuf,
}

#[derive(Debug)]
enum Inner {
    File(File),
    /// A namespace of the fake kernel, by its number there.
    Fake(u32),
}

impl NetNs {
    /// Opens the namespace at `path` and checks that it is one (nsfs or procfs), with
    /// distinct errors for "does not exist" and "not a namespace" (upstream `ns.GetNS`).
    pub fn open(path: impl AsRef<Path>) -> Result<NetNs> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(NetError::NetnsNotFound(shown));
            }
            Err(e) => return Err(NetError::io(format!("failed to open {shown:?}"), e)),
        };
        let stat = nix::sys::statfs::fstatfs(&file)
            .map_err(|e| NetError::io(format!("failed to Statfs {shown:?}"), e))?;
        let magic = stat.filesystem_type().0 as i64;
        if magic != NSFS_MAGIC && magic != PROC_SUPER_MAGIC {
            return Err(NetError::NotANetns { path: shown, magic });
        }
        Ok(NetNs {
            inner: Inner::File(file),
            path: path.to_path_buf(),
        })
    }

    /// A namespace of the fake kernel (see `rtnl::fake`).
    pub(crate) fn fake(id: u32, path: &str) -> NetNs {
        NetNs {
            inner: Inner::Fake(id),
            path: PathBuf::from(path),
        }
    }

    /// The fake kernel's number for this namespace, if it is a fake one.
    pub(crate) fn fake_id(&self) -> Option<u32> {
        match self.inner {
            Inner::Fake(id) => Some(id),
            Inner::File(_) => None,
        }
    }

    /// What `IFLA_NET_NS_FD` carries for this namespace: the file descriptor, or for
    /// a fake namespace its number (only the fake kernel reads it).
    pub(crate) fn netlink_fd(&self) -> i32 {
        match &self.inner {
            Inner::File(file) => std::os::fd::AsRawFd::as_raw_fd(file),
            Inner::Fake(id) => *id as i32,
        }
    }

    /// The namespace of the calling thread.
    pub fn current() -> Result<NetNs> {
        NetNs::open("/proc/thread-self/ns/net")
    }

    /// Whether this is the namespace of the calling thread.
    pub fn is_current(&self) -> bool {
        NetNs::current().is_ok_and(|current| self.same_as(&current))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the calling thread inside this namespace, and switches back after.
    /// Sockets created inside stay bound to this namespace; child processes spawned
    /// inside start in it.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let Inner::File(file) = &self.inner else {
            return Err(NetError::Unsupported(format!(
                "cannot enter the fake namespace {:?}",
                self.path
            )));
        };
        let origin = File::open("/proc/thread-self/ns/net")
            .map_err(|e| NetError::io("open own netns", e))?;
        setns(file, CloneFlags::CLONE_NEWNET)
            .map_err(|e| NetError::io(format!("failed to enter netns {:?}", self.path), e))?;
        let _back = SwitchBack(origin);
        Ok(f())
    }

    /// `true` if `other` is the same namespace as this one.
    pub fn same_as(&self, other: &NetNs) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (&self.inner, &other.inner) {
            (Inner::File(a), Inner::File(b)) => match (a.metadata(), b.metadata()) {
                (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
                _ => false,
            },
            (Inner::Fake(a), Inner::Fake(b)) => a == b,
            _ => false,
        }
    }

    /// Creates a named namespace under `/run/netns` as `ip netns add` does: the file is
    /// created exclusively, and a short-lived thread unshares a new namespace and
    /// bind-mounts it there, so no long-lived thread ever changes namespace.
    pub fn create(name: &str) -> Result<NetNs> {
        let dir = Path::new(NETNS_RUN_DIR);
        std::fs::create_dir_all(dir).map_err(|e| NetError::io("create /run/netns", e))?;
        make_shared_mount(dir)?;
        let path = dir.join(name);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&path)
            .map_err(|e| NetError::io(format!("create {path:?}"), e))?;
        let target = path.clone();
        let mounted = std::thread::spawn(move || -> Result<()> {
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| NetError::io("unshare(CLONE_NEWNET)", e))?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| NetError::io(format!("bind mount netns on {target:?}"), e))
        })
        .join()
        .unwrap_or_else(|_| {
            Err(NetError::io(
                "netns thread",
                std::io::Error::other("panicked"),
            ))
        });
        let opened = mounted.and_then(|()| NetNs::open(&path));
        if opened.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        opened
    }

    /// Removes a named namespace made by [`NetNs::create`] (or `ip netns add`): detach
    /// the bind mount, then unlink. A missing one is not an error. The kernel destroys
    /// the namespace, with every interface in it, once nothing holds it any more.
    pub fn remove(path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let _ = umount2(path, MntFlags::MNT_DETACH);
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(NetError::io(format!("remove {path:?}"), e)),
        }
    }
}

/// `/run/netns` must be a shared mount so that namespaces mounted there are visible in
/// every mount namespace (as `ip netns` arranges). Done once per process, under a lock:
/// two threads creating namespaces at once must not both bind the directory.
fn make_shared_mount(dir: &Path) -> Result<()> {
    static DONE: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !*done {
        share_directory(dir)?;
        *done = true;
    }
    Ok(())
}

fn share_directory(dir: &Path) -> Result<()> {
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    if mount(None::<&str>, dir, None::<&str>, shared, None::<&str>).is_ok() {
        return Ok(());
    }
    // Not a mount point yet: bind it onto itself first.
    mount(
        Some(dir),
        dir,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| NetError::io("bind mount /run/netns", e))?;
    mount(None::<&str>, dir, None::<&str>, shared, None::<&str>)
        .map_err(|e| NetError::io("make /run/netns shared", e))
}

struct SwitchBack(File);

impl Drop for SwitchBack {
    fn drop(&mut self) {
        if setns(&self.0, CloneFlags::CLONE_NEWNET).is_err() {
            // Staying in the other namespace would misapply every later change.
            eprintln!("fatal: cannot switch back to the original network namespace");
            std::process::abort();
        }
    }
}
