//! The kernel a plugin works on, handed to plugin verbs by their caller: the real one,
//! or a [`FakeKernel`] in tests. Everything a plugin does to the kernel goes through it
//! (namespaces, netlink sockets, sysctls), so the very same ADD/DEL/CHECK code runs
//! against both.

use crate::rtnl::Family;
use crate::rtnl::fake::FakeKernel;
use crate::{NetError, NetNs, Netlink, Result, sysctl};

#[derive(Clone, Debug, Default)]
pub struct Kernel {
    fake: Option<FakeKernel>,
}

impl Kernel {
    /// The running kernel.
    pub fn real() -> Kernel {
        Kernel { fake: None }
    }

    /// A handle on a fake kernel, for plugin verbs in tests.
    pub fn from_fake(fake: &FakeKernel) -> Kernel {
        Kernel {
            fake: Some(fake.clone()),
        }
    }

    /// The fake behind this handle, if it is one.
    pub fn fake(&self) -> Option<&FakeKernel> {
        self.fake.as_ref()
    }

    /// Opens the namespace at `path` (upstream `ns.GetNS`): a missing path answers
    /// `already_gone()`, a file that is no namespace is `NotANetns`.
    pub fn open_netns(&self, path: &str) -> Result<NetNs> {
        match &self.fake {
            Some(fake) => fake.open(path),
            None => NetNs::open(path),
        }
    }

    /// The plugin's own namespace (the host's, as runtimes call plugins).
    pub fn own_netns(&self) -> Result<NetNs> {
        match &self.fake {
            Some(fake) => Ok(fake.host()),
            None => NetNs::current(),
        }
    }

    /// A socket in the plugin's own namespace.
    pub fn host(&self) -> Result<Netlink> {
        match &self.fake {
            Some(fake) => Ok(Netlink::open_fake(fake.socket(&fake.host())?)),
            None => Netlink::open_kernel(),
        }
    }

    /// A socket in `netns` if given, else in the plugin's own namespace.
    pub fn host_in(&self, netns: &NetNs) -> Result<Netlink> {
        self.netlink(netns)
    }

    /// A socket bound to `netns`; the calling thread does not stay there.
    pub fn netlink(&self, netns: &NetNs) -> Result<Netlink> {
        match &self.fake {
            Some(fake) => Ok(Netlink::open_fake(fake.socket(netns)?)),
            None => netns.run(Netlink::open_kernel)?,
        }
    }

    /// Reads a sysctl (`net/ipv4/ip_forward` or the dotted form) in `netns`, or in
    /// the plugin's own namespace for `None`. The value has no trailing newline.
    pub fn sysctl_read(&self, netns: Option<&NetNs>, name: &str) -> Result<String> {
        match (&self.fake, netns) {
            (Some(fake), ns) => fake.sysctl_read(ns.unwrap_or(&fake.host()), &sysctl::key(name)),
            (None, None) => sysctl::read(name),
            (None, Some(ns)) => ns.run(|| sysctl::read(name))?,
        }
    }

    /// Writes a sysctl in `netns` (the plugin's own namespace for `None`).
    pub fn sysctl_write(&self, netns: Option<&NetNs>, name: &str, value: &str) -> Result<()> {
        match (&self.fake, netns) {
            (Some(fake), ns) => {
                fake.sysctl_write(ns.unwrap_or(&fake.host()), &sysctl::key(name), value)
            }
            (None, None) => sysctl::write(name, value),
            (None, Some(ns)) => ns.run(|| sysctl::write(name, value))?,
        }
    }

    /// Writes `value` only when it differs (upstream's forwarding helpers; it also
    /// keeps a read-only `/proc/sys` from failing a call that has nothing to change).
    pub fn sysctl_ensure(&self, netns: Option<&NetNs>, name: &str, value: &str) -> Result<()> {
        if self.sysctl_read(netns, name).is_ok_and(|v| v == value) {
            return Ok(());
        }
        self.sysctl_write(netns, name, value)
    }

    /// Turns on forwarding of `family` in the plugin's own namespace.
    pub fn enable_forwarding(&self, family: Family) -> Result<()> {
        match family {
            Family::V4 => self.sysctl_ensure(None, "net/ipv4/ip_forward", "1"),
            Family::V6 => self.sysctl_ensure(None, "net/ipv6/conf/all/forwarding", "1"),
        }
    }

    /// An exclusive lock on the namespace file at `path`, held until the file is
    /// dropped (upstream sbr serialises its calls on it). `None` when there is no such
    /// file: unlike upstream, nothing is created at a missing path. The fake kernel's
    /// namespaces are not files: `None`.
    pub fn lock_netns(&self, path: &str) -> Result<Option<std::fs::File>> {
        if self.fake.is_some() {
            return Ok(None);
        }
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(NetError::io(format!("failed to open {path} to lock it"), e)),
        };
        file.lock()
            .map_err(|e| NetError::io(format!("failed to lock {path}"), e))?;
        Ok(Some(file))
    }

    /// Scheduler ticks per microsecond (`/proc/net/psched`), for tbf's `buffer`; the
    /// fake kernel has this machine's usual clock.
    pub fn tc_ticks_per_usec(&self) -> Result<f64> {
        match &self.fake {
            Some(_) => Ok(15.625),
            None => {
                let text = std::fs::read_to_string("/proc/net/psched")
                    .map_err(|e| NetError::io("failed to read /proc/net/psched", e))?;
                crate::rtnl::tc::ticks_per_usec(&text)
            }
        }
    }

    /// Firewall work (iptables, nftables) is only possible on the real kernel: a
    /// plugin running against the fake must never reach the machine's own firewall.
    pub fn require_firewall(&self) -> Result<()> {
        match &self.fake {
            Some(_) => Err(NetError::Unsupported(
                "the fake kernel has no firewall".into(),
            )),
            None => Ok(()),
        }
    }
}

impl FakeKernel {
    /// A [`Kernel`] handle on this fake, for plugin verbs.
    pub fn kernel(&self) -> Kernel {
        Kernel::from_fake(self)
    }
}
