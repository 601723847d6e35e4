//! Bounded fuzzing (proptest, on stable): what the kernel sends back goes through
//! the socket's own decoding and every reader of messages; malformed, truncated and
//! mutated replies must give an error or a value, never a panic or a hang.

use netlink_packet_core::{NLM_F_MULTIPART, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use proptest::prelude::*;

use super::addr::{Address, address_from, address_report};
use super::link::{Link, LinkKind, OperState, link_from, link_message};
use super::route::{Route, route_from, route_message};
use super::rule::{Rule, rule_from_message, rule_message};
use super::tc::{Handle, Qdisc, QdiscKind, Tbf, qdisc_from_message, qdisc_message};
use super::{Family, Replies, decode_buffer};

/// Valid replies as the kernel sends them, serialised: the seeds for mutation.
fn seeds() -> Vec<Vec<u8>> {
    let link = Link {
        index: 3,
        up: true,
        oper_state: OperState::Up,
        mac: "02:00:00:00:00:01".into(),
        mtu: 1500,
        master: Some(2),
        parent: Some(7),
        txqlen: 1000,
        alias: "x".into(),
        port: Some(Default::default()),
        ..Link::named("eth0", LinkKind::Veth)
    };
    let macvlan = Link {
        kind: LinkKind::Macvlan,
        port: None,
        data: crate::rtnl::link::KindData::Macvlan(crate::MacvlanMode::Bridge),
        ..link.clone()
    };
    let address = Address {
        index: 3,
        address: "10.1.2.3/24".parse().unwrap(),
        scope: Default::default(),
        tentative: true,
        dad_failed: false,
    };
    let route = Route::new("10.0.0.0/8".parse().unwrap(), "10.1.2.1".parse().ok(), 3);
    let rule = Rule::from_source("10.1.2.3/32".parse().unwrap(), 100);
    let qdisc = Qdisc {
        index: 3,
        handle: Handle::new(1, 0),
        parent: Handle::ROOT,
        kind: QdiscKind::Tbf(Tbf {
            rate: 1000,
            limit: 10,
            buffer: 5,
        }),
    };
    let messages = vec![
        RouteNetlinkMessage::NewLink(link_message(&link)),
        RouteNetlinkMessage::NewLink(link_message(&macvlan)),
        RouteNetlinkMessage::NewLink(link_message(&Link {
            kind: LinkKind::Ipvlan,
            data: crate::KindData::Ipvlan(crate::IpvlanMode::L3s),
            ..macvlan.clone()
        })),
        RouteNetlinkMessage::NewLink(link_message(&Link {
            kind: LinkKind::Vlan,
            data: crate::KindData::Vlan(4094),
            ..macvlan.clone()
        })),
        RouteNetlinkMessage::NewAddress(address_report(&address)),
        RouteNetlinkMessage::NewRoute(route_message(&route)),
        RouteNetlinkMessage::NewRule(rule_message(&rule).unwrap()),
        RouteNetlinkMessage::NewQueueDiscipline(qdisc_message(&qdisc).unwrap()),
    ];
    messages.into_iter().map(serialise).collect()
}

fn serialise(message: RouteNetlinkMessage) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.sequence_number = 1;
    header.flags = NLM_F_MULTIPART;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
    packet.finalize();
    let mut buffer = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut buffer);
    buffer
}

/// Everything a reply can be read as.
fn read_all(bytes: &[u8]) {
    let mut replies = Replies::default();
    let _ = decode_buffer(bytes, 1, true, "fuzz", &mut replies);
    for message in replies.messages {
        let _ = link_from(message.clone());
        let _ = address_from(message.clone());
        let _ = route_from(message.clone());
        match &message {
            RouteNetlinkMessage::NewRule(m) => {
                let _ = rule_from_message(m);
            }
            RouteNetlinkMessage::NewQueueDiscipline(m) => {
                let _ = qdisc_from_message(m);
            }
            _ => {}
        }
    }
}

#[test]
fn the_seeds_read_back() {
    for seed in seeds() {
        let mut replies = Replies::default();
        assert!(!decode_buffer(&seed, 1, true, "seed", &mut replies).unwrap());
        assert_eq!(replies.messages.len(), 1);
    }
    let _ = Family::V4;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2000), ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        read_all(&bytes);
    }

    #[test]
    fn mutated_and_truncated_replies_never_panic(
        which in 0usize..5,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = seeds().swap_remove(which);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let cut = cut.index(bytes.len() + 1);
        read_all(&bytes[..cut]);
        read_all(&bytes);
    }

    #[test]
    fn nf_tables_rule_dumps_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    ) {
        crate::nft::fuzz_rule(&bytes);
        let mut seed = crate::nft::fuzz_seed();
        for (at, value) in flips {
            let i = at.index(seed.len());
            seed[i] = value;
        }
        crate::nft::fuzz_rule(&seed);
    }

    #[test]
    fn conntrack_attribute_walks_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        crate::conntrack::fuzz_entry(&bytes);
    }
}
