//! tap devices (the tap plugin): made through `/dev/net/tun`'s ioctls, the only
//! interface the kernel has for a tap's queue flags, owner and group. This is the one
//! module with `unsafe` code: the ioctls take a pointer to a `struct ifreq`.

#![allow(unsafe_code)]

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;

use crate::rtnl::link::check_name;
use crate::{Kernel, NetError, NetNs, Result};

/// A tap device to create (persistent, so it outlives this process).
#[derive(Debug, Clone, Default)]
pub struct TapSpec<'a> {
    pub name: &'a str,
    /// `IFF_MULTI_QUEUE`.
    pub multi_queue: bool,
    /// `IFF_VNET_HDR`: frames carry a virtio-net header (VMs).
    pub vnet_hdr: bool,
    pub owner: Option<u32>,
    pub group: Option<u32>,
    /// An SELinux context for the device (upstream `selinuxContext`). A tun device
    /// takes the label of the process that creates it, so on a host with SELinux the
    /// tap is made by `ip tuntap` executed with this exec label, as upstream does;
    /// where SELinux is off it is ignored, as upstream's label call is then a no-op.
    pub selinux_context: Option<&'a str>,
}

/// Whether the host runs SELinux (its filesystem is mounted).
fn selinux_enabled() -> bool {
    std::path::Path::new("/sys/fs/selinux/enforce").exists()
}

/// `ip tuntap add` arguments for `spec`: the same device the ioctls make.
fn tuntap_args(spec: &TapSpec) -> Vec<String> {
    let mut args: Vec<String> = ["tuntap", "add", "dev", spec.name, "mode", "tap"]
        .map(String::from)
        .to_vec();
    if spec.multi_queue {
        args.push("multi_queue".into());
    }
    if spec.vnet_hdr {
        args.push("vnet_hdr".into());
    }
    if let Some(owner) = spec.owner {
        args.extend(["user".into(), owner.to_string()]);
    }
    if let Some(group) = spec.group {
        args.extend(["group".into(), group.to_string()]);
    }
    args
}

/// Runs `ip tuntap add` with `context` as this thread's exec label (the child
/// inherits it), then clears the label again.
fn create_labelled(spec: &TapSpec, context: &str) -> Result<()> {
    let op = |what: &str| format!("failed to create tap {:?}: {what}", spec.name);
    let exec_attr = "/proc/thread-self/attr/exec";
    std::fs::write(exec_attr, context)
        .map_err(|e| NetError::io(op(&format!("set SELinux exec label {context:?}")), e))?;
    let output = std::process::Command::new("ip")
        .args(tuntap_args(spec))
        .output();
    let _ = std::fs::write(exec_attr, "");
    let output =
        output.map_err(|e| NetError::io(op("run ip (selinuxContext needs iproute2)"), e))?;
    if !output.status.success() {
        return Err(NetError::Other(op(
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;
const IFF_VNET_HDR: i16 = 0x4000;
const IFF_MULTI_QUEUE: i16 = 0x0100;

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags (a 24-byte union).
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: i16,
    _union_rest: [u8; 22],
}

nix::ioctl_write_ptr_bad!(
    tun_set_iff,
    nix::request_code_write!(b'T', 202, std::mem::size_of::<nix::libc::c_int>()),
    IfReq
);
nix::ioctl_write_int_bad!(
    tun_set_persist,
    nix::request_code_write!(b'T', 203, std::mem::size_of::<nix::libc::c_int>())
);
nix::ioctl_write_int_bad!(
    tun_set_owner,
    nix::request_code_write!(b'T', 204, std::mem::size_of::<nix::libc::c_int>())
);
nix::ioctl_write_int_bad!(
    tun_set_group,
    nix::request_code_write!(b'T', 206, std::mem::size_of::<nix::libc::c_int>())
);

impl Kernel {
    /// Creates a persistent tap device in `netns` (down; configure it with a
    /// `LinkChange`). A failure after the device exists leaves nothing: it is only
    /// made persistent as the last step, and a non-persistent tap goes with its fd.
    /// An existing name answers `already_exists()`: TUNSETIFF itself would attach to
    /// an existing tap instead of failing.
    pub fn create_tap(&self, netns: &NetNs, spec: &TapSpec) -> Result<()> {
        check_name(spec.name)?;
        if self.netlink(netns)?.link_by_name(spec.name)?.is_some() {
            return Err(NetError::kernel(
                format!("failed to create tap {:?}", spec.name),
                crate::error::errno::EEXIST,
            ));
        }
        match self.fake() {
            Some(fake) => fake.add_tap(netns, spec.name),
            // The tun device is created in the namespace of the thread that opens it.
            None => match spec.selinux_context.filter(|_| selinux_enabled()) {
                Some(context) => netns.run(|| create_labelled(spec, context))?,
                None => netns.run(|| create(spec))?,
            },
        }
    }
}

fn create(spec: &TapSpec) -> Result<()> {
    let op = |what: &str| format!("failed to create tap {:?}: {what}", spec.name);
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| NetError::io(op("open /dev/net/tun"), e))?;
    let mut request = IfReq {
        name: [0; 16],
        flags: IFF_TAP | IFF_NO_PI,
        _union_rest: [0; 22],
    };
    request.name[..spec.name.len()].copy_from_slice(spec.name.as_bytes());
    if spec.multi_queue {
        request.flags |= IFF_MULTI_QUEUE;
    }
    if spec.vnet_hdr {
        request.flags |= IFF_VNET_HDR;
    }
    let fd = tun.as_raw_fd();
    // SAFETY: `request` is an initialised `struct ifreq`-sized value that lives
    // across the call, and `fd` is the open tun device; TUNSETIFF only reads it.
    unsafe { tun_set_iff(fd, &request) }.map_err(|e| NetError::io(op("TUNSETIFF"), e))?;
    if let Some(owner) = spec.owner {
        // SAFETY: TUNSETOWNER takes the uid by value on the open tun fd.
        unsafe { tun_set_owner(fd, owner as nix::libc::c_int) }
            .map_err(|e| NetError::io(op("TUNSETOWNER"), e))?;
    }
    if let Some(group) = spec.group {
        // SAFETY: TUNSETGROUP takes the gid by value on the open tun fd.
        unsafe { tun_set_group(fd, group as nix::libc::c_int) }
            .map_err(|e| NetError::io(op("TUNSETGROUP"), e))?;
    }
    // SAFETY: TUNSETPERSIST takes a flag by value on the open tun fd.
    unsafe { tun_set_persist(fd, 1) }.map_err(|e| NetError::io(op("TUNSETPERSIST"), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_labelled_path_asks_ip_for_the_same_device() {
        let spec = TapSpec {
            name: "tap0",
            multi_queue: true,
            vnet_hdr: true,
            owner: Some(107),
            group: Some(108),
            selinux_context: Some("system_u:system_r:container_t:s0"),
        };
        assert_eq!(
            tuntap_args(&spec).join(" "),
            "tuntap add dev tap0 mode tap multi_queue vnet_hdr user 107 group 108"
        );
    }
}
