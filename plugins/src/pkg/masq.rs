//! IP masquerade glue for bridge and ptp: the backend from the config, the rules'
//! owner, setup as the last step of ADD and teardown beside the rest of DEL.

use cni_net::Kernel;
use cni_net::netfilter::{Backend, masq};
use cni_skel::{CmdArgs, Command, Context, Request};
use cni_types::net::IpNet;
use cni_types::result::v100;
use cni_types::{Context as _, Error, Errors};

use super::{Found, Rollback};

/// DEL with ipMasq: runs `del` (the plugin's link deletion and IPAM DEL, in its
/// order) while `masq`, the masquerade teardown, runs beside it on its own thread.
/// Both mostly wait on the kernel's RCU grace periods (deleting a veth ~17–20 ms, a
/// nf_tables commit that deletes rules 11–17 ms), so side by side the DEL costs the
/// longer of the two instead of their sum. Both errors are kept, `del`'s first, as
/// upstream reports it before the masquerade's; the teardown has run either way
/// (DEL is best effort, and a repeated DEL finds nothing left to remove).
pub fn del_beside_masq(
    masq: Option<impl FnOnce() -> Result<(), Error> + Send>,
    del: impl FnOnce() -> Result<(), Error>,
) -> Result<(), Error> {
    std::thread::scope(|scope| {
        // Spawned from the host namespace: its firewall processes run there too.
        let teardown = masq.map(|masq| scope.spawn(masq));
        let deleted = del();
        let masq_removed = match teardown {
            Some(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(Error::internal("the masquerade teardown panicked"))),
            None => Ok(()),
        };
        let mut errors = Errors::new();
        errors.record(deleted);
        errors.record(masq_removed);
        errors.into_result()
    })
}

/// The config's `ipMasqBackend`, checked once when the config is loaded.
pub fn masq_backend(ip_masq: bool, requested: Option<&str>) -> Result<Option<Backend>, Error> {
    if !ip_masq {
        return Ok(None);
    }
    Backend::choose(requested, "ipmasq backend")
        .map(Some)
        .map_err(Error::internal)
}

/// The owner of an attachment's masquerade rules.
pub fn masq_owner<'a>(network: &'a str, args: &'a CmdArgs) -> masq::Owner<'a> {
    masq::Owner {
        network,
        ifname: &args.ifname,
        container_id: &args.container_id,
    }
}

/// ipMasq on ADD, last step: masquerade from the result's addresses, with the
/// firewall process the plugin started at its beginning (`masq::Pending::start`);
/// undone by `rollback` if the ADD fails later.
pub fn setup_masq<'a>(
    kernel: &Kernel,
    pending: masq::Pending,
    result: &v100::Result,
    owner: masq::Owner<'a>,
    rollback: &mut Rollback<'a>,
) -> Result<(), Error> {
    let ips: Vec<IpNet> = result.ips.iter().map(|ip| ip.address).collect();
    kernel.require_firewall()?;
    let written = ips.clone();
    // Undoes exactly this attachment's rules: another attachment of the container
    // may share the iptables chain.
    rollback.push(move || {
        let _ = masq::teardown(Some(&written), &owner);
    });
    pending
        .finish(&ips, &owner)
        .context("failed to set up IP masquerade")
}

/// The ipMasq teardown of a DEL, to run beside the link deletion
/// ([`del_beside_masq`]). It removes the rules of this attachment's addresses (the
/// link's, else prevResult's), so another attachment of the same container keeps its
/// own (Multus); only when neither can say and the container is gone does
/// everything of the container ID go, which unlike upstream (plugins#810) also
/// cleans up after a DEL without netns or link.
pub fn teardown_masq<'a, C>(
    kernel: &Kernel,
    found: &Found,
    req: &'a Request<C>,
) -> Result<impl FnOnce() -> Result<(), Error> + Send + 'a, Error> {
    kernel.require_firewall()?;
    let prev = req.prev_result().ok().flatten();
    let addresses = found.addresses(prev.as_ref(), &req.ifname);
    let owner = masq_owner(req.network(), &req.env);
    Ok(move || {
        masq::teardown(addresses.as_deref(), &owner).context("failed to tear down IP masquerade")
    })
}

/// GC of bridge and ptp (beyond upstream, which answers GC without doing anything):
/// forwarded to the IPAM plugin, as the spec says a GC must be to delegates, and the
/// masquerade of attachments not in `cni.dev/valid-attachments` removed. Both run;
/// their errors are reported together.
pub fn gc_ipam_and_masq<C>(req: &Request<C>, cx: &Context, ip_masq: bool) -> Result<(), Error> {
    let mut errors = Errors::new();
    if let Some(ipam_type) = req.ipam_type() {
        errors.record(cx.delegate.verb(ipam_type, Command::Gc, req));
    }
    if ip_masq && cx.kernel.require_firewall().is_ok() {
        let valid = req.conf.valid_attachments.clone().unwrap_or_default();
        let keep = |id: &str, ifname: Option<&str>| {
            valid
                .iter()
                .any(|a| a.container_id == id && ifname.is_none_or(|i| a.ifname == i))
        };
        errors.record(
            masq::gc(req.network(), &keep).context("failed to collect IP masquerade rules"),
        );
    }
    errors.into_result()
}
