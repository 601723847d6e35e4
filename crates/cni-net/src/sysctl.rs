//! sysctls under `/proc/sys`. They resolve in the calling *thread's* network
//! namespace; plugins go through [`crate::Kernel::sysctl_write`], which enters the
//! namespace it is given (or asks the fake kernel).

use crate::{NetError, Result};

/// The canonical slash form of a sysctl name (what follows `/proc/sys/`).
pub(crate) fn key(name: &str) -> String {
    path(name).trim_start_matches("/proc/sys/").to_string()
}

/// The file behind a sysctl name. Dotted names (`net.ipv4.ip_forward`) have their
/// dots and slashes swapped, as upstream's helper does, so slash names are the only
/// safe form for interface names containing dots (`net/ipv4/conf/eth0.100/...`).
pub fn path(name: &str) -> String {
    let dotted = match (name.find('.'), name.find('/')) {
        (Some(dot), Some(slash)) => dot < slash,
        (Some(_), None) => true,
        _ => false,
    };
    let name = if dotted {
        name.chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect()
    } else {
        name.to_string()
    };
    format!("/proc/sys/{name}")
}

/// The value, without the trailing newline.
pub(crate) fn read(name: &str) -> Result<String> {
    let path = path(name);
    std::fs::read_to_string(&path)
        .map(|v| v.trim_end().to_string())
        .map_err(|e| NetError::io(format!("failed to read {path}"), e))
}

/// Writes the value as it is (no newline, as upstream). A `/proc/sys` mounted
/// read-only (a runtime that gives the container no network sysctls) is said in
/// those words rather than as a bare "Read-only file system".
pub(crate) fn write(name: &str, value: &str) -> Result<()> {
    let path = path(name);
    std::fs::write(&path, value).map_err(|e| {
        if e.kind() == std::io::ErrorKind::ReadOnlyFilesystem {
            NetError::Other(format!(
                "cannot set {path}: /proc/sys is mounted read-only in this network namespace's mount context; the runtime must allow network sysctls"
            ))
        } else {
            NetError::io(format!("failed to write {path}"), e)
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_map_to_proc_paths_as_upstream() {
        assert_eq!(
            super::path("net.ipv4.ip_forward"),
            "/proc/sys/net/ipv4/ip_forward"
        );
        assert_eq!(
            super::path("net/ipv4/conf/eth0.100/arp_notify"),
            "/proc/sys/net/ipv4/conf/eth0.100/arp_notify"
        );
        // Upstream's quirk: a dotted name with a dotted interface breaks.
        assert_eq!(
            super::path("net.ipv4.conf.eth0/100.x"),
            "/proc/sys/net/ipv4/conf/eth0.100/x"
        );
    }
}
