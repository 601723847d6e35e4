//! vlan: an 802.1q sub-interface of a host NIC, in the container (upstream
//! `plugins/main/vlan`). Created directly in the container (see `pkg::child`), so the
//! dotted name upstream's sysctl helper trips over (`eth0.100`) never exists; sysctls
//! are written with slash paths anyway.

use cni_net::{KindData, KindSpec, LinkKind, Netlink};
use cni_skel::{Command, Context, Plugin, Request};
use cni_types::Error;
use cni_types::result::Result as CniResult;
use serde::Deserialize;

use crate::pkg::child::{
    Child, add_child, check_child, del_ipam_then_link, find_master, ipam_only, mtu_within_master,
};

/// vlan's own keys (`ipam` and `dns` are in `PluginConf`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Conf {
    master: String,
    #[serde(rename = "vlanId")]
    vlan_id: i64,
    mtu: i64,
    #[serde(rename = "linkInContainer")]
    link_in_container: bool,
}

/// The config checked as upstream's `loadConf` does, against the master.
struct Setup {
    master: cni_net::Link,
    id: u16,
    mtu: u32,
}

impl Setup {
    fn load(conf: &Conf, master_netlink: &mut Netlink) -> Result<Setup, Error> {
        if conf.master.is_empty() {
            return Err(Error::internal(
                "\"master\" field is required. It specifies the host interface name to create the VLAN for.",
            ));
        }
        let id = u16::try_from(conf.vlan_id)
            .ok()
            .filter(|id| *id <= 4094)
            .ok_or_else(|| {
                Error::internal(format!(
                    "invalid VLAN ID {} (must be between 0 and 4095 inclusive)",
                    conf.vlan_id
                ))
            })?;
        let master = find_master(master_netlink, &conf.master)?;
        let mtu = mtu_within_master(conf.mtu, &master)?;
        Ok(Setup { master, id, mtu })
    }
}

pub struct Vlan;

impl Plugin for Vlan {
    type Conf = Conf;

    fn name(&self) -> &str {
        "vlan"
    }

    fn add(&self, args: &Request<Conf>, cx: &Context) -> Result<CniResult, Error> {
        let conf = &args.plugin;
        // No gratuitous ARP sysctl, as upstream.
        let result = add_child(
            cx,
            args,
            conf.link_in_container,
            false,
            None,
            |master_side| {
                let setup = Setup::load(conf, master_side)?;
                Ok(Child {
                    kind: KindSpec::Vlan { id: setup.id },
                    parent: setup.master.index,
                    mtu: setup.mtu,
                    mac: None,
                })
            },
        )?;
        Ok(CniResult::V100(result))
    }

    /// Unlike upstream, DEL does not look up the master's MTU: a master that is gone
    /// must not make the DEL fail forever.
    fn del(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        del_ipam_then_link(args, cx)
    }

    fn check(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        let conf = &args.plugin;
        check_child(
            args,
            cx,
            LinkKind::Vlan,
            conf.link_in_container,
            |link, master_side| {
                let setup = Setup::load(conf, master_side)?;
                if link.data != KindData::Vlan(setup.id) {
                    return Err(Error::internal(format!(
                        "Error: Container VLAN ID {:?} does not match expected value: {}",
                        link.data, setup.id
                    )));
                }
                if setup.mtu != 0 && link.mtu != setup.mtu {
                    return Err(Error::internal(format!(
                        "Error: Container VLAN MTU {} does not match expected value: {}",
                        link.mtu, setup.mtu
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
    //! vlan on the fake kernel (this machine's kernel has no 8021q module).

    use cni_net::{KindData, LinkKind};

    use super::Vlan;
    use crate::pkg::testing::{FakeIpam, each_bad_conf_fails_cleanly, kernel_with_master, run};

    const CONF: &str = r#"{"cniVersion":"1.0.0","name":"vl","type":"vlan","master":"eth9",
        "vlanId":100,"mtu":1400,"ipam":{"type":"fake-ipam"}}"#;

    #[test]
    fn add_check_del() {
        let fake = kernel_with_master();
        let ipam = FakeIpam::default();
        let (code, out) = run(&Vlan, &fake.kernel(), &ipam, "ADD", "/fake/ctr", CONF);
        assert_eq!(code, 0, "{out}");
        let ctr = fake.kernel().open_netns("/fake/ctr").unwrap();
        let eth0 = fake.link(&ctr, "eth0").expect("eth0");
        assert_eq!(eth0.kind, LinkKind::Vlan);
        assert_eq!(eth0.data, KindData::Vlan(100));
        assert_eq!(eth0.mtu, 1400);
        // No name with a dot ever exists, and no gratuitous ARP sysctl (as upstream).
        assert!(fake.sysctl(&ctr, "net/ipv4/conf/eth0/arp_notify").is_none());

        // CHECK notices another VLAN ID.
        let with_prev = |id: u32| {
            let mut conf: serde_json::Value = serde_json::from_str(CONF).unwrap();
            conf["vlanId"] = id.into();
            conf["prevResult"] = serde_json::from_str(&out).unwrap();
            conf.to_string()
        };
        let check = |conf: &str| run(&Vlan, &fake.kernel(), &ipam, "CHECK", "/fake/ctr", conf);
        assert_eq!(check(&with_prev(100)).0, 0, "{}", check(&with_prev(100)).1);
        let (code, msg) = check(&with_prev(101));
        assert_eq!(code, 1);
        assert!(msg.contains("VLAN ID"), "{msg}");

        let (code, out) = run(&Vlan, &fake.kernel(), &ipam, "DEL", "/fake/ctr", CONF);
        assert_eq!(code, 0, "{out}");
        assert!(fake.link(&ctr, "eth0").is_none());
        assert!(ipam.held.lock().unwrap().is_empty());
    }

    #[test]
    fn bad_input_fails_cleanly() {
        let conf = |extra: &str| {
            format!(
                r#"{{"cniVersion":"1.0.0","name":"vl","type":"vlan","ipam":{{"type":"fake-ipam"}}{extra}}}"#
            )
        };
        let cases = [
            (conf(r#","vlanId":5"#), "\\\"master\\\" field is required"),
            (
                conf(r#","master":"eth9","vlanId":5000"#),
                "invalid VLAN ID 5000",
            ),
            (
                conf(r#","master":"eth9","vlanId":-1"#),
                "invalid VLAN ID -1",
            ),
            (
                conf(r#","master":"nope0","vlanId":5"#),
                "failed to lookup master",
            ),
            (
                conf(r#","master":"eth9","vlanId":5,"mtu":9000"#),
                "invalid MTU 9000, must be [0, master MTU(1500)]",
            ),
        ];
        let cases: Vec<(&str, &str)> = cases.iter().map(|(c, m)| (c.as_str(), *m)).collect();
        each_bad_conf_fails_cleanly(&Vlan, &cases);
    }
}
