//! Any UDP payload through `DhcpServer::process` (each half, then the whole, so REQUESTs can follow
//! OFFERs): never panics, and every reply decodes, is a BOOTREPLY, and leaves through the ingress
//! port. Seeds: `fuzz/seeds/dhcp/` (DISCOVERs captured from udhcpc and dhclient, the same bytes
//! as `tests/common/dhcp_captures.rs`): `cargo fuzz run dhcp fuzz/corpus/dhcp fuzz/seeds/dhcp`.
#![no_main]

use std::net::Ipv4Addr;

use dhcproto::v4::{Message, Opcode};
use dhcproto::{Decodable, Decoder};
use libfuzzer_sys::fuzz_target;
use switchyard::service::dhcp::{DhcpParams, DhcpServer};

fuzz_target!(|data: &[u8]| {
    let mut p = DhcpParams::new(Ipv4Addr::new(10, 0, 0, 1), "10.0.0.0/24".parse().unwrap());
    p.pool = Some((Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(10, 0, 0, 103)));
    p.domain = Some("lab.test".into());
    p.search = vec!["lab.test".into()];
    p.routes = vec![(
        "192.168.0.0/16".parse().unwrap(),
        Ipv4Addr::new(10, 0, 0, 2),
    )];
    p.mtu = Some(1400);
    let mut s = DhcpServer::new(p).unwrap();
    let half = data.len() / 2;
    for (i, msg) in [&data[..half], &data[half..], data].into_iter().enumerate() {
        let port = i as u16;
        if let Ok(out) = s.process(msg, port, 1_700_000_000 + i as u64) {
            if let Some(reply) = out.reply {
                assert_eq!(reply.port, port);
                let m = Message::decode(&mut Decoder::new(&reply.payload)).expect("reply decodes");
                assert_eq!(m.opcode(), Opcode::BootReply);
            }
        }
    }
});
