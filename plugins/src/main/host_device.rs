//! host-device: moves an existing host interface into the container, and back on
//! DEL (upstream `plugins/main/host-device`; SR-IOV VFs, DPDK, spare NICs).
//!
//! The move and the rename are one netlink request (`IFLA_NET_NS_FD` with
//! `IFLA_IFNAME`: the kernel names it in the target namespace, so neither name can
//! clash on the way), and the original name is kept in the link's alias (as
//! upstream, so either implementation's DEL can move it back). DEL finds the device
//! also when it was renamed inside the container (plugins#773): by the configured
//! `device` name in the alias, or by `hwaddr`.

use std::path::{Path, PathBuf};

use cni_net::{Kernel, Link, LinkChange, NetNs, Netlink};
use cni_skel::{Command, Context, Plugin, Request};
use cni_types::result::{Result as CniResult, v100};
use cni_types::{Context as _, Error};
use serde::Deserialize;

use crate::pkg::child::{add_ipam_addresses, ipam_only, single_interface_result};
use crate::pkg::{Rollback, check_addresses_and_routes, check_container_link, ipam_verb};

/// host-device's own keys (`ipam` and `dns` are in `PluginConf`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Conf {
    device: String,
    hwaddr: String,
    #[serde(rename = "kernelpath")]
    kernel_path: String,
    #[serde(rename = "pciBusID")]
    pci_bus_id: String,
    /// Where the device's host MTU and state are kept between ADD and DEL (ours).
    #[serde(rename = "dataDir")]
    data_dir: String,
}

/// The default of `dataDir`.
const DATA_DIR: &str = "/var/lib/cni/host-device";

/// What the device was on the host, restored by DEL: its name (also in the alias,
/// where upstream keeps it), MTU and whether it was up. Kept in
/// `<dataDir>/<network>/<containerID>/<ifname>` because the alias can only hold the
/// name (Go's DEL reads it as one).
#[derive(Debug, serde::Serialize, Deserialize, PartialEq)]
struct Saved {
    name: String,
    mtu: u32,
    up: bool,
}

/// `<dataDir>/<network>`.
fn network_dir(args: &Request<Conf>) -> PathBuf {
    let dir = match args.plugin.data_dir.as_str() {
        "" => DATA_DIR,
        dir => dir,
    };
    Path::new(dir).join(args.network())
}

fn saved_path(args: &Request<Conf>) -> PathBuf {
    network_dir(args)
        .join(&args.container_id)
        .join(&args.ifname)
}

/// Writes `saved` whole or not at all.
fn save(path: &Path, saved: &Saved) -> Result<(), Error> {
    let text = serde_json::to_vec(saved).map_err(|e| Error::internal(e.to_string()))?;
    crate::pkg::save_state(path, &text)
}

fn load(path: &Path) -> Option<Saved> {
    let text = crate::pkg::files::read_regular(path, 4096, false).ok()?;
    serde_json::from_str(&text).ok()
}

/// Removes the saved state and the directories it leaves empty.
fn forget(path: &Path) {
    let _ = std::fs::remove_file(path);
    if let Some(container_dir) = path.parent() {
        let _ = std::fs::remove_dir(container_dir);
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RuntimeDevice {
    #[serde(rename = "deviceID")]
    device_id: String,
}

/// Drivers that take a PCI device away from the kernel's network stack (DPDK):
/// there is no netdev to move.
const DPDK_DRIVERS: [&str; 3] = ["vfio-pci", "uio_pci_generic", "igb_uio"];

/// Where the device is, as the config says it.
#[derive(Debug, PartialEq)]
enum Source {
    Name(String),
    Mac([u8; 6]),
    /// A netdev found under a sysfs directory; `pci` is the PCI address when known.
    Sysfs {
        net_dir: PathBuf,
        pci: String,
    },
    /// A PCI device bound to a DPDK driver.
    Dpdk {
        pci: String,
    },
}

/// Reads the config into a [`Source`], looking at sysfs under `sys` (`/sys`).
fn source(args: &Request<Conf>, sys: &Path) -> Result<Source, Error> {
    let conf = &args.plugin;
    let device_id = args
        .conf
        .runtime_config
        .as_ref()
        .and_then(|v| cni_types::gojson::from_value::<RuntimeDevice>(v.clone().into()).ok())
        .map(|r| r.device_id)
        .unwrap_or_default();
    if !conf.device.is_empty() {
        return Ok(Source::Name(conf.device.clone()));
    }
    if !conf.hwaddr.is_empty() {
        return cni_net::parse_mac(&conf.hwaddr)
            .map(Source::Mac)
            .map_err(|e| {
                Error::internal(format!(
                    "failed to parse MAC address {:?}: {e}",
                    conf.hwaddr
                ))
            });
    }
    if !conf.kernel_path.is_empty() {
        if !conf.kernel_path.starts_with("/sys/devices/") {
            return Err(Error::internal(format!(
                "kernel device path {:?} must start with /sys/devices/",
                conf.kernel_path
            )));
        }
        return Ok(Source::Sysfs {
            net_dir: Path::new(&conf.kernel_path).join("net"),
            pci: String::new(),
        });
    }
    let pci = if !conf.pci_bus_id.is_empty() {
        conf.pci_bus_id.clone()
    } else if !device_id.is_empty() {
        if sys.join("bus/pci/devices").join(&device_id).exists() {
            device_id
        } else if sys.join("bus/auxiliary/devices").join(&device_id).exists() {
            return Ok(Source::Sysfs {
                net_dir: sys
                    .join("bus/auxiliary/devices")
                    .join(&device_id)
                    .join("net"),
                pci: String::new(),
            });
        } else {
            return Err(Error::internal(format!(
                "runtime config DeviceID {device_id} not found or unsupported"
            )));
        }
    } else {
        return Err(Error::internal(
            "specify either \"device\", \"hwaddr\", \"kernelpath\" or \"pciBusID\"",
        ));
    };
    if pci.contains('/') || pci.starts_with('.') {
        return Err(Error::internal(format!("invalid PCI address {pci:?}")));
    }
    let device = sys.join("bus/pci/devices").join(&pci);
    let driver = std::fs::read_link(device.join("driver")).ok();
    let driver = driver
        .as_deref()
        .and_then(Path::file_name)
        .map(|d| d.to_string_lossy().into_owned());
    if driver.is_some_and(|d| DPDK_DRIVERS.contains(&d.as_str())) {
        return Ok(Source::Dpdk { pci });
    }
    // A virtio device has its netdev one level down.
    let virtio = std::fs::read_dir(&device).ok().and_then(|entries| {
        entries.flatten().map(|e| e.path()).find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("virtio"))
        })
    });
    let net_dir = match virtio {
        Some(v) if !device.join("net").exists() => v.join("net"),
        _ => device.join("net"),
    };
    Ok(Source::Sysfs { net_dir, pci })
}

/// The first entry of a sysfs `net` directory: the device's interface name.
fn netdev_in(net_dir: &Path) -> Result<String, Error> {
    std::fs::read_dir(net_dir)
        .ok()
        .and_then(|mut entries| entries.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .ok_or_else(|| {
            Error::internal(format!(
                "failed to find a network device in {}",
                net_dir.display()
            ))
        })
}

/// The host link the source names.
fn find_on_host(host: &mut Netlink, source: &Source) -> Result<Link, Error> {
    let name = match source {
        Source::Name(name) => name.clone(),
        Source::Mac(mac) => {
            let mac = cni_net::format_mac(mac);
            return host
                .links()?
                .into_iter()
                .find(|l| l.mac.eq_ignore_ascii_case(&mac))
                .ok_or_else(|| {
                    Error::internal(format!("failed to find physical interface with MAC {mac}"))
                });
        }
        Source::Sysfs { net_dir, .. } => netdev_in(net_dir)?,
        Source::Dpdk { pci } => {
            return Err(Error::internal(format!(
                "PCI device {pci} is bound to a DPDK driver: it has no network interface"
            )));
        }
    };
    host.link_by_name(&name)?.ok_or_else(|| {
        Error::internal(format!(
            "failed to find host device: Link not found: {name:?}"
        ))
    })
}

/// Moves link `index` of `from` into `to` as `name` with `alias`, in one request.
fn move_link(
    from: &mut Netlink,
    index: u32,
    to: &NetNs,
    name: &str,
    alias: &str,
) -> Result<(), Error> {
    Ok(from.change_link(
        index,
        &LinkChange {
            netns: Some(to),
            name: Some(name),
            alias: Some(alias),
            ..Default::default()
        },
    )?)
}

pub struct HostDevice;

impl Plugin for HostDevice {
    type Conf = Conf;

    fn name(&self) -> &str {
        "host-device"
    }

    fn add(&self, args: &Request<Conf>, cx: &Context) -> Result<CniResult, Error> {
        let kernel = cx.kernel;
        let source = source(args, Path::new("/sys"))?;
        let netns = kernel
            .open_netns(&args.netns)
            .context(format!("failed to open netns {:?}", args.netns))?;
        let mut rollback = Rollback::default();
        if let Source::Dpdk { pci } = &source {
            // No netdev: the result names the interface; IPAM may still run.
            let mut result = v100::Result {
                cni_version: cni_types::version::CURRENT.into(),
                interfaces: vec![v100::Interface {
                    name: args.ifname.clone(),
                    sandbox: args.netns.clone(),
                    pci_id: pci.clone(),
                    ..Default::default()
                }],
                ..Default::default()
            };
            if let Some(ipam_type) = args.ipam_type() {
                let ipam = crate::pkg::ipam_add(cx, ipam_type, args)?;
                result.ips = ipam.ips;
                result.routes = ipam.routes;
                for ip in &mut result.ips {
                    ip.interface = Some(0);
                }
            }
            result.dns = args.conf.dns.clone();
            return Ok(CniResult::V100(result));
        }
        let mut host = kernel.host()?;
        let device = find_on_host(&mut host, &source)?;
        let saved_at = saved_path(args);
        save(
            &saved_at,
            &Saved {
                name: device.name.clone(),
                mtu: device.mtu,
                up: device.up,
            },
        )?;
        rollback.push({
            let saved_at = saved_at.clone();
            move || forget(&saved_at)
        });
        // Opened before the move: once the device is in the container, its way back
        // must not depend on anything that can still fail.
        let host_ns = kernel.own_netns()?;
        move_link(&mut host, device.index, &netns, &args.ifname, &device.name)
            .context(format!("failed to move {:?} to the container", device.name))?;
        rollback.push({
            let (host_ns, original) = (host_ns, device.name.clone());
            let netns = &netns;
            move || {
                let _ = move_back(kernel, netns, &args.ifname, &host_ns, &original, device.up);
            }
        });
        let mut container = kernel.netlink(&netns)?;
        let link = container.require_link(&args.ifname)?;
        container.set_link_up(link.index, true)?;
        let mut result = match args.ipam_type() {
            Some(ipam_type) => add_ipam_addresses(
                cx,
                args,
                ipam_type,
                &netns,
                &mut container,
                &link,
                false,
                &mut rollback,
            )?,
            None => single_interface_result(&link, args),
        };
        if let Source::Sysfs { pci, .. } = &source {
            result.interfaces[0].pci_id = pci.clone();
        }
        result.dns = args.conf.dns.clone();
        rollback.done();
        Ok(CniResult::V100(result))
    }

    fn del(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        let conf = &args.plugin;
        if args.netns.is_empty() {
            return Ok(());
        }
        if let Some(ipam_type) = args.ipam_type() {
            ipam_verb(cx, ipam_type, Command::Del, args)?;
        }
        let netns = match cx.kernel.open_netns(&args.netns) {
            Ok(netns) => netns,
            // A destroyed namespace hands physical devices back to the host itself.
            Err(e) if e.already_gone() => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut container = cx.kernel.netlink(&netns)?;
        let links = container.links()?;
        let mac = cni_net::parse_mac(&conf.hwaddr)
            .ok()
            .map(|m| cni_net::format_mac(&m));
        let found = links
            .iter()
            .find(|l| l.name == args.ifname)
            .or_else(|| {
                links
                    .iter()
                    .find(|l| !conf.device.is_empty() && l.alias == conf.device)
            })
            .or_else(|| {
                links.iter().find(|l| {
                    mac.as_deref()
                        .is_some_and(|m| l.mac.eq_ignore_ascii_case(m))
                })
            });
        let Some(link) = found else {
            // Never added, or already moved back.
            return Ok(());
        };
        let original = match (link.alias.as_str(), conf.device.as_str()) {
            ("", "") => {
                return Err(Error::internal(format!(
                    "failed to move {:?} back: alias is not set",
                    link.name
                )));
            }
            ("", device) => device.to_string(),
            (alias, _) => alias.to_string(),
        };
        let host_ns = cx.kernel.own_netns()?;
        move_link(&mut container, link.index, &host_ns, &original, "").context(format!(
            "failed to move {:?} back to the host as {original:?}",
            link.name
        ))?;
        // Its MTU and state as they were before ADD, when ADD was ours (Go's leaves
        // it down, and so do we without a record).
        let saved_at = saved_path(args);
        if let Some(saved) = load(&saved_at).filter(|s| s.name == original) {
            let mut host = cx.kernel.host()?;
            let back = host.require_link(&original)?;
            host.change_link(
                back.index,
                &LinkChange {
                    mtu: (saved.mtu != 0 && saved.mtu != back.mtu).then_some(saved.mtu),
                    up: saved.up.then_some(true),
                    ..Default::default()
                },
            )
            .context(format!("failed to restore {original:?}"))?;
        }
        forget(&saved_at);
        Ok(())
    }

    fn check(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        ipam_only(args, cx, Command::Check)?;
        let prev = args.require_prev_result()?;
        if matches!(source(args, Path::new("/sys"))?, Source::Dpdk { .. }) {
            return Ok(());
        }
        let (mut container, link) = check_container_link(cx.kernel, args, &prev, None)?;
        check_addresses_and_routes(&mut container, &link, &prev)
    }

    /// IPAM's GC, and the saved states of attachments that are not valid any more.
    fn gc(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        let valid = args.conf.valid_attachments.clone().unwrap_or_default();
        if let Ok(entries) = std::fs::read_dir(network_dir(args)) {
            for container in entries.flatten() {
                let id = container.file_name().to_string_lossy().into_owned();
                for file in std::fs::read_dir(container.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let ifname = file.file_name().to_string_lossy().into_owned();
                    if !valid
                        .iter()
                        .any(|a| a.container_id == id && a.ifname == ifname)
                    {
                        forget(&file.path());
                    }
                }
            }
        }
        ipam_only(args, cx, Command::Gc)
    }

    fn status(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        ipam_only(args, cx, Command::Status)
    }
}

/// Rollback of ADD: the device back in the host under its name, up if it was.
fn move_back(
    kernel: &Kernel,
    netns: &NetNs,
    ifname: &str,
    host_ns: &NetNs,
    original: &str,
    was_up: bool,
) -> Result<(), Error> {
    let mut container = kernel.netlink(netns)?;
    let link = container.require_link(ifname)?;
    move_link(&mut container, link.index, host_ns, original, "")?;
    if was_up {
        let mut host = kernel.host()?;
        let link = host.require_link(original)?;
        host.set_link_up(link.index, true)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The sysfs lookups against a directory tree shaped like `/sys`.

    use std::path::Path;

    use cni_skel::Request;

    use super::{Conf, Source, source};

    fn request(conf: &str) -> Request<Conf> {
        let env = cni_skel::CmdArgs {
            stdin: conf.as_bytes().to_vec(),
            ..Default::default()
        };
        Request {
            conf: env.config().expect("common keys"),
            plugin: env.config().expect("own keys"),
            env,
        }
    }

    fn mkdir(path: &Path) {
        std::fs::create_dir_all(path).unwrap();
    }

    #[test]
    fn pci_auxiliary_virtio_and_dpdk_devices_are_found_in_sysfs() {
        let sys = tempfile::tempdir().unwrap();
        let pci = sys.path().join("bus/pci/devices");
        mkdir(&pci.join("0000:01:00.0/net/ens1f0"));
        mkdir(&pci.join("0000:02:00.0/virtio3/net/eth7"));
        mkdir(&pci.join("0000:03:00.0"));
        mkdir(&sys.path().join("bus/pci/drivers/vfio-pci"));
        std::os::unix::fs::symlink(
            sys.path().join("bus/pci/drivers/vfio-pci"),
            pci.join("0000:03:00.0/driver"),
        )
        .unwrap();
        mkdir(
            &sys.path()
                .join("bus/auxiliary/devices/mlx5_core.sf.4/net/en4"),
        );

        let conf = |extra: &str| {
            format!(r#"{{"cniVersion":"1.0.0","name":"hd","type":"host-device"{extra}}}"#)
        };
        let found = |extra: &str| source(&request(&conf(extra)), sys.path());
        assert_eq!(
            found(r#","pciBusID":"0000:01:00.0""#).unwrap(),
            Source::Sysfs {
                net_dir: pci.join("0000:01:00.0/net"),
                pci: "0000:01:00.0".into()
            }
        );
        assert_eq!(
            found(r#","pciBusID":"0000:02:00.0""#).unwrap(),
            Source::Sysfs {
                net_dir: pci.join("0000:02:00.0/virtio3/net"),
                pci: "0000:02:00.0".into()
            }
        );
        assert_eq!(
            found(r#","runtimeConfig":{"deviceID":"0000:03:00.0"}"#).unwrap(),
            Source::Dpdk {
                pci: "0000:03:00.0".into()
            }
        );
        assert_eq!(
            found(r#","runtimeConfig":{"deviceID":"mlx5_core.sf.4"}"#).unwrap(),
            Source::Sysfs {
                net_dir: sys.path().join("bus/auxiliary/devices/mlx5_core.sf.4/net"),
                pci: String::new()
            }
        );
        assert_eq!(
            super::netdev_in(&pci.join("0000:02:00.0/virtio3/net")).unwrap(),
            "eth7"
        );
        let error = found(r#","runtimeConfig":{"deviceID":"nope"}"#).unwrap_err();
        assert!(
            error.msg.contains("runtime config DeviceID nope not found"),
            "{error:?}"
        );
        let error = found(r#","pciBusID":"../../etc""#).unwrap_err();
        assert!(error.msg.contains("invalid PCI address"), "{error:?}");
    }
}
