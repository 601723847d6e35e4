//! Unit-test support for plugins on the fake kernel: an in-memory IPAM delegate and
//! one skel call, as a runtime would make it.

use std::sync::Mutex;

use cni_net::Kernel;
use cni_skel::{CmdArgs, Command, Context, Delegate, Dispatch};
use cni_types::Error;
use cni_types::result::Result as CniResult;

/// An IPAM delegate that hands out one address and records who holds it.
#[derive(Default)]
pub struct FakeIpam {
    pub held: Mutex<Vec<String>>,
}

impl Delegate for FakeIpam {
    fn add(&self, _plugin_type: &str, args: &CmdArgs) -> Result<CniResult, Error> {
        self.held.lock().unwrap().push(args.container_id.clone());
        CniResult::from_slice(
            br#"{"cniVersion":"1.0.0","ips":[{"address":"10.22.0.5/16","gateway":"10.22.0.1"}],
                 "routes":[{"dst":"0.0.0.0/0"}]}"#,
        )
        .map_err(|e| Error::internal(e.to_string()))
    }

    fn verb(&self, _plugin_type: &str, command: Command, args: &CmdArgs) -> Result<(), Error> {
        if command == Command::Del {
            self.held
                .lock()
                .unwrap()
                .retain(|id| *id != args.container_id);
        }
        Ok(())
    }
}

/// Runs `plugin`'s `command` for `ctr-1`/`eth0` in `netns` with `conf` on stdin, as
/// the skel would; returns (exit code, stdout).
pub fn run(
    plugin: &dyn Dispatch,
    kernel: &Kernel,
    ipam: &FakeIpam,
    command: &str,
    netns: &str,
    conf: &str,
) -> (i32, String) {
    run_for(plugin, kernel, ipam, command, netns, "eth0", conf)
}

/// [`run`] for the interface `ifname`.
pub fn run_for(
    plugin: &dyn Dispatch,
    kernel: &Kernel,
    ipam: &FakeIpam,
    command: &str,
    netns: &str,
    ifname: &str,
    conf: &str,
) -> (i32, String) {
    let env = |name: &str| {
        Some(match name {
            "CNI_COMMAND" => command.to_string(),
            "CNI_CONTAINERID" => "ctr-1".into(),
            "CNI_NETNS" => netns.to_string(),
            "CNI_IFNAME" => ifname.to_string(),
            "CNI_PATH" => "/nonexistent".into(),
            _ => return None,
        })
    };
    let cx = Context {
        kernel,
        delegate: ipam,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = cni_skel::run(plugin, &cx, &env, &mut conf.as_bytes(), &mut out, &mut err);
    (code, String::from_utf8_lossy(&out).into_owned())
}

/// A fake kernel with a container namespace `/fake/ctr` and, in its host
/// namespace, a veth end `eth9` to serve as a master.
pub fn kernel_with_master() -> cni_net::FakeKernel {
    let fake = cni_net::FakeKernel::new();
    fake.add_netns("/fake/ctr");
    add_veth(&fake, &fake.host(), "eth9", "eth9p");
    fake
}

/// A veth pair `name`/`peer` in `netns` of a fake kernel; returns `name`'s link.
pub fn add_veth(
    fake: &cni_net::FakeKernel,
    netns: &cni_net::NetNs,
    name: &str,
    peer: &str,
) -> cni_net::Link {
    use cni_net::{KindSpec, LinkSpec};
    let kind = KindSpec::Veth {
        peer,
        peer_netns: None,
        peer_mac: None,
    };
    let mut netlink = fake.kernel().netlink(netns).expect("socket");
    netlink
        .create_link(&LinkSpec::new(name, kind))
        .expect("veth");
    netlink.require_link(name).expect("veth")
}

/// Each `(conf, message)`: ADD fails with a message containing `message`, and the
/// fake kernel and the IPAM delegate are left as they were.
pub fn each_bad_conf_fails_cleanly(plugin: &dyn Dispatch, cases: &[(&str, &str)]) {
    for (conf, message) in cases {
        let fake = kernel_with_master();
        let before = fake.snapshot();
        let ipam = FakeIpam::default();
        let (code, out) = run(plugin, &fake.kernel(), &ipam, "ADD", "/fake/ctr", conf);
        assert_eq!(code, 1, "{conf}: {out}");
        assert!(
            out.contains(message),
            "{conf}: {out} should say {message:?}"
        );
        assert_eq!(fake.snapshot(), before, "{conf} left state behind");
        assert!(
            ipam.held.lock().unwrap().is_empty(),
            "{conf} kept an address"
        );
    }
}
