//! The one error type of kernel access. Callers ask it questions ("does this mean the
//! object already exists?", "is it already gone?") instead of comparing errno values,
//! and it becomes a CNI error (code 999, upstream's plain error) through `From`.

/// errno values as the kernel reports them. Only this crate looks at the numbers.
pub(crate) mod errno {
    pub const ENOENT: i32 = 2;
    pub const ESRCH: i32 = 3;
    pub const EBUSY: i32 = 16;
    pub const EEXIST: i32 = 17;
    pub const ENODEV: i32 = 19;
    pub const EINVAL: i32 = 22;
    pub const ENOSPC: i32 = 28;
    pub const EOPNOTSUPP: i32 = 95;
    pub const EADDRNOTAVAIL: i32 = 99;
    pub const ENETUNREACH: i32 = 101;
}

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
    /// The kernel refused a request; `message` is its extended ack text.
    #[error("{op}: {}{}", std::io::Error::from_raw_os_error(*.errno), .message.as_ref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kernel {
        op: String,
        errno: i32,
        message: Option<String>,
    },
    /// No link of that name (upstream's `Link not found`; DEL treats it as done).
    #[error("failed to find link {0:?}: Link not found")]
    LinkNotFound(String),
    /// A firewall tool (`iptables-restore`, `nft`) exited unsuccessfully. `status` is
    /// its exit code (`None` when a signal ended it).
    #[error("running [{command}]: {}: {stderr}", .status.map(|s| format!("exit status {s}")).unwrap_or_else(|| "killed by a signal".into()))]
    Tool {
        command: String,
        status: Option<i32>,
        stderr: String,
    },
    /// A value the kernel would refuse (or the netlink encoder choke on), caught
    /// before any request is sent.
    #[error("{0}")]
    Invalid(String),
    /// Something this kernel handle cannot do (the fake kernel has no firewall).
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Other(String),
    #[error("{op}: malformed netlink reply: {detail}")]
    Decode { op: String, detail: String },
    /// Every failure of a teardown that went on after the first (DEL is best effort).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<NetError>),
}

impl NetError {
    pub(crate) fn io(op: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        NetError::Io {
            op: op.into(),
            source: source.into(),
        }
    }

    pub(crate) fn kernel(op: impl Into<String>, errno: i32) -> Self {
        NetError::Kernel {
            op: op.into(),
            errno,
            message: None,
        }
    }

    /// The errno behind this error, if the kernel gave one.
    pub(crate) fn errno(&self) -> Option<i32> {
        match self {
            NetError::Kernel { errno, .. } => Some(*errno),
            NetError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The object to create is already there (`EEXIST`).
    pub fn already_exists(&self) -> bool {
        self.errno() == Some(errno::EEXIST)
    }

    /// The object to remove or change is not there (any more): a missing link,
    /// address, route, rule, qdisc or namespace. DEL treats this as done.
    pub fn already_gone(&self) -> bool {
        matches!(self, NetError::NetnsNotFound(_) | NetError::LinkNotFound(_))
            || matches!(
                self.errno(),
                Some(errno::ENODEV | errno::ENOENT | errno::ESRCH | errno::EADDRNOTAVAIL)
            )
    }

    /// The kernel does not know the requested link kind or feature (a module that is
    /// not built in: "Unknown device type").
    pub fn unsupported_by_kernel(&self) -> bool {
        matches!(self, NetError::Unsupported(_))
            || matches!(self.errno(), Some(errno::EOPNOTSUPP))
            || matches!(self, NetError::Kernel { message: Some(m), .. } if m.contains("Unknown device type"))
    }

    /// `Ok` for no errors, the error itself for one, [`NetError::Several`] for more.
    pub fn collect(mut errors: Vec<NetError>) -> Result<()> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(NetError::Several(errors)),
        }
    }

    /// Prefixes the error with what was being done, keeping its kind.
    pub fn context(self, what: impl std::fmt::Display) -> NetError {
        match self {
            NetError::Kernel { op, errno, message } => NetError::Kernel {
                op: format!("{what}: {op}"),
                errno,
                message,
            },
            NetError::Io { op, source } => NetError::Io {
                op: format!("{what}: {op}"),
                source,
            },
            other => NetError::Other(format!("{what}: {other}")),
        }
    }
}

/// Upstream reports kernel failures as plain errors, which its skel turns into code 999.
impl From<NetError> for cni_types::Error {
    fn from(e: NetError) -> Self {
        cni_types::Error::internal(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, NetError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_answer_what_they_mean() {
        assert!(NetError::kernel("add", errno::EEXIST).already_exists());
        assert!(!NetError::kernel("add", errno::EEXIST).already_gone());
        for gone in [
            errno::ENODEV,
            errno::ENOENT,
            errno::ESRCH,
            errno::EADDRNOTAVAIL,
        ] {
            assert!(NetError::kernel("del", gone).already_gone(), "{gone}");
        }
        assert!(NetError::LinkNotFound("eth0".into()).already_gone());
        assert!(NetError::NetnsNotFound("/x".into()).already_gone());
        let e = NetError::kernel("add link", errno::EEXIST).context("bridge");
        assert!(e.already_exists());
        assert_eq!(e.to_string(), "bridge: add link: File exists (os error 17)");
        let cni: cni_types::Error = NetError::Invalid("bad".into()).into();
        assert_eq!((cni.code, cni.msg.as_str()), (999, "bad"));
    }
}
