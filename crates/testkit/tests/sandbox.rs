//! The sandbox itself: namespaces are private and removed, and the leak check fails
//! when something is left behind (a leak check that cannot fail proves nothing).

use cni_testkit::{Sandbox, require_root};

/// A way to leave something behind in a sandbox.
type Leak<'a> = (&'a str, &'a dyn Fn(&Sandbox));

#[test]
fn the_leak_check_sees_links_routes_rules_and_files() {
    require_root!();
    let cases: [Leak; 4] = [
        ("link", &|s| {
            s.ip(
                s.host_name(),
                &[
                    "link", "add", "leak0", "type", "veth", "peer", "name", "leak1",
                ],
            );
        }),
        ("route", &|s| {
            s.ip(
                s.container_name(),
                &["route", "add", "unreachable", "10.77.0.0/16"],
            );
        }),
        ("rule", &|s| {
            s.ip(
                s.host_name(),
                &["rule", "add", "from", "10.88.0.0/16", "table", "100"],
            );
        }),
        ("file", &|s| {
            std::fs::write(s.state_dir().join("left"), b"x").expect("write")
        }),
    ];
    for (what, leak) in cases {
        let sandbox = Sandbox::new();
        sandbox.assert_no_leaks();
        leak(&sandbox);
        let caught =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sandbox.assert_no_leaks()));
        assert!(caught.is_err(), "a leaked {what} is reported");
    }
}

#[test]
fn namespaces_are_separate_and_removed_on_drop() {
    require_root!();
    let (host, ctr) = {
        let sandbox = Sandbox::new();
        assert!(!sandbox.host.same_as(&sandbox.container));
        assert!(
            !sandbox
                .host
                .same_as(&cni_net::NetNs::current().expect("own netns")),
            "never the root netns"
        );
        let out = sandbox.exec_in_container("ip", &["-o", "link"]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).lines().count(),
            1,
            "a fresh container netns has only lo"
        );
        (sandbox.host_path(), sandbox.container_path())
    };
    assert!(!std::path::Path::new(&host).exists());
    assert!(!std::path::Path::new(&ctr).exists());
}
