//! dummy: a dummy netdev in the container with IPAM's addresses (upstream
//! `plugins/main/dummy`), e.g. a stable address for a service inside the pod.

use cni_net::{KindSpec, LinkKind, LinkSpec};
use cni_skel::{Command, Context, Plugin, Request};
use cni_types::result::Result as CniResult;
use cni_types::{Context as _, Error};

use crate::pkg::Rollback;
use crate::pkg::child::{
    add_ipam_addresses, check_child, create_in_container, del_ipam_then_link, ipam_only,
};

/// dummy has no keys of its own; `ipam` is required.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Conf {}

fn required_ipam<C>(args: &Request<C>) -> Result<&str, Error> {
    args.ipam_type()
        .ok_or_else(|| Error::internal("dummy interface requires an IPAM configuration"))
}

pub struct Dummy;

impl Plugin for Dummy {
    type Conf = Conf;

    fn name(&self) -> &str {
        "dummy"
    }

    fn add(&self, args: &Request<Conf>, cx: &Context) -> Result<CniResult, Error> {
        let ipam_type = required_ipam(args)?;
        let kernel = cx.kernel;
        let netns = kernel
            .open_netns(&args.netns)
            .context(format!("failed to open netns {:?}", args.netns))?;
        let mut container = kernel.netlink(&netns)?;
        let spec = LinkSpec::new(&args.ifname, KindSpec::Dummy);
        let mut rollback = Rollback::default();
        let link = create_in_container(kernel, &netns, None, &mut container, &spec, &mut rollback)?;
        // The result keeps IPAM's DNS (unlike macvlan), as upstream.
        let result = add_ipam_addresses(
            cx,
            args,
            ipam_type,
            &netns,
            &mut container,
            &link,
            false,
            &mut rollback,
        )?;
        rollback.done();
        Ok(CniResult::V100(result))
    }

    fn del(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        del_ipam_then_link(args, cx)
    }

    fn check(&self, args: &Request<Conf>, cx: &Context) -> Result<(), Error> {
        required_ipam(args)?;
        check_child(args, cx, LinkKind::Dummy, true, |_, _| Ok(()))
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
    //! dummy on the fake kernel (this machine's kernel has no dummy module).

    use cni_net::LinkKind;

    use super::Dummy;
    use crate::pkg::testing::{FakeIpam, each_bad_conf_fails_cleanly, kernel_with_master, run};

    #[test]
    fn add_and_del_with_ipam() {
        let fake = kernel_with_master();
        let ipam = FakeIpam::default();
        let conf =
            r#"{"cniVersion":"1.0.0","name":"du","type":"dummy","ipam":{"type":"fake-ipam"}}"#;
        let (code, out) = run(&Dummy, &fake.kernel(), &ipam, "ADD", "/fake/ctr", conf);
        assert_eq!(code, 0, "{out}");
        let ctr = fake.kernel().open_netns("/fake/ctr").unwrap();
        assert_eq!(fake.link(&ctr, "eth0").expect("eth0").kind, LinkKind::Dummy);
        let (code, out) = run(&Dummy, &fake.kernel(), &ipam, "DEL", "/fake/ctr", conf);
        assert_eq!(code, 0, "{out}");
        assert!(fake.link(&ctr, "eth0").is_none());
        assert!(ipam.held.lock().unwrap().is_empty());
    }

    #[test]
    fn ipam_is_required() {
        each_bad_conf_fails_cleanly(
            &Dummy,
            &[(
                r#"{"cniVersion":"1.0.0","name":"du","type":"dummy"}"#,
                "dummy interface requires an IPAM configuration",
            )],
        );
    }
}
