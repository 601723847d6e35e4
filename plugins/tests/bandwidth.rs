//! bandwidth against the kernel, in sandboxes, after ptp: the qdiscs `tc` shows
//! (the same as Go's for the same config), real shaping of a transfer in both
//! directions, another tool's clsact qdisc kept working, GC, and interop with
//! Debian's Go bandwidth both ways.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Instant;

use cni_testkit::{Sandbox, require_root};
use common::{Runner, go_plugin, host_cmd, links, plugin};
use serde_json::{Value, json};

fn bandwidth() -> PathBuf {
    plugin("bandwidth")
}

const RATE: u64 = 8_000_000;

fn ptp(sandbox: &Sandbox) -> String {
    json!({"cniVersion": "1.0.0", "name": "bwnet", "type": "ptp",
        "ipam": {"type": "host-local", "subnet": "10.86.0.0/24", "dataDir": sandbox.state_dir()}})
    .to_string()
}

fn conf(prev: &Value, limits: Value) -> String {
    let mut conf = json!({"cniVersion": "1.0.0", "name": "bwnet", "type": "bandwidth",
        "prevResult": prev});
    for (k, v) in limits.as_object().expect("object") {
        conf[k] = v.clone();
    }
    conf.to_string()
}

fn limits() -> Value {
    json!({"ingressRate": RATE, "ingressBurst": 80_000, "egressRate": RATE, "egressBurst": 80_000})
}

/// ptp's ADD for `id` in the sandbox's container: its result.
fn attach(run: &Runner, id: &str) -> Value {
    run.add(&plugin("ptp"), id, "eth0", &ptp(run.sandbox))
}

fn host_veth(result: &Value) -> String {
    result["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .find(|i| i.get("sandbox").is_none_or(|s| s.as_str() == Some("")))
        .and_then(|i| i["name"].as_str())
        .expect("host veth")
        .to_string()
}

/// `tc qdisc show dev DEV` in the sandbox host, with device names and kernel
/// counters left out.
fn qdiscs(sandbox: &Sandbox, dev: &str) -> String {
    host_cmd(sandbox, "/usr/sbin/tc", &["qdisc", "show", "dev", dev])
        .lines()
        .map(|l| l.replace(" refcnt 2", ""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ifb_of(result: &Value) -> String {
    result["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .find(|n| n.starts_with("bwp"))
        .expect("ifb in the result")
        .to_string()
}

#[test]
fn qdiscs_are_gos_and_each_dels_and_checks_the_others() {
    require_root!();
    let Some(go) = go_plugin("bandwidth") else {
        return;
    };
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let shown = |result: &Value| {
        (
            qdiscs(&sandbox, &host_veth(result)),
            qdiscs(&sandbox, &ifb_of(result)),
        )
    };

    // Go's ADD; our CHECK and DEL.
    let prev = attach(&run, "ctr1");
    let c = conf(&prev, limits());
    let go_result = run.add(&go, "ctr1", "eth0", &c);
    let go_shown = shown(&go_result);
    assert!(go_shown.0.contains("qdisc tbf 1: root"), "{go_shown:?}");
    assert!(go_shown.0.contains("qdisc ingress ffff:"), "{go_shown:?}");
    let mut with_prev: Value = serde_json::from_str(&c).expect("conf");
    with_prev["prevResult"] = go_result.clone();
    run.ok(
        &bandwidth(),
        "CHECK",
        "ctr1",
        "eth0",
        &with_prev.to_string(),
    );
    run.ok(&bandwidth(), "DEL", "ctr1", "eth0", &c);
    assert!(!links(&sandbox, sandbox.host_name()).contains(&ifb_of(&go_result)));
    run.ok(&plugin("ptp"), "DEL", "ctr1", "eth0", &ptp(&sandbox));

    // Our ADD shows the very same qdiscs; Go's CHECK and DEL accept them.
    let prev = attach(&run, "ctr2");
    let c = conf(&prev, limits());
    let result = run.add(&bandwidth(), "ctr2", "eth0", &c);
    assert_eq!(shown(&result), go_shown);
    let filters = host_cmd(
        &sandbox,
        "/usr/sbin/tc",
        &[
            "filter",
            "show",
            "dev",
            &host_veth(&result),
            "parent",
            "ffff:",
        ],
    );
    assert!(
        filters.contains("u32")
            && filters.contains(&format!("Redirect to device {}", ifb_of(&result))),
        "{filters}"
    );
    with_prev["prevResult"] = result.clone();
    run.ok(&go, "CHECK", "ctr2", "eth0", &with_prev.to_string());
    // CHECK notices another rate.
    let mut other: Value = with_prev.clone();
    other["ingressRate"] = json!(RATE * 2);
    let (_, msg) = run.fails(
        &bandwidth(),
        "CHECK",
        "ctr2",
        "eth0",
        "",
        &other.to_string(),
    );
    assert!(msg.contains("Rate does not match"), "{msg}");
    run.ok(&go, "DEL", "ctr2", "eth0", &c);
    assert!(!links(&sandbox, sandbox.host_name()).contains(&ifb_of(&result)));
}

/// Moves `bytes` from `sender` to `receiver` over TCP and returns bytes per second.
fn transfer(sandbox: &Sandbox, to_container: bool, server_ip: &str, bytes: usize) -> f64 {
    let listener = sandbox
        .host
        .run(|| TcpListener::bind((server_ip, 5201)))
        .expect("enter")
        .expect("listen");
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let start = Instant::now();
        if to_container {
            stream.write_all(&vec![7u8; bytes]).expect("send");
            stream
                .shutdown(std::net::Shutdown::Write)
                .expect("shutdown");
            let mut ack = [0u8; 1];
            let _ = stream.read(&mut ack);
        } else {
            let mut got = Vec::new();
            stream.read_to_end(&mut got).expect("receive");
            assert_eq!(got.len(), bytes);
        }
        start.elapsed()
    });
    let addr = format!("{server_ip}:5201");
    sandbox
        .container
        .run(|| {
            let mut stream = TcpStream::connect(&addr).expect("connect");
            if to_container {
                let mut got = Vec::new();
                stream.read_to_end(&mut got).expect("receive");
                assert_eq!(got.len(), bytes);
                let _ = stream.write_all(b"k");
            } else {
                stream.write_all(&vec![7u8; bytes]).expect("send");
            }
        })
        .expect("enter");
    let elapsed = server.join().expect("server");
    bytes as f64 / elapsed.as_secs_f64()
}

#[test]
fn a_transfer_in_each_direction_lands_near_the_configured_rate() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let prev = attach(&run, "ctr1");
    let server_ip = prev["ips"][0]["gateway"]
        .as_str()
        .expect("gateway")
        .to_string();
    let unshaped = transfer(&sandbox, true, &server_ip, 2_000_000);
    let c = conf(&prev, limits());
    run.add(&bandwidth(), "ctr1", "eth0", &c);
    let want = RATE as f64 / 8.0;
    for to_container in [true, false] {
        let rate = transfer(&sandbox, to_container, &server_ip, 1_000_000);
        eprintln!(
            "{}: {rate:.0} B/s, configured {want:.0} B/s, unshaped {unshaped:.0} B/s",
            if to_container { "ingress" } else { "egress" }
        );
        assert!(
            rate > want * 0.6 && rate < want * 1.3,
            "{} at {rate:.0} B/s, configured {want:.0} B/s (unshaped {unshaped:.0} B/s)",
            if to_container { "ingress" } else { "egress" }
        );
    }
    run.ok(&bandwidth(), "DEL", "ctr1", "eth0", &c);
}

#[test]
fn another_tools_clsact_qdisc_is_kept_and_used() {
    require_root!();
    another_tools_qdisc_is_kept("clsact", "ingress");
}

#[test]
fn another_tools_ingress_qdisc_is_kept_and_used() {
    require_root!();
    another_tools_qdisc_is_kept("ingress", "parent ffff:");
}

/// Another tool put `kind` on the host veth (with a filter of its own for clsact)
/// before bandwidth's ADD: the qdisc stays, bandwidth's redirect goes below it
/// (`filters` names where tc lists it) and egress is shaped.
fn another_tools_qdisc_is_kept(kind: &str, filters: &str) {
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let prev = attach(&run, "ctr1");
    let veth = host_veth(&prev);
    let tc = |args: &[&str]| {
        let out = sandbox.run_in_host(std::path::Path::new("/usr/sbin/tc"), args, &[]);
        assert!(
            out.status.success(),
            "tc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    tc(&["qdisc", "add", "dev", &veth, kind]);
    if kind == "clsact" {
        tc(&[
            "filter", "add", "dev", &veth, "egress", "prio", "9", "protocol", "all", "u32",
            "match", "u32", "0", "0", "flowid", "1:1",
        ]);
    }
    let c = conf(&prev, json!({"egressRate": RATE, "egressBurst": 80_000}));
    let result = run.add(&bandwidth(), "ctr1", "eth0", &c);
    let shown = qdiscs(&sandbox, &veth);
    assert!(shown.contains(&format!("qdisc {kind} ffff:")), "{shown}");
    let mut args = vec!["filter", "show", "dev", &veth];
    args.extend(filters.split(' '));
    let below = host_cmd(&sandbox, "/usr/sbin/tc", &args);
    assert!(
        below.contains(&format!("Redirect to device {}", ifb_of(&result))),
        "{below}"
    );
    if kind == "clsact" {
        let egress = host_cmd(
            &sandbox,
            "/usr/sbin/tc",
            &["filter", "show", "dev", &veth, "egress"],
        );
        assert!(
            egress.contains("pref 9"),
            "the other tool's filter stays: {egress}"
        );
    }
    let server_ip = prev["ips"][0]["gateway"]
        .as_str()
        .expect("gateway")
        .to_string();
    let rate = transfer(&sandbox, false, &server_ip, 1_000_000);
    assert!(
        rate < RATE as f64 / 8.0 * 1.3,
        "egress is shaped: {rate:.0} B/s"
    );
    run.ok(&bandwidth(), "DEL", "ctr1", "eth0", &c);
}

#[test]
fn gc_removes_the_ifbs_of_gone_containers_of_this_network_only() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let egress = json!({"egressRate": RATE, "egressBurst": 80_000});
    let mut ifbs = Vec::new();
    for id in ["gone", "live"] {
        let prev = attach(&run, id);
        let result = run.add(&bandwidth(), id, "eth0", &conf(&prev, egress.clone()));
        ifbs.push(ifb_of(&result));
        run.ok(&plugin("ptp"), "DEL", id, "eth0", &ptp(&sandbox));
    }
    // Another network's ifb, and one without our alias (as Go's), stay too.
    sandbox.ip(
        sandbox.host_name(),
        &["link", "add", "bwpforeign0", "type", "ifb"],
    );
    let mut gc: Value = serde_json::from_str(&conf(&json!(null), egress)).expect("conf");
    gc["cniVersion"] = json!("1.1.0");
    gc.as_object_mut().expect("object").remove("prevResult");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "live", "ifname": "eth0"}]);
    run.ok(&bandwidth(), "GC", "", "", &gc.to_string());
    let left = links(&sandbox, sandbox.host_name());
    assert!(!left.contains(&ifbs[0]), "{left:?}");
    assert!(left.contains(&ifbs[1]), "{left:?}");
    assert!(left.contains(&"bwpforeign0".to_string()), "{left:?}");
}

#[test]
fn errors_are_upstreams_and_leave_nothing() {
    require_root!();
    let sandbox = Sandbox::new();
    let run = Runner::new(&sandbox);
    let prev = attach(&run, "ctr1");
    let veth = host_veth(&prev);
    let before = (
        qdiscs(&sandbox, &veth),
        links(&sandbox, sandbox.host_name()),
    );
    for (limits, message) in [
        (
            json!({"ingressRate": 1000}),
            "if rate is set, burst must also be set",
        ),
        (
            json!({"egressBurst": 1000}),
            "if burst is set, rate must also be set",
        ),
        (
            json!({"ingressRate": 1000, "ingressBurst": 34_359_738_368u64}),
            "burst cannot be more than 4GB",
        ),
    ] {
        let c = conf(&prev, limits);
        let (code, msg) = run.fails(&bandwidth(), "ADD", "ctr1", "eth0", "", &c);
        assert_eq!((code, msg.as_str()), (999, message));
        // DEL needs only the ifb's name: the same config does not stop it.
        run.ok(&bandwidth(), "DEL", "ctr1", "eth0", &c);
    }
    // A main plugin without a veth (an interface the host does not list).
    let mut no_veth = prev.clone();
    no_veth["interfaces"] = json!([{"name": "eth0", "sandbox": sandbox.container_path()}]);
    let (_, msg) = run.fails(
        &bandwidth(),
        "ADD",
        "ctr1",
        "eth0",
        "",
        &conf(&no_veth, limits()),
    );
    assert_eq!(msg, "no veth peer of container interface found in host ns");
    // The ifb's tbf refused (a rate the kernel rejects is hard to make; a name
    // taken by another kind of link makes the ifb fail) after the ingress tbf.
    sandbox.ip(
        sandbox.host_name(),
        &["link", "add", &rcni_ifb_name("ctr1"), "type", "bridge"],
    );
    let (_, msg) = run.fails(
        &bandwidth(),
        "ADD",
        "ctr1",
        "eth0",
        "",
        &conf(&prev, limits()),
    );
    assert!(msg.contains("exists"), "{msg}");
    sandbox.ip(
        sandbox.host_name(),
        &["link", "del", &rcni_ifb_name("ctr1")],
    );
    assert_eq!(
        (
            qdiscs(&sandbox, &veth),
            links(&sandbox, sandbox.host_name())
        ),
        before,
        "a failed ADD took back its ingress tbf"
    );
    // Unsupported version.
    let mut old: Value = serde_json::from_str(&conf(&prev, limits())).expect("conf");
    old["cniVersion"] = json!("0.2.0");
    let (code, _) = run.fails(&bandwidth(), "ADD", "ctr1", "eth0", "", &old.to_string());
    assert_eq!(code, 1);
}

fn rcni_ifb_name(id: &str) -> String {
    cni_net::netfilter::hashed_name("bwp", "bwnet", id, 15)
}
