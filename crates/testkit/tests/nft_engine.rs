//! The in-process nf_tables engine against `nft`: objects it writes list exactly as
//! the ones `nft -f` makes from upstream's text (`nft list ruleset` and `nft -j`,
//! handles aside), it reads `nft`-made rules back as it writes them, deletes by handle
//! work both ways, and a refused commit changes nothing.

use std::process::Command;

use cni_net::NetNs;
use cni_net::nft::matches::{self, Field};
use cni_net::nft::{BaseChain, Batch, Expr, Family, Hook, Nft, Verdict};
use cni_testkit::{Sandbox, require_root};

const MASQ_COMMENT: &str =
    "d23676b4f2d9fe04-848025970da6a998, net: mynet, if: eth0, id: 0123456789abcdef";

/// Upstream's objects as `nft` text (reference/nftables.md §5).
const UPSTREAM: &str = r#"add table inet cni_plugins_masquerade { comment "Masquerading for plugins from github.com/containernetworking/plugins" ; }
add chain inet cni_plugins_masquerade masq_checks { comment "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet" ; }
add chain inet cni_plugins_masquerade postrouting { type nat hook postrouting priority 100 ; }
add rule inet cni_plugins_masquerade postrouting ip daddr == 224.0.0.0/4 return
add rule inet cni_plugins_masquerade postrouting ip6 daddr == ff00::/8 return
add rule inet cni_plugins_masquerade postrouting goto masq_checks
add rule inet cni_plugins_masquerade masq_checks ip saddr == 10.88.0.2 ip daddr != 10.88.0.0/16 masquerade comment "MASQ"
add rule inet cni_plugins_masquerade masq_checks ip6 saddr == fd00::2 ip6 daddr != fd00::/64 masquerade comment "MASQ"
add table ip cni_hostport { comment "CNI portmap plugin" ; }
add chain ip cni_hostport hostports
add chain ip cni_hostport hostip_hostports
add chain ip cni_hostport hostports_all
add rule ip cni_hostport hostports_all jump hostip_hostports
add rule ip cni_hostport hostports_all jump hostports
add chain ip cni_hostport prerouting { type nat hook prerouting priority -100 ; }
add rule ip cni_hostport prerouting fib daddr type local jump hostports_all
add chain ip cni_hostport output { type nat hook output priority -100 ; }
add rule ip cni_hostport output fib daddr type local jump hostports_all
add chain ip cni_hostport masquerading { type nat hook postrouting priority 100 ; }
add rule ip cni_hostport hostports tcp dport 8080 dnat to 10.88.0.2:80 comment "ctr1"
add rule ip cni_hostport hostports ip daddr 192.168.1.5 udp dport 5353 dnat to 10.88.0.2:53 comment "ctr1"
add rule ip cni_hostport masquerading ip saddr 10.88.0.2 ip daddr 10.88.0.2 masquerade comment "ctr1"
add rule ip cni_hostport masquerading ip saddr 0.0.0.0/0 ip daddr 10.88.0.2 masquerade comment "ctr1"
add table ip6 cni_hostport { comment "CNI portmap plugin" ; }
add chain ip6 cni_hostport hostports
add rule ip6 cni_hostport hostports tcp dport 8080 dnat to [fd00::2]:80 comment "ctr1"
add table bridge nat
add chain bridge nat PREROUTING { type filter hook prerouting priority -300 ; policy accept ; }
add chain bridge nat cni-br-iface-c-eth0
add chain bridge nat cni-br-iface-c-eth0-mac
add rule bridge nat PREROUTING iifname "veth1234" jump cni-br-iface-c-eth0 comment "macspoofchk-c-eth0"
add rule bridge nat cni-br-iface-c-eth0 jump cni-br-iface-c-eth0-mac comment "macspoofchk-c-eth0"
add rule bridge nat cni-br-iface-c-eth0-mac ether saddr 02:00:00:00:00:09 return comment "macspoofchk-c-eth0"
add rule bridge nat cni-br-iface-c-eth0-mac drop comment "macspoofchk-c-eth0"
"#;

fn net(text: &str) -> ipnet::IpNet {
    text.parse().expect("net")
}

fn ip(text: &str) -> std::net::IpAddr {
    text.parse().expect("ip")
}

/// The same objects through the engine, the masquerade rules commented `masq`.
fn ours(masq: &str) -> Batch {
    let mut b = Batch::new();
    let inet = Family::Inet;
    let t = "cni_plugins_masquerade";
    b.add_table(
        inet,
        t,
        Some("Masquerading for plugins from github.com/containernetworking/plugins"),
    )
    .expect("engine");
    b.add_chain(
        inet,
        t,
        "masq_checks",
        None,
        Some("Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet"),
    )
    .expect("engine");
    let nat_post = BaseChain {
        kind: "nat",
        hook: Hook::Postrouting,
        priority: 100,
        accept_policy: false,
    };
    b.add_chain(inet, t, "postrouting", Some(nat_post), None)
        .expect("engine");
    let skip = |v6: bool, multicast: &str| {
        let mut e = matches::nfproto(v6);
        e.extend(matches::address(Field::Daddr, net(multicast), true));
        e.push(matches::verdict(Verdict::Return));
        e
    };
    b.add_rule(inet, t, "postrouting", &skip(false, "224.0.0.0/4"), None)
        .expect("engine");
    b.add_rule(inet, t, "postrouting", &skip(true, "ff00::/8"), None)
        .expect("engine");
    b.add_rule(
        inet,
        t,
        "postrouting",
        &[matches::verdict(Verdict::Goto("masq_checks".into()))],
        None,
    )
    .expect("engine");
    for (addr, subnet) in [
        ("10.88.0.2/32", "10.88.0.0/16"),
        ("fd00::2/128", "fd00::/64"),
    ] {
        let mut e = matches::nfproto(addr.contains(':'));
        e.extend(matches::address(Field::Saddr, net(addr), true));
        e.extend(matches::address(Field::Daddr, net(subnet), false));
        e.push(Expr::Masq);
        b.add_rule(inet, t, "masq_checks", &e, Some(masq))
            .expect("engine");
    }

    let ipf = Family::Ip;
    let h = "cni_hostport";
    b.add_table(ipf, h, Some("CNI portmap plugin"))
        .expect("engine");
    for chain in ["hostports", "hostip_hostports", "hostports_all"] {
        b.add_chain(ipf, h, chain, None, None).expect("engine");
    }
    for target in ["hostip_hostports", "hostports"] {
        b.add_rule(
            ipf,
            h,
            "hostports_all",
            &[matches::verdict(Verdict::Jump(target.into()))],
            None,
        )
        .expect("engine");
    }
    for (chain, hook) in [("prerouting", Hook::Prerouting), ("output", Hook::Output)] {
        let base = BaseChain {
            kind: "nat",
            hook,
            priority: -100,
            accept_policy: false,
        };
        b.add_chain(ipf, h, chain, Some(base), None)
            .expect("engine");
        let mut e = matches::fib_daddr_local();
        e.push(matches::verdict(Verdict::Jump("hostports_all".into())));
        b.add_rule(ipf, h, chain, &e, None).expect("engine");
    }
    b.add_chain(ipf, h, "masquerading", Some(nat_post), None)
        .expect("engine");
    let mut e = matches::dport(6, 8080);
    e.extend(matches::dnat(ip("10.88.0.2"), 80));
    b.add_rule(ipf, h, "hostports", &e, Some("ctr1"))
        .expect("engine");
    let mut e = matches::address(Field::Daddr, net("192.168.1.5/32"), true);
    e.extend(matches::dport(17, 5353));
    e.extend(matches::dnat(ip("10.88.0.2"), 53));
    b.add_rule(ipf, h, "hostports", &e, Some("ctr1"))
        .expect("engine");
    for source in ["10.88.0.2/32", "0.0.0.0/0"] {
        let mut e = matches::address(Field::Saddr, net(source), true);
        e.extend(matches::address(Field::Daddr, net("10.88.0.2/32"), true));
        e.push(Expr::Masq);
        b.add_rule(ipf, h, "masquerading", &e, Some("ctr1"))
            .expect("engine");
    }
    b.add_table(Family::Ip6, h, Some("CNI portmap plugin"))
        .expect("engine");
    b.add_chain(Family::Ip6, h, "hostports", None, None)
        .expect("engine");
    let mut e = matches::dport(6, 8080);
    e.extend(matches::dnat(ip("fd00::2"), 80));
    b.add_rule(Family::Ip6, h, "hostports", &e, Some("ctr1"))
        .expect("engine");

    let br = Family::Bridge;
    b.add_table(br, "nat", None).expect("engine");
    let pre = BaseChain {
        kind: "filter",
        hook: Hook::Prerouting,
        priority: -300,
        accept_policy: true,
    };
    b.add_chain(br, "nat", "PREROUTING", Some(pre), None)
        .expect("engine");
    b.add_chain(br, "nat", "cni-br-iface-c-eth0", None, None)
        .expect("engine");
    b.add_chain(br, "nat", "cni-br-iface-c-eth0-mac", None, None)
        .expect("engine");
    let c = Some("macspoofchk-c-eth0");
    let mut e = matches::iifname("veth1234");
    e.push(matches::verdict(Verdict::Jump(
        "cni-br-iface-c-eth0".into(),
    )));
    b.add_rule(br, "nat", "PREROUTING", &e, c).expect("engine");
    b.add_rule(
        br,
        "nat",
        "cni-br-iface-c-eth0",
        &[matches::verdict(Verdict::Jump(
            "cni-br-iface-c-eth0-mac".into(),
        ))],
        c,
    )
    .expect("engine");
    let mut e = matches::ether_saddr([2, 0, 0, 0, 0, 9]);
    e.push(matches::verdict(Verdict::Return));
    b.add_rule(br, "nat", "cni-br-iface-c-eth0-mac", &e, c)
        .expect("engine");
    b.add_rule(
        br,
        "nat",
        "cni-br-iface-c-eth0-mac",
        &[matches::verdict(Verdict::Drop)],
        c,
    )
    .expect("engine");
    b
}

fn nft(netns: &NetNs, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let out = netns
        .run(|| {
            let mut child = Command::new("nft")
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("nft (install nftables)");
            if let Some(text) = stdin {
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(text.as_bytes())
                    .expect("write");
            }
            child.wait_with_output().expect("nft")
        })
        .expect("netns");
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `nft -j list ruleset` without handles (and the metainfo line).
fn json_without_handles(text: &str) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.remove("handle");
                map.remove("metainfo");
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => {
                items.retain(|i| i.get("metainfo").is_none());
                items.iter_mut().for_each(strip);
            }
            _ => {}
        }
    }
    let mut v: serde_json::Value = serde_json::from_str(text).expect("nft -j");
    strip(&mut v);
    v
}

#[test]
fn the_engine_writes_what_nft_writes_for_upstreams_text() {
    require_root!();
    let sandbox = Sandbox::new();
    let upstream = UPSTREAM.replace("MASQ", MASQ_COMMENT);
    nft(&sandbox.host, &["-f", "-"], Some(&upstream));
    let batch = ours(MASQ_COMMENT);
    sandbox
        .container
        .run(|| Nft::open().and_then(|mut n| n.commit(&batch)))
        .expect("netns")
        .expect("commit");
    let theirs = nft(&sandbox.host, &["list", "ruleset"], None);
    let mine = nft(&sandbox.container, &["list", "ruleset"], None);
    assert_eq!(mine, theirs, "nft list ruleset differs");
    let theirs = json_without_handles(&nft(&sandbox.host, &["-j", "list", "ruleset"], None));
    let mine = json_without_handles(&nft(&sandbox.container, &["-j", "list", "ruleset"], None));
    assert_eq!(mine, theirs, "nft -j differs");
}

#[test]
fn nft_made_rules_read_back_as_the_engine_writes_them_and_deletes_cross() {
    require_root!();
    let sandbox = Sandbox::new();
    nft(&sandbox.host, &["-f", "-"], Some(UPSTREAM));
    let mut engine = sandbox.host.run(Nft::open).expect("netns").expect("open");
    let listing = engine
        .list(Family::Inet, "cni_plugins_masquerade")
        .expect("list");
    let postrouting = [
        {
            let mut e = matches::nfproto(false);
            e.extend(matches::address(Field::Daddr, net("224.0.0.0/4"), true));
            e.push(matches::verdict(Verdict::Return));
            e
        },
        {
            let mut e = matches::nfproto(true);
            e.extend(matches::address(Field::Daddr, net("ff00::/8"), true));
            e.push(matches::verdict(Verdict::Return));
            e
        },
        vec![matches::verdict(Verdict::Goto("masq_checks".into()))],
    ];
    assert!(
        listing.chain_holds("postrouting", &postrouting),
        "{listing:#?}"
    );
    let masq = listing.select(|r| r.chain == "masq_checks");
    assert_eq!(masq.len(), 2);
    assert_eq!(masq[0].comment, "MASQ");
    // The engine deletes nft's rules by handle, in one commit.
    let mut batch = Batch::new();
    for rule in &masq {
        batch.delete_rule(
            Family::Inet,
            "cni_plugins_masquerade",
            &rule.chain,
            rule.handle,
        );
    }
    engine.commit(&batch).expect("delete");
    let listing = engine
        .list(Family::Inet, "cni_plugins_masquerade")
        .expect("list");
    assert!(listing.select(|r| r.chain == "masq_checks").is_empty());

    // nft deletes the engine's rules by handle.
    let mut batch = Batch::new();
    let mut e = matches::nfproto(false);
    e.extend(matches::address(Field::Saddr, net("10.88.0.9/32"), true));
    e.push(Expr::Masq);
    batch
        .add_rule(
            Family::Inet,
            "cni_plugins_masquerade",
            "masq_checks",
            &e,
            Some("ours"),
        )
        .expect("rule");
    engine.commit(&batch).expect("add");
    let listing = engine
        .list(Family::Inet, "cni_plugins_masquerade")
        .expect("list");
    let handle = listing.select(|r| r.comment == "ours")[0]
        .handle
        .to_string();
    nft(
        &sandbox.host,
        &[
            "delete",
            "rule",
            "inet",
            "cni_plugins_masquerade",
            "masq_checks",
            "handle",
            &handle,
        ],
        None,
    );
    let listing = engine
        .list(Family::Inet, "cni_plugins_masquerade")
        .expect("list");
    assert!(listing.select(|r| r.comment == "ours").is_empty());
    // A table that does not exist lists as empty.
    assert!(
        engine
            .list(Family::Ip, "no_such_table")
            .expect("list")
            .chains
            .is_empty()
    );
}

#[test]
fn a_refused_commit_changes_nothing() {
    require_root!();
    let sandbox = Sandbox::new();
    let mut engine = sandbox.host.run(Nft::open).expect("netns").expect("open");
    let mut batch = Batch::new();
    batch
        .add_table(Family::Ip, "t", Some("made"))
        .expect("table");
    batch
        .add_chain(Family::Ip, "t", "c", None, None)
        .expect("chain");
    batch
        .add_rule(
            Family::Ip,
            "t",
            "c",
            &[matches::verdict(Verdict::Jump("missing".into()))],
            None,
        )
        .expect("rule");
    let e = engine.commit(&batch).unwrap_err();
    assert!(e.already_gone(), "a jump to a missing chain is ENOENT: {e}");
    assert_eq!(
        nft(&sandbox.host, &["list", "ruleset"], None),
        "",
        "nothing of the batch"
    );
    // A comment nft would refuse never reaches the kernel.
    assert!(
        Batch::new()
            .add_table(Family::Ip, "t", Some(&"x".repeat(129)))
            .is_err()
    );
}
