//! Netfilter: the generic transaction machinery (one `iptables-restore --noflush`
//! per address family, one `nft -f -`, and the listings `iptables -S` / `nft -j list`
//! read beforehand, never a process per rule), plus the masquerade and MAC spoof-check
//! shapes bridge and ptp share. Plugin-specific rule models (portmap's) live with
//! their plugin and render through [`iptables`] and [`nft`].

pub mod masq;
pub mod spoofchk;

use std::io::Write;
use std::process::{Child, Command, Stdio};

use sha2::{Digest, Sha512};

use crate::{NetError, Result};

/// Which firewall tool a plugin drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Iptables,
    Nftables,
}

impl Backend {
    /// The backend for a config's `ipMasqBackend`/`backend` value: `iptables`,
    /// `nftables`, or empty/absent for the default. `what` names the key for the
    /// error message.
    pub fn choose(requested: Option<&str>, what: &str) -> std::result::Result<Backend, String> {
        match requested.unwrap_or_default() {
            "iptables" => Ok(Backend::Iptables),
            "nftables" => Ok(Backend::Nftables),
            "" => Backend::default_choice(),
            other => Err(format!("unknown {what} {other:?}")),
        }
    }

    /// Upstream's default, without its dependency on binaries: iptables when the
    /// iptables tool is installed, else nftables in-process (which needs only the
    /// kernel's nf_tables); neither is one clear error, before anything is changed.
    pub fn default_choice() -> std::result::Result<Backend, String> {
        if iptables_usable(false) {
            Ok(Backend::Iptables)
        } else if crate::nft::available() {
            Ok(Backend::Nftables)
        } else {
            Err("no usable firewall: the iptables tool is not installed and this kernel has no nf_tables".into())
        }
    }
}

/// Whether `iptables` (or `ip6tables`) can be run. Upstream runs `iptables -S`; a
/// PATH lookup gives the same answer on any node where the binary works, without
/// a process per call.
pub fn iptables_usable(v6: bool) -> bool {
    on_path(if v6 { "ip6tables" } else { "iptables" })
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .any(|dir| std::fs::metadata(dir.join(program)).is_ok_and(|m| m.is_file()))
        })
        .unwrap_or(false)
}

/// Lowercase hex SHA-512 of `text`.
pub fn sha512_hex(text: &str) -> String {
    Sha512::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Upstream's iptables chain name for a (network, container): `<prefix>` followed by
/// the SHA-512 of `name + id`, cut to iptables' 28 characters.
pub fn chain_name(prefix: &str, network: &str, container_id: &str) -> String {
    hashed_name(prefix, network, container_id, 28)
}

/// Upstream's `FormatHashWithPrefix`: `prefix` and the SHA-512 of
/// `network + container_id`, cut to `max` characters (28 for an iptables chain, 15
/// for bandwidth's ifb device).
pub fn hashed_name(prefix: &str, network: &str, container_id: &str, max: usize) -> String {
    let mut name = format!(
        "{prefix}{}",
        sha512_hex(&format!("{network}{container_id}"))
    );
    name.truncate(max);
    name
}

/// Runs `program args`, feeding `stdin`; returns stdout, or an error with stderr.
pub(crate) fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    Started::spawn(program, args, stdin.is_some())?.finish(stdin)
}

/// A child process, possibly started before its input is known so that its start
/// (exec, loading its libraries: about a millisecond for iptables) overlaps the
/// caller's own work. Dropped unfinished, it gets an empty stdin and is waited for: a
/// restore that never saw its input changes nothing.
pub(crate) struct Started {
    child: Option<Child>,
    shown: String,
}

impl Started {
    pub(crate) fn spawn(program: &str, args: &[&str], piped: bool) -> Result<Started> {
        let shown = format!("{program} {}", args.join(" "));
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(if piped { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .map_err(|e| NetError::io(format!("running {shown}"), e))?;
        Ok(Started {
            child: Some(child),
            shown,
        })
    }

    /// Feeds `stdin` and waits; returns stdout, or an error with stderr.
    pub(crate) fn finish(mut self, stdin: Option<&str>) -> Result<String> {
        let shown = std::mem::take(&mut self.shown);
        let Some(mut child) = self.child.take() else {
            return Err(NetError::Other(format!(
                "running {shown}: already finished"
            )));
        };
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A child that exits early closes the pipe; its status says why.
            let _ = pipe.write_all(input.as_bytes());
        }
        let output = child
            .wait_with_output()
            .map_err(|e| NetError::io(format!("running {shown}"), e))?;
        if !output.status.success() {
            let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
            if let Some(input) = stdin {
                stderr.push_str(&format!("\ninput:\n{input}"));
            }
            return Err(NetError::Tool {
                command: shown,
                status: output.status.code(),
                stderr,
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// The child gets SIGKILL when the thread that started it dies: a plugin killed by
/// its runtime must not leave an `nft` or `iptables-restore` running that commits
/// after the runtime's DEL has cleaned up.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // prctl(2), which is async-signal-safe; it allocates and locks nothing.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

/// iptables in one address family.
pub mod iptables {
    use super::{Started, run};
    use crate::Result;

    fn binary(v6: bool, restore: bool) -> &'static str {
        match (v6, restore) {
            (false, false) => "iptables",
            (true, false) => "ip6tables",
            (false, true) => "iptables-restore",
            (true, true) => "ip6tables-restore",
        }
    }

    /// `iptables -t TABLE -S`: every chain (`-N`/`-P` lines) and rule (`-A` lines).
    pub fn list(v6: bool, table: &str) -> Result<Vec<String>> {
        let out = run(binary(v6, false), &["--wait", "-t", table, "-S"], None)?;
        Ok(out.lines().map(str::to_string).collect())
    }

    /// Applies `lines` (iptables-save syntax, without the table header) to `table`
    /// in one transaction. Nothing to do is no process at all.
    pub fn restore(v6: bool, table: &str, lines: &[String]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        start_restore(v6)?.finish(table, lines)
    }

    /// A line with a control character would end early and smuggle in another
    /// restore command (a newline) or confuse the parser: refused, whatever made it.
    fn check_lines(lines: &[String]) -> Result<()> {
        match lines.iter().find(|l| l.chars().any(char::is_control)) {
            Some(line) => Err(crate::NetError::Invalid(format!(
                "refusing an iptables-restore line with a control character: {line:?}"
            ))),
            None => Ok(()),
        }
    }

    /// An `iptables-restore --noflush` started ahead of its input (see [`Started`]).
    pub struct Restore(Started);

    pub fn start_restore(v6: bool) -> Result<Restore> {
        Started::spawn(binary(v6, true), &["--noflush", "--wait"], true).map(Restore)
    }

    impl Restore {
        /// Applies `lines` (iptables-save syntax, without the table header) to
        /// `table` in one transaction. No lines: nothing is applied.
        pub fn finish(self, table: &str, lines: &[String]) -> Result<()> {
            if lines.is_empty() {
                return Ok(());
            }
            check_lines(lines)?;
            let input = format!("*{table}\n{}\nCOMMIT\n", lines.join("\n"));
            self.0.finish(Some(&input)).map(drop)
        }
    }

    /// Quotes an argument as iptables-save does, so restore reads it back as one.
    pub fn quote(text: &str) -> String {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    }

    /// Whether a chain is declared in a `-S` listing.
    pub fn has_chain(listing: &[String], chain: &str) -> bool {
        listing.iter().any(|l| l.strip_prefix("-N ") == Some(chain))
    }

    /// The rules of `chain` in a `-S` listing that jump to `target`, as `-D` lines.
    pub fn jumps_to(listing: &[String], chain: &str, target: &str) -> Vec<String> {
        let head = format!("-A {chain} ");
        jumps(listing, target, |l| l.starts_with(&head))
    }

    /// The rules of any chain in a `-S` listing that jump to `target`, as `-D` lines.
    pub fn jumps_to_any(listing: &[String], target: &str) -> Vec<String> {
        jumps(listing, target, |l| l.starts_with("-A "))
    }

    fn jumps(listing: &[String], target: &str, pick: impl Fn(&str) -> bool) -> Vec<String> {
        listing
            .iter()
            .filter(|l| pick(l))
            .filter(|l| {
                let tokens: Vec<&str> = l.split_whitespace().collect();
                tokens.windows(2).any(|w| w[0] == "-j" && w[1] == target)
            })
            .map(|l| format!("-D {}", &l[3..]))
            .collect()
    }
}

/// The `nft` binary, for the one thing the in-process engine cannot do: compile raw
/// `nft` text from a config (portmap's `conditionsV4/V6`).
pub mod nft {
    use super::run;
    use crate::Result;

    /// Applies an `nft -f` script in one transaction.
    pub fn apply(script: &str) -> Result<()> {
        if script.is_empty() {
            return Ok(());
        }
        run("nft", &["-f", "-"], Some(script)).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_are_upstreams() {
        // sha512("mynet" + "ctr-1") starts with these hex digits (checked with
        // `printf mynetctr-1 | sha512sum`).
        let chain = chain_name("CNI-", "mynet", "ctr-1");
        assert_eq!(chain.len(), 28);
        assert_eq!(chain, format!("CNI-{}", &sha512_hex("mynetctr-1")[..24]));
        assert_eq!(chain_name("CNI-DN-", "n", "c").len(), 28);
    }

    #[test]
    fn jumps_are_found_in_a_listing() {
        let listing: Vec<String> = [
            "-P POSTROUTING ACCEPT",
            "-N CNI-abc",
            "-A POSTROUTING -s 10.0.0.2/32 -m comment --comment \"name: \\\"n\\\" id: \\\"c\\\"\" -j CNI-abc",
            "-A POSTROUTING -s 10.0.0.3/32 -j CNI-abcd",
        ]
        .map(String::from)
        .to_vec();
        assert!(iptables::has_chain(&listing, "CNI-abc"));
        assert!(!iptables::has_chain(&listing, "CNI-ab"));
        assert_eq!(
            iptables::jumps_to(&listing, "POSTROUTING", "CNI-abc"),
            vec![
                "-D POSTROUTING -s 10.0.0.2/32 -m comment --comment \"name: \\\"n\\\" id: \\\"c\\\"\" -j CNI-abc"
            ]
        );
        assert_eq!(
            iptables::quote(r#"name: "n" id: "c""#),
            r#""name: \"n\" id: \"c\"""#
        );
    }

    #[test]
    fn restore_lines_with_control_characters_are_refused() {
        let bad = vec!["-A X -j ACCEPT\n-F INPUT".to_string()];
        let e = iptables::start_restore(false)
            .and_then(|r| r.finish("nat", &bad))
            .unwrap_err();
        assert!(matches!(e, NetError::Invalid(_)), "{e}");
    }

    #[test]
    fn a_started_child_dies_with_the_thread_that_started_it() {
        // The thread starts `sleep`, then ends without waiting for it (as a killed
        // plugin would): the child must be gone at once.
        let pid = std::thread::spawn(|| {
            let started = Started::spawn("sleep", &["30"], false).unwrap();
            let pid = started.child.as_ref().unwrap().id();
            std::mem::forget(started);
            pid
        })
        .join()
        .unwrap();
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let status = nix::sys::wait::waitpid(pid, None).unwrap();
        assert!(
            matches!(
                status,
                nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _)
            ),
            "{status:?}"
        );
    }

    #[test]
    fn a_started_child_gets_its_input_late_or_an_empty_one_when_dropped() {
        let started = Started::spawn("cat", &[], true).unwrap();
        assert_eq!(started.finish(Some("late input")).unwrap(), "late input");
        // Dropped unfinished: its stdin closes and it is reaped, without hanging.
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!("cat > {}", out.display());
        drop(Started::spawn("sh", &["-c", &script], true).unwrap());
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "");
        let failed = Started::spawn("sh", &["-c", "echo nope >&2; exit 3"], false).unwrap();
        let e = failed.finish(None).unwrap_err();
        assert!(
            matches!(
                e,
                NetError::Tool {
                    status: Some(3),
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("nope"), "{e}");
    }
}
