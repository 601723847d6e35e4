//! Kernel access for CNI plugins. Plugins call these verbs and never build netlink
//! messages themselves; the netlink crates' types stay inside this crate (their API
//! changes often).
//!
//! - [`netns`]: network namespace handles, entering one with a guard that always
//!   switches back, creating and removing named namespaces like `ip netns add`.
//! - [`netlink`]: a synchronous rtnetlink socket, bound to the namespace it was opened
//!   in, with the link and address operations plugins need.

pub mod addr;
pub mod conntrack;
pub mod iface;
pub mod link;
pub mod netfilter;
pub mod netlink;
pub mod netns;
pub mod route;
pub mod sysctl;

pub use link::{EEXIST, ENODEV, NewVeth, parse_mac};
pub use netlink::{Address, BridgePort, Link, Netlink, format_mac};
pub use netns::NetNs;
pub use route::Route;

/// Errors from kernel operations.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The netns path does not exist (DEL treats this as "already gone").
    #[error("failed to Statfs {0:?}: no such file or directory")]
    NetnsNotFound(String),
    /// The path exists but is not a network namespace.
    #[error("unknown FS magic on {path:?}: {magic:x}")]
    NotANetns { path: String, magic: i64 },
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused a netlink request; `message` is its extended ack text.
    #[error("{op}: {}{}", std::io::Error::from_raw_os_error(*.errno), .message.as_ref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Netlink {
        op: String,
        errno: i32,
        message: Option<String>,
    },
    /// No link of that name (upstream's `Link not found`; DEL treats it as done).
    #[error("failed to find link {0:?}: Link not found")]
    LinkNotFound(String),
    #[error("{0}")]
    Other(String),
    #[error("{op}: malformed netlink reply: {detail}")]
    Decode { op: String, detail: String },
}

impl NetError {
    pub(crate) fn io(op: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        NetError::Io {
            op: op.into(),
            source: source.into(),
        }
    }

    /// The errno behind this error, if the kernel gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetError::Netlink { errno, .. } => Some(*errno),
            NetError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, NetError>;
