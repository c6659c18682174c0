use super::*;

#[test]
fn request_round_trips() {
    let reqs = [
        Command::Ports,
        Command::Stats { port: None },
        Command::Stats {
            port: Some("vm1".into()),
        },
        Command::Allow {
            port: "vm1".into(),
            net: "10.0.0.5".into(),
        },
        Command::HostAdd(HostAdd {
            name: "vm4".into(),
            mac: "52:54:00:00:00:04".into(),
            ipv4: "10.0.0.4".into(),
            extra_ipv4: vec!["10.0.0.64/28".into()],
            port: Some("p4".into()),
        }),
        Command::PortAdd(NewPort {
            name: "p5".into(),
            kind: "tap".into(),
            netns: Some("ns5".into()),
            trusted: true,
            ..NewPort::default()
        }),
        Command::Capture {
            port: "vm1".into(),
            count: Some(3),
        },
        Command::Reload { prune: false },
        Command::Reload { prune: true },
        Command::Services,
        Command::Why { port: "vm1".into() },
    ];
    for command in reqs {
        let req = Request {
            version: PROTOCOL_VERSION,
            command,
        };
        let line = serde_json::to_vec(&req).unwrap();
        assert_eq!(parse_request(&line).unwrap(), req);
    }
    let line = br#"{"version":1,"command":"ports"}"#;
    assert_eq!(parse_request(line).unwrap().command, Command::Ports);
    let line = br#"{"version":1,"command":"reload"}"#;
    assert_eq!(
        parse_request(line).unwrap().command,
        Command::Reload { prune: false }
    );
}

#[test]
fn bad_requests_get_the_right_kind() {
    let kind = |line: &[u8]| parse_request(line).unwrap_err().kind;
    assert_eq!(kind(b"garbage"), ErrorKind::BadRequest);
    assert_eq!(kind(b"\xff\xfe"), ErrorKind::BadRequest);
    assert_eq!(kind(b"[1,2]"), ErrorKind::BadRequest);
    assert_eq!(kind(br#"{"command":"ports"}"#), ErrorKind::Version);
    assert_eq!(
        kind(br#"{"version":0,"command":"ports"}"#),
        ErrorKind::Version
    );
    assert_eq!(
        kind(br#"{"version":2,"command":"ports"}"#),
        ErrorKind::Version
    );
    assert_eq!(
        kind(br#"{"version":"1","command":"ports"}"#),
        ErrorKind::Version
    );
    assert_eq!(kind(br#"{"version":1}"#), ErrorKind::BadRequest);
    assert_eq!(
        kind(br#"{"version":1,"command":"format_disk"}"#),
        ErrorKind::UnknownCommand
    );
    assert_eq!(
        kind(br#"{"version":1,"command":"allow","port":"vm1"}"#),
        ErrorKind::BadArgument
    );
    assert_eq!(
        kind(br#"{"version":1,"command":"ports","extra":1}"#),
        ErrorKind::BadArgument
    );
    assert_eq!(ErrorKind::UnknownCommand.to_string(), "unknown_command");
    let huge = vec![b' '; MAX_REQUEST];
    assert_eq!(kind(&huge), ErrorKind::TooLarge);
}

#[test]
fn replies_round_trip() {
    for reply in [
        Reply::ok(Body::Done("ok".into())),
        Reply::error(ErrorKind::Version, "no"),
        Reply::ok(Body::CaptureEnd {
            frames: 3,
            dropped: 1,
        }),
        Reply::ok(Body::Services(ServiceStats {
            dhcp: Some(vec![("leases".into(), 2), ("drop.malformed".into(), 0)]),
            dns: None,
            dhcp6: Some(vec![("leases".into(), 1)]),
        })),
    ] {
        let line = reply.to_line();
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        assert_eq!(serde_json::from_str::<Reply>(&line).unwrap(), reply);
    }
}

#[test]
fn hex_round_trips() {
    let bytes = [0u8, 1, 0x7f, 0x80, 0xff];
    assert_eq!(to_hex(&bytes), "00017f80ff");
    assert_eq!(from_hex(&to_hex(&bytes)).unwrap(), bytes);
    assert_eq!(from_hex("abc"), None);
    assert_eq!(from_hex("zz"), None);
}
