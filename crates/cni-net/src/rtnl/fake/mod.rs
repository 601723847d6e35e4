//! A fake kernel that keeps state: namespaces holding links (kind, master, MTU, MAC,
//! flags, alias, bridge-port flags and VLANs), addresses, routes (with the kernel's
//! connected routes), policy rules, qdiscs and redirect filters, plus sysctls. It
//! answers rtnetlink requests as the kernel does (`EEXIST`, `ENODEV`, `ENOENT`,
//! `EBUSY`, `ESRCH`, dumps, echoes), can be told to lack link kinds (as this machine's
//! kernel lacks dummy, ipvlan, vlan and vrf), and fails the requests a test names:
//! "the 3rd RTM_NEWADDR fails with ENOSPC".
//!
//! Plugins run against it through a [`crate::Kernel`] made by [`FakeKernel::kernel`];
//! tests read its state back with typed queries ([`FakeKernel::links`], ...) and
//! compare whole [`Snapshot`]s for leak checks.

mod create;
mod handle;
mod links;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use netlink_packet_route::RouteNetlinkMessage;

use super::Family;
use super::addr::Address;
use super::link::{Link, LinkKind};
use super::route::Route;
use super::rule::Rule;
use super::tc::{Qdisc, Redirect};
use crate::{NetError, NetNs, Result};

pub use crate::error::errno::{
    EADDRNOTAVAIL, EBUSY, EEXIST, EINVAL, ENETUNREACH, ENODEV, ENOENT, ENOSPC, EOPNOTSUPP, ESRCH,
};

/// The kinds of request a failure can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    NewLink,
    DelLink,
    GetLink,
    SetLink,
    NewAddress,
    DelAddress,
    GetAddress,
    NewRoute,
    DelRoute,
    GetRoute,
    NewRule,
    DelRule,
    GetRule,
    NewQdisc,
    DelQdisc,
    GetQdisc,
    NewFilter,
    Other,
}

impl Op {
    fn of(message: &RouteNetlinkMessage) -> Op {
        use RouteNetlinkMessage as M;
        match message {
            M::NewLink(_) => Op::NewLink,
            M::DelLink(_) => Op::DelLink,
            M::GetLink(_) => Op::GetLink,
            M::SetLink(_) => Op::SetLink,
            M::NewAddress(_) => Op::NewAddress,
            M::DelAddress(_) => Op::DelAddress,
            M::GetAddress(_) => Op::GetAddress,
            M::NewRoute(_) => Op::NewRoute,
            M::DelRoute(_) => Op::DelRoute,
            M::GetRoute(_) => Op::GetRoute,
            M::NewRule(_) => Op::NewRule,
            M::DelRule(_) => Op::DelRule,
            M::GetRule(_) => Op::GetRule,
            M::NewQueueDiscipline(_) => Op::NewQdisc,
            M::DelQueueDiscipline(_) => Op::DelQdisc,
            M::GetQueueDiscipline(_) => Op::GetQdisc,
            M::NewTrafficFilter(_) => Op::NewFilter,
            _ => Op::Other,
        }
    }
}

/// Which request an injected failure hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The n-th request from the injection on (1-based), whatever it is.
    Request(usize),
    /// The n-th request of this kind from the injection on.
    Op(Op, usize),
}

#[derive(Debug)]
struct Failure {
    target: Target,
    errno: i32,
    /// Requests (of the kind, for `Op`) seen since the injection.
    seen: usize,
}

/// One namespace's state.
#[derive(Debug, Default, Clone)]
struct Namespace {
    path: String,
    next_index: u32,
    links: Vec<Link>,
    /// A veth's other end: (namespace, index).
    peers: BTreeMap<u32, (u32, u32)>,
    addresses: Vec<Address>,
    routes: Vec<Route>,
    rules: Vec<Rule>,
    qdiscs: Vec<Qdisc>,
    redirects: Vec<Redirect>,
    /// Bridge-port VLANs: port index -> vid -> (pvid, untagged).
    vlans: BTreeMap<u32, BTreeMap<u16, (bool, bool)>>,
    sysctls: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct State {
    /// By id; `None` once removed.
    namespaces: Vec<Option<Namespace>>,
    missing_kinds: BTreeSet<String>,
    failures: Vec<Failure>,
    requests: usize,
    next_mac: u32,
}

/// The fake kernel: cheap to clone, shared by every socket and thread of a test.
#[derive(Clone, Debug)]
pub struct FakeKernel(Arc<Mutex<State>>);

/// Everything a fake kernel holds, comparable for leak checks (namespace paths
/// with their links, addresses, routes, rules, qdiscs, filters and VLANs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot(pub Vec<(String, Vec<String>)>);

/// The path of the fake kernel's host namespace (the plugin's own).
pub const HOST: &str = "/fake/host";

impl Default for FakeKernel {
    fn default() -> Self {
        FakeKernel::new()
    }
}

impl FakeKernel {
    /// A kernel with one namespace, the host ([`HOST`]), holding `lo`.
    pub fn new() -> FakeKernel {
        let fake = FakeKernel(Arc::new(Mutex::new(State::default())));
        fake.add_netns(HOST);
        fake
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the state from the others.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a namespace at `path` holding `lo` (down, as in a new namespace), with
    /// the kernel's default policy rules.
    pub fn add_netns(&self, path: &str) -> NetNs {
        let mut state = self.state();
        let id = state.namespaces.len() as u32;
        let lo = Link {
            index: 1,
            mac: "00:00:00:00:00:00".into(),
            mtu: 65536,
            txqlen: 1000,
            ..Link::named("lo", LinkKind::Device)
        };
        let mut rules = Vec::new();
        for (family, defaults) in [
            (Family::V4, &[(0, 255), (32766, 254), (32767, 253)][..]),
            (Family::V6, &[(0, 255), (32766, 254)][..]),
        ] {
            for (priority, table) in defaults {
                rules.push(Rule {
                    family,
                    priority: Some(*priority),
                    table: *table,
                    src: None,
                    dst: None,
                    iif: None,
                    oif: None,
                });
            }
        }
        state.namespaces.push(Some(Namespace {
            path: path.to_string(),
            next_index: 2,
            links: vec![lo],
            rules,
            ..Default::default()
        }));
        NetNs::fake(id, path)
    }

    /// Removes the namespace at `path` as the kernel destroys one: its links go, and
    /// with them the other ends of its veths.
    pub fn remove_netns(&self, path: &str) {
        let mut state = self.state();
        let Some(id) = state.find(path) else { return };
        let indexes: Vec<u32> = state
            .ns(id)
            .map(|ns| ns.links.iter().map(|l| l.index).collect())
            .unwrap_or_default();
        for index in indexes {
            links::delete_link(&mut state, id, index);
        }
        state.namespaces[id as usize] = None;
    }

    /// The host namespace.
    pub fn host(&self) -> NetNs {
        NetNs::fake(0, HOST)
    }

    /// Makes creating links of these kinds fail as a kernel without their module
    /// does (`EOPNOTSUPP`, "Unknown device type").
    pub fn without_kinds(&self, kinds: &[LinkKind]) {
        let mut state = self.state();
        for kind in kinds {
            state.missing_kinds.insert(format!("{kind:?}"));
        }
    }

    /// The `n`-th request from now on (1-based) fails with `errno`.
    pub fn fail_request(&self, n: usize, errno: i32) {
        self.state().failures.push(Failure {
            target: Target::Request(n),
            errno,
            seen: 0,
        });
    }

    /// The `n`-th request of kind `op` from now on fails with `errno`.
    pub fn fail_op(&self, op: Op, n: usize, errno: i32) {
        self.state().failures.push(Failure {
            target: Target::Op(op, n),
            errno,
            seen: 0,
        });
    }

    /// How many requests the kernel has answered (or failed) so far.
    pub fn requests(&self) -> usize {
        self.state().requests
    }

    fn query<T>(&self, netns: &NetNs, f: impl FnOnce(&Namespace) -> T) -> T
    where
        T: Default,
    {
        let state = self.state();
        netns
            .fake_id()
            .and_then(|id| state.ns(id))
            .map(f)
            .unwrap_or_default()
    }

    /// The links of a namespace, with operational states as the kernel reports them.
    pub fn links(&self, netns: &NetNs) -> Vec<Link> {
        let state = self.state();
        let Some(id) = netns.fake_id() else {
            return Vec::new();
        };
        state
            .ns(id)
            .map(|ns| {
                ns.links
                    .iter()
                    .map(|l| links::reported(&state, id, l))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The link named `name` in a namespace.
    pub fn link(&self, netns: &NetNs, name: &str) -> Option<Link> {
        self.links(netns).into_iter().find(|l| l.name == name)
    }

    pub fn addresses(&self, netns: &NetNs) -> Vec<Address> {
        self.query(netns, |ns| ns.addresses.clone())
    }

    pub fn routes(&self, netns: &NetNs) -> Vec<Route> {
        self.query(netns, |ns| ns.routes.clone())
    }

    pub fn rules(&self, netns: &NetNs) -> Vec<Rule> {
        self.query(netns, |ns| ns.rules.clone())
    }

    pub fn qdiscs(&self, netns: &NetNs) -> Vec<Qdisc> {
        self.query(netns, |ns| ns.qdiscs.clone())
    }

    pub fn redirects(&self, netns: &NetNs) -> Vec<Redirect> {
        self.query(netns, |ns| ns.redirects.clone())
    }

    /// The VLANs of bridge port `index`: (vid, pvid, untagged).
    pub fn bridge_vlans(&self, netns: &NetNs, index: u32) -> Vec<(u16, bool, bool)> {
        self.query(netns, |ns| {
            ns.vlans
                .get(&index)
                .map(|v| v.iter().map(|(vid, (p, u))| (*vid, *p, *u)).collect())
                .unwrap_or_default()
        })
    }

    /// A sysctl's value in a namespace, if anything wrote it.
    pub fn sysctl(&self, netns: &NetNs, name: &str) -> Option<String> {
        self.query(netns, |ns| ns.sysctls.get(name).cloned())
    }

    /// Everything the kernel holds but sysctls (which nothing reverts, as upstream).
    pub fn snapshot(&self) -> Snapshot {
        let state = self.state();
        let mut all = Vec::new();
        for (id, ns) in state.namespaces.iter().enumerate() {
            let Some(ns) = ns else { continue };
            let mut items: Vec<String> = ns
                .links
                .iter()
                .map(|l| format!("{:?}", links::reported(&state, id as u32, l)))
                .collect();
            // Addresses as the kernel dumps them: by link, in each link's order.
            let mut addresses: Vec<&Address> = ns.addresses.iter().collect();
            addresses.sort_by_key(|a| a.index);
            items.extend(addresses.iter().map(|a| format!("{a:?}")));
            // Route order means nothing (the kernel dumps by table and prefix): a
            // route put back is the same state.
            let mut routes: Vec<String> = ns.routes.iter().map(|r| format!("{r:?}")).collect();
            routes.sort();
            items.extend(routes);
            items.extend(ns.rules.iter().map(|r| format!("{r:?}")));
            items.extend(ns.qdiscs.iter().map(|q| format!("{q:?}")));
            items.extend(ns.redirects.iter().map(|r| format!("{r:?}")));
            items.extend(ns.vlans.iter().map(|v| format!("{v:?}")));
            all.push((ns.path.clone(), items));
        }
        Snapshot(all)
    }

    /// Opens a namespace by path, as `NetNs::open` does for real ones.
    pub(crate) fn open(&self, path: &str) -> Result<NetNs> {
        match self.state().find(path) {
            Some(id) => Ok(NetNs::fake(id, path)),
            None => Err(NetError::NetnsNotFound(path.to_string())),
        }
    }

    pub(crate) fn socket(&self, netns: &NetNs) -> Result<Socket> {
        let id = netns.fake_id().ok_or_else(|| {
            NetError::Unsupported("a real namespace has no fake kernel socket".into())
        })?;
        if self.state().ns(id).is_none() {
            return Err(NetError::NetnsNotFound(netns.path().display().to_string()));
        }
        Ok(Socket {
            kernel: self.clone(),
            ns: id,
        })
    }

    /// A tap device, as `/dev/net/tun` makes one: down, kind `tun`.
    pub(crate) fn add_tap(&self, netns: &NetNs, name: &str) -> Result<()> {
        let id = netns.fake_id().unwrap_or(u32::MAX);
        let mut state = self.state();
        if state.ns(id).is_none() {
            return Err(NetError::NetnsNotFound(netns.path().display().to_string()));
        }
        create::add_device(&mut state, id, name, LinkKind::Tun)
            .map_err(|errno| NetError::kernel(format!("failed to create tap {name:?}"), errno))
    }

    pub(crate) fn sysctl_read(&self, netns: &NetNs, name: &str) -> Result<String> {
        let id = netns.fake_id().unwrap_or(u32::MAX);
        let state = self.state();
        let ns = state
            .ns(id)
            .ok_or_else(|| NetError::NetnsNotFound(netns.path().display().to_string()))?;
        Ok(ns.sysctls.get(name).cloned().unwrap_or_else(|| "0".into()))
    }

    pub(crate) fn sysctl_write(&self, netns: &NetNs, name: &str, value: &str) -> Result<()> {
        let id = netns.fake_id().unwrap_or(u32::MAX);
        let mut state = self.state();
        let ns = state
            .ns_mut(id)
            .ok_or_else(|| NetError::NetnsNotFound(netns.path().display().to_string()))?;
        ns.sysctls.insert(name.to_string(), value.to_string());
        Ok(())
    }
}

impl State {
    fn find(&self, path: &str) -> Option<u32> {
        self.namespaces
            .iter()
            .position(|ns| ns.as_ref().is_some_and(|ns| ns.path == path))
            .map(|i| i as u32)
    }

    fn ns(&self, id: u32) -> Option<&Namespace> {
        self.namespaces.get(id as usize)?.as_ref()
    }

    fn ns_mut(&mut self, id: u32) -> Option<&mut Namespace> {
        self.namespaces.get_mut(id as usize)?.as_mut()
    }

    /// Counts the request and returns the errno of an injected failure that hits it.
    fn injected(&mut self, op: Op) -> Option<i32> {
        self.requests += 1;
        let mut hit = None;
        for failure in &mut self.failures {
            let n = match failure.target {
                Target::Request(n) => n,
                Target::Op(o, n) if o == op => n,
                Target::Op(..) => continue,
            };
            failure.seen += 1;
            if failure.seen == n && hit.is_none() {
                hit = Some(failure.errno);
            }
        }
        hit
    }
}

/// A socket bound to one namespace of a fake kernel.
pub(crate) struct Socket {
    kernel: FakeKernel,
    ns: u32,
}

impl Socket {
    /// Answers one request as the kernel would: the replies, or an errno.
    pub(crate) fn handle(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> std::result::Result<Vec<RouteNetlinkMessage>, i32> {
        let mut state = self.kernel.state();
        if let Some(errno) = state.injected(Op::of(&message)) {
            return Err(errno);
        }
        if state.ns(self.ns).is_none() {
            return Err(EINVAL);
        }
        handle::handle(&mut state, self.ns, message, flags)
    }
}

#[cfg(test)]
mod tests;
