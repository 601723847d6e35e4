//! ipvlan: an ipvlan child of a host NIC, in the container (upstream
//! `plugins/main/ipvlan`). It shares the master's MAC. Addresses come from IPAM, or
//! when chained without IPAM from prevResult; with neither the link is only brought
//! up (L2). Created directly in the container (see `pkg::child`).

use cni_net::{IpvlanMode, KindData, KindSpec, LinkKind, Netlink};
use cni_skel::{Command, Context, Plugin, Request};
use cni_types::Error;
use cni_types::result::Result as CniResult;
use serde::Deserialize;

use crate::pkg::child::{
    Child, add_child, check_child, del_ipam_then_link, find_master, ipam_only,
};

/// ipvlan's own keys (`ipam` and `dns` are in `PluginConf`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Conf {
    /// The lower device; when empty, prevResult's one interface if chained, else the
    /// default route's interface.
    master: String,
    mode: String,
    mtu: i64,
    #[serde(rename = "linkInContainer")]
    link_in_container: bool,
}

/// Upstream `modeFromString`; empty is `l2`.
fn mode_from(text: &str) -> Result<IpvlanMode, Error> {
    Ok(match text {
        "" | "l2" => IpvlanMode::L2,
        "l3" => IpvlanMode::L3,
        "l3s" => IpvlanMode::L3s,
        other => return Err(Error::internal(format!("unknown ipvlan mode: {other:?}"))),
    })
}

/// The master's name: the config's, else (chained) prevResult's single named interface.
fn master_name(args: &Request<Conf>) -> Result<String, Error> {
    let conf = &args.plugin;
    if !conf.master.is_empty() {
        return Ok(conf.master.clone());
    }
    let Some(prev) = args.prev_result()? else {
        return Ok(String::new());
    };
    match prev.interfaces.as_slice() {
        [only] if !only.name.is_empty() => Ok(only.name.clone()),
        _ => Err(Error::internal(
            "chained master failure. PrevResult lacks a single named interface",
        )),
    }
}

fn master_of(args: &Request<Conf>, netlink: &mut Netlink) -> Result<cni_net::Link, Error> {
    find_master(netlink, &master_name(args)?)
}

pub struct Ipvlan;

impl Plugin for Ipvlan {
    type Conf = Conf;

    fn name(&self) -> &str {
        "ipvlan"
    }

    fn add(&self, args: &Request<Conf>, cx: &Context) -> Result<CniResult, Error> {
        let conf = &args.plugin;
        let mode = mode_from(&conf.mode)?;
        let mtu = crate::pkg::mtu(conf.mtu)?;
        // Chained without IPAM, the previous plugin's addresses move to the ipvlan.
        let chained = args.prev_result()?;
        let result = add_child(
            cx,
            args,
            conf.link_in_container,
            true,
            chained,
            |master_side| {
                Ok(Child {
                    kind: KindSpec::Ipvlan { mode },
                    parent: master_of(args, master_side)?.index,
                    mtu,
                    mac: None,
                })
            },
        )?;
        Ok(CniResult::V100(result))
    }

    /// Unlike upstream, DEL does not look for the master: a master that is gone
    /// must not keep the attachment (and its address) from being removed.
    fn del(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        del_ipam_then_link(args, cx)
    }

    fn check(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        let conf = &args.plugin;
        let mode = mode_from(&conf.mode)?;
        check_child(
            args,
            cx,
            LinkKind::Ipvlan,
            conf.link_in_container,
            |link, master_side| {
                // The configured master must exist. (An empty master is not looked up:
                // in a CHECK, prevResult's one interface is this ipvlan, not its master.)
                if !conf.master.is_empty() {
                    find_master(master_side, &conf.master)?;
                }
                if link.data != KindData::Ipvlan(mode) {
                    return Err(Error::internal(format!(
                        "Container ipvlan mode {:?} does not match expected value: {mode:?}",
                        link.data
                    )));
                }
                Ok(())
            },
        )
    }

    fn gc(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        ipam_only(args, cx, Command::Gc)
    }

    fn status(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        ipam_only(args, cx, Command::Status)
    }
}

#[cfg(test)]
mod tests {
    //! ipvlan on the fake kernel (this machine's kernel has no ipvlan module).

    use cni_net::{IpvlanMode, KindData, LinkKind};

    use super::Ipvlan;
    use crate::pkg::testing::{FakeIpam, each_bad_conf_fails_cleanly, kernel_with_master, run};

    #[test]
    fn add_makes_an_ipvlan_in_the_configured_mode() {
        let fake = kernel_with_master();
        let ipam = FakeIpam::default();
        let conf = r#"{"cniVersion":"1.0.0","name":"iv","type":"ipvlan","master":"eth9",
            "mode":"l3s","mtu":1400,"ipam":{"type":"fake-ipam"}}"#;
        let (code, out) = run(&Ipvlan, &fake.kernel(), &ipam, "ADD", "/fake/ctr", conf);
        assert_eq!(code, 0, "{out}");
        let ctr = fake.kernel().open_netns("/fake/ctr").unwrap();
        let eth0 = fake.link(&ctr, "eth0").expect("eth0");
        assert_eq!(eth0.kind, LinkKind::Ipvlan);
        assert_eq!(eth0.data, KindData::Ipvlan(IpvlanMode::L3s));
        assert_eq!(eth0.mtu, 1400);
        assert!(out.contains("10.22.0.5/16"), "{out}");
        let (code, out) = run(&Ipvlan, &fake.kernel(), &ipam, "DEL", "/fake/ctr", conf);
        assert_eq!(code, 0, "{out}");
        assert!(fake.link(&ctr, "eth0").is_none());
        assert!(ipam.held.lock().unwrap().is_empty());
    }

    #[test]
    fn chained_without_ipam_it_takes_master_and_addresses_from_prev_result() {
        let fake = kernel_with_master();
        let ipam = FakeIpam::default();
        let conf = r#"{"cniVersion":"1.0.0","name":"iv","type":"ipvlan",
            "prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth9"}],
                "ips":[{"address":"10.9.0.7/24","interface":0}]}}"#;
        let (code, out) = run(&Ipvlan, &fake.kernel(), &ipam, "ADD", "/fake/ctr", conf);
        assert_eq!(code, 0, "{out}");
        let ctr = fake.kernel().open_netns("/fake/ctr").unwrap();
        let master = fake.link(&fake.host(), "eth9").unwrap();
        assert_eq!(fake.link(&ctr, "eth0").unwrap().parent, Some(master.index));
        let address: cni_types::net::IpNet = "10.9.0.7/24".parse().unwrap();
        assert!(fake.addresses(&ctr).iter().any(|a| a.address == address));
        assert!(ipam.held.lock().unwrap().is_empty(), "no IPAM was asked");

        let two = r#"{"cniVersion":"1.0.0","name":"iv","type":"ipvlan",
            "prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"a"},{"name":"b"}]}}"#;
        each_bad_conf_fails_cleanly(
            &Ipvlan,
            &[(two, "PrevResult lacks a single named interface")],
        );
    }

    #[test]
    fn bad_input_fails_cleanly() {
        each_bad_conf_fails_cleanly(
            &Ipvlan,
            &[
                (
                    r#"{"cniVersion":"1.0.0","name":"iv","type":"ipvlan","master":"eth9","mode":"foo"}"#,
                    "unknown ipvlan mode: \\\"foo\\\"",
                ),
                (
                    r#"{"cniVersion":"1.0.0","name":"iv","type":"ipvlan","master":"nope0"}"#,
                    "failed to lookup master \\\"nope0\\\"",
                ),
                (
                    r#"{"cniVersion":"1.0.0","name":"iv","type":"ipvlan"}"#,
                    "no default route interface found",
                ),
                (
                    r#"{"cniVersion":"1.0.0","name":"iv","type":"ipvlan","master":"eth9","mtu":-5}"#,
                    "invalid MTU -5",
                ),
            ],
        );
    }
}
