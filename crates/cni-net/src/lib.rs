//! Kernel access for CNI plugins: the only crate that talks to the kernel. Plugins
//! call its verbs and never build netlink messages, compare errno values or name
//! `/proc/sys` paths; the netlink crates' types stay inside this crate (their API
//! changes often).
//!
//! - [`Kernel`]: the handle plugin verbs receive from their caller, the real kernel
//!   or the [`FakeKernel`]; it opens namespaces, netlink sockets and sysctls.
//! - [`netns`]: network namespace handles, entering one with a guard that always
//!   switches back, creating and removing named namespaces like `ip netns add`.
//! - [`rtnl`]: rtnetlink over a transport seam (the kernel's socket or the fake
//!   kernel): links ([`LinkSpec`], [`LinkChange`]), addresses, routes, policy rules, tc.
//! - [`iface`]: recipes the interface plugins share (veth pair, ConfigureIface).
//! - [`netfilter`]: firewall transactions (`iptables-restore`, `nft -f`) and the
//!   masquerade and spoof-check shapes; [`conntrack`]: ctnetlink entry removal.
//!
//! The fake kernel is built with the `fake` feature (tests turn it on); without it
//! the helpers only the fake uses (message reports, delete matching) are unused.
#![cfg_attr(
    not(any(test, feature = "fake")),
    allow(dead_code, unused_imports, unreachable_code)
)]

pub mod conntrack;
pub mod dbus;
mod error;
pub mod iface;
mod kernel;
pub mod netfilter;
pub mod netns;
pub mod nft;
pub mod rtnl;
pub mod sysctl;
pub mod tap;

pub use error::{NetError, Result};
pub use kernel::Kernel;
pub use netns::NetNs;
pub use rtnl::addr::Address;
pub use rtnl::fake::FakeKernel;
pub use rtnl::link::{
    BridgePort, IpvlanMode, KindData, KindSpec, Link, LinkChange, LinkKind, LinkSpec, MacvlanMode,
    OperState, check_name, format_mac, parse_mac,
};
pub use rtnl::route::{NextHop, Route, Scope};
pub use rtnl::rule::Rule;
pub use rtnl::tc::{Handle, Qdisc, QdiscKind, Redirect, Tbf};
pub use rtnl::{Family, Netlink};
pub use tap::TapSpec;
