//! macvlan: a macvlan child of a host NIC (the "master"), in the container (upstream
//! `plugins/main/macvlan`). With IPAM it is configured at L3; without, it is only
//! brought up (L2). Created directly in the container (see `pkg::child`).

use cni_net::{KindData, KindSpec, LinkKind, MacvlanMode, Netlink};
use cni_skel::{Command, Context, Plugin, Request};
use cni_types::Error;
use cni_types::result::Result as CniResult;
use serde::Deserialize;

use crate::pkg::child::{
    Child, add_child, check_child, del_ipam_then_link, find_master, ipam_only, mtu_within_master,
};
use crate::pkg::container_mac_or;

/// macvlan's own keys (`ipam` and `dns` are in `PluginConf`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Conf {
    /// The lower device; the default route's interface when empty.
    master: String,
    mode: String,
    mtu: i64,
    mac: String,
    /// The master lives in the container's namespace (upstream `linkInContainer`).
    #[serde(rename = "linkInContainer")]
    link_in_container: bool,
    bcqueuelen: Option<u32>,
}

/// The config as ADD and CHECK use it: mode parsed, MTU checked against the master's.
struct Setup {
    mode: MacvlanMode,
    master: cni_net::Link,
    mtu: u32,
}

/// Upstream `modeFromString`; empty is `bridge`.
fn mode_from(text: &str) -> Result<MacvlanMode, Error> {
    Ok(match text {
        "" | "bridge" => MacvlanMode::Bridge,
        "private" => MacvlanMode::Private,
        "vepa" => MacvlanMode::Vepa,
        "passthru" => MacvlanMode::Passthru,
        "source" => MacvlanMode::Source,
        other => return Err(Error::internal(format!("unknown macvlan mode: {other:?}"))),
    })
}

impl Setup {
    /// `master_netlink` is the host's socket, or the container's with
    /// `linkInContainer`.
    fn load(conf: &Conf, master_netlink: &mut Netlink) -> Result<Setup, Error> {
        let mode = mode_from(&conf.mode)?;
        let master = find_master(master_netlink, &conf.master)?;
        let mtu = mtu_within_master(conf.mtu, &master)?;
        Ok(Setup { mode, master, mtu })
    }
}

pub struct Macvlan;

impl Plugin for Macvlan {
    type Conf = Conf;

    fn name(&self) -> &str {
        "macvlan"
    }

    fn add(&self, args: &Request<Conf>, cx: &Context) -> Result<CniResult, Error> {
        let conf = &args.plugin;
        let mac = container_mac_or(args, &conf.mac)?;
        let result = add_child(
            cx,
            args,
            conf.link_in_container,
            true,
            None,
            |master_side| {
                let setup = Setup::load(conf, master_side)?;
                Ok(Child {
                    kind: KindSpec::Macvlan {
                        mode: setup.mode,
                        bcqueuelen: conf.bcqueuelen,
                    },
                    parent: setup.master.index,
                    mtu: setup.mtu,
                    mac,
                })
            },
        )?;
        Ok(CniResult::V100(result))
    }

    fn del(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        del_ipam_then_link(args, cx)
    }

    fn check(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        let conf = &args.plugin;
        check_child(
            args,
            cx,
            LinkKind::Macvlan,
            conf.link_in_container,
            |link, master_side| {
                let setup = Setup::load(conf, master_side)?;
                if link.data != KindData::Macvlan(setup.mode) {
                    return Err(Error::internal(format!(
                        "Container macvlan mode {:?} does not match expected value: {:?}",
                        link.data, setup.mode
                    )));
                }
                Ok(())
            },
        )
    }

    fn gc(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        ipam_only(args, cx, Command::Gc)
    }

    /// IPAM's STATUS alone; the master is not looked at (as upstream).
    fn status(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        ipam_only(args, cx, Command::Status)
    }
}

#[cfg(test)]
mod tests {
    //! macvlan against the fake kernel: every netlink step failing in turn, and a
    //! kernel without the macvlan module.

    use cni_net::rtnl::fake::ENOSPC;
    use cni_net::{FakeKernel, LinkKind};

    use super::Macvlan;
    use crate::pkg::testing::{FakeIpam, run};

    const CONF: &str = r#"{"cniVersion":"1.1.0","name":"mv","type":"macvlan",
        "master":"eth9","mode":"vepa","ipam":{"type":"fake-ipam"}}"#;

    fn kernel() -> FakeKernel {
        crate::pkg::testing::kernel_with_master()
    }

    #[test]
    fn add_makes_a_macvlan_of_the_master_in_the_container() {
        let fake = kernel();
        let ipam = FakeIpam::default();
        let (code, out) = run(&Macvlan, &fake.kernel(), &ipam, "ADD", "/fake/ctr", CONF);
        assert_eq!(code, 0, "{out}");
        let ctr = fake.kernel().open_netns("/fake/ctr").expect("netns");
        let eth0 = fake.link(&ctr, "eth0").expect("eth0");
        let master = fake.link(&fake.host(), "eth9").expect("master");
        assert_eq!(eth0.kind, LinkKind::Macvlan);
        assert_eq!(eth0.parent, Some(master.index));
        assert_eq!(
            eth0.data,
            cni_net::KindData::Macvlan(cni_net::MacvlanMode::Vepa)
        );
        assert!(eth0.up);
        assert_eq!(
            fake.sysctl(&ctr, "net/ipv4/conf/eth0/arp_notify")
                .as_deref(),
            Some("1")
        );
        let (code, out) = run(&Macvlan, &fake.kernel(), &ipam, "DEL", "/fake/ctr", CONF);
        assert_eq!(code, 0, "{out}");
        assert!(fake.link(&ctr, "eth0").is_none());
        assert!(ipam.held.lock().unwrap().is_empty());
    }

    #[test]
    fn every_failed_netlink_step_of_an_add_leaves_nothing() {
        let fake = kernel();
        let start = fake.requests();
        let ipam = FakeIpam::default();
        assert_eq!(
            run(&Macvlan, &fake.kernel(), &ipam, "ADD", "/fake/ctr", CONF).0,
            0
        );
        let steps = fake.requests() - start;
        assert!(steps >= 4, "lookup, create, lookup, address, up: {steps}");
        for step in 1..=steps {
            let fake = kernel();
            let before = fake.snapshot();
            let ipam = FakeIpam::default();
            fake.fail_request(step, ENOSPC);
            let (code, out) = run(&Macvlan, &fake.kernel(), &ipam, "ADD", "/fake/ctr", CONF);
            assert_eq!(code, 1, "step {step} failed, yet the ADD succeeded: {out}");
            assert_eq!(fake.snapshot(), before, "step {step} left state behind");
            assert!(ipam.held.lock().unwrap().is_empty(), "step {step}");
        }
    }

    #[test]
    fn a_kernel_without_macvlan_says_so_and_changes_nothing() {
        let fake = kernel();
        fake.without_kinds(&[LinkKind::Macvlan]);
        let before = fake.snapshot();
        let ipam = FakeIpam::default();
        let (code, out) = run(&Macvlan, &fake.kernel(), &ipam, "ADD", "/fake/ctr", CONF);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("failed to create macvlan"), "{out}");
        assert!(out.contains("macvlan"), "{out}");
        assert_eq!(fake.snapshot(), before);
    }
}
