//! Unit tests of the socket ports: the reassembly against a one-pass parse, offloaded frames
//! made plain, and a stream port driven by a real unix socket pair (bytewise input, a bad length,
//! a peer that does not read).

use super::*;

fn frame(len: usize, fill: u8) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend(std::iter::repeat_n(fill, len));
    f
}

/// A directory of its own for one test, removed when dropped.
struct TmpDir(PathBuf);

impl TmpDir {
    fn new(test: &str) -> TmpDir {
        let dir = std::env::temp_dir().join(format!("sy-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TmpDir(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The internet checksum of `b` (RFC 1071), summed 16 bits at a time.
fn rfc1071(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4/UDP frame with a partial checksum, as a veth hands it to a packet socket: the
/// checksum field holds the pseudo-header sum, `NEEDS_CSUM` says where to finish.
fn partial_udp(payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut f = frame(0, 0);
    f[0] = crate::wire::VnetHeader::F_NEEDS_CSUM;
    f[6..8].copy_from_slice(&34u16.to_le_bytes()); // csum_start: the UDP header
    f[8..10].copy_from_slice(&6u16.to_le_bytes()); // csum_offset: UDP's checksum field
    f.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 2, 0x52, 0x54, 0, 0, 0, 1, 0x08, 0]);
    let mut ip = vec![
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    ip[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    let ip_csum = rfc1071(&ip);
    ip[10..12].copy_from_slice(&ip_csum.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut pseudo: u32 = 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 17 + udp_len as u32;
    while pseudo > 0xffff {
        pseudo = (pseudo & 0xffff) + (pseudo >> 16);
    }
    f.extend_from_slice(&[0x30, 0x39, 0, 9]);
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&(pseudo as u16).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[test]
fn offloaded_frames_are_made_plain_or_refused() {
    let mut scratch = Vec::new();
    let mut got = Vec::new();
    let plain = frame(60, 7);
    for_each_plain_frame(&plain, 1500, &mut scratch, |f| {
        got.push(f.to_vec());
        Ok(())
    })
    .unwrap();
    assert_eq!(got, vec![plain[VNET_HDR_LEN..].to_vec()]);
    assert!(scratch.is_empty(), "no scratch for a plain frame");

    got.clear();
    let partial = partial_udp(b"switchyard");
    for_each_plain_frame(&partial, 1500, &mut scratch, |f| {
        got.push(f.to_vec());
        Ok(())
    })
    .unwrap();
    let out = &got[0];
    assert_eq!(out.len(), partial.len() - VNET_HDR_LEN);
    // The sum over pseudo-header + UDP header + payload of a correct checksum folds to 0.
    let mut check = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 17, 0, 18];
    check.extend_from_slice(&out[34..]);
    assert_eq!(rfc1071(&check), 0, "checksum completed");

    let mut gso_bad = frame(60, 7);
    gso_bad[1] = 1; // TCPv4 GSO on a frame that is not IPv4
    let e = for_each_plain_frame(&gso_bad, 1500, &mut scratch, |_| Ok(())).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::Unsupported);
    assert!(for_each_plain_frame(&[0; 3], 1500, &mut scratch, |_| Ok(())).is_err());
}

/// QEMU-framed bytes for `frames`.
fn framed(frames: &[Vec<u8>]) -> Vec<u8> {
    frames
        .iter()
        .flat_map(|f| (f.len() as u32).to_be_bytes().into_iter().chain(f.clone()))
        .collect()
}

/// Feeds `wire` to a reassembler in chunks of the sizes `chunk` yields; returns the frames
/// and whether a bad length stopped it.
fn reassemble(wire: &[u8], mut chunk: impl FnMut() -> usize) -> (Vec<Vec<u8>>, bool) {
    let mut r = FrameReassembler::new();
    let (mut out, mut at) = (Vec::new(), 0);
    loop {
        loop {
            match r.next_frame() {
                Ok(Some(f)) => out.push(f.to_vec()),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
        if at == wire.len() {
            return (out, false);
        }
        let space = r.space();
        let n = chunk().clamp(1, space.len()).min(wire.len() - at);
        space[..n].copy_from_slice(&wire[at..at + n]);
        r.filled(n);
        at += n;
    }
}

#[test]
fn reassembly_does_not_depend_on_how_the_bytes_were_cut() {
    let frames: Vec<Vec<u8>> = [60, 1514, MAX_FRAME, 1, 9000, MAX_FRAME, 64]
        .iter()
        .enumerate()
        .map(|(i, &n)| vec![i as u8 + 1; n])
        .collect();
    let wire = framed(&frames);
    let mut seed = 0x2545_f491_u32;
    for max in [1usize, 3, 4, 5, 1000, 70_000, usize::MAX] {
        let (got, bad) = reassemble(&wire, || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed as usize % max.min(200_000)) + 1
        });
        assert!(!bad);
        assert_eq!(got, frames, "chunks up to {max}");
    }
    let mut bad_wire = framed(&frames[..2]);
    bad_wire.extend_from_slice(&((MAX_FRAME + 1) as u32).to_be_bytes());
    bad_wire.extend_from_slice(&framed(&frames[2..3]));
    let (got, bad) = reassemble(&bad_wire, || 7);
    assert!(bad);
    assert_eq!(got, frames[..2].to_vec());
    let (got, bad) = reassemble(&[0, 0, 0, 0], || 1);
    assert!(bad && got.is_empty(), "a zero length is bad too");
}

#[test]
fn stream_reassembles_byte_by_byte() {
    let dir = TmpDir::new("s1");
    let path = dir.join("s1.sock");
    let port = StreamPort::open(&path, 1500).unwrap();
    let mut buf = vec![0u8; VNET_HDR_LEN + 2000];
    assert_eq!(
        port.recv(&mut buf).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    let mut client = UnixStream::connect(&path).unwrap();
    assert!(port.recv(&mut buf).is_err(), "accepts, nothing whole yet");
    assert!(port.link().is_up());
    let mut wire = 100u32.to_be_bytes().to_vec();
    wire.extend(std::iter::repeat_n(9u8, 100));
    for b in &wire {
        client.write_all(&[*b]).unwrap();
        if let Ok(n) = port.recv(&mut buf) {
            assert_eq!(n, VNET_HDR_LEN + 100);
            assert!(buf[..VNET_HDR_LEN].iter().all(|&b| b == 0));
            assert!(buf[VNET_HDR_LEN..n].iter().all(|&b| b == 9));
            return;
        }
    }
    panic!("the frame never came out whole");
}

#[test]
fn stream_output_is_queued_whole_and_bounded() {
    let dir = TmpDir::new("s3");
    let path = dir.join("s3.sock");
    let port = StreamPort::open(&path, 1500).unwrap();
    let mut buf = vec![0u8; VNET_HDR_LEN + 2000];
    let mut client = UnixStream::connect(&path).unwrap();
    let _ = port.recv(&mut buf);
    // The client reads nothing: the socket fills, then the queue, then frames are refused.
    let out = frame(1400, 5);
    let (mut sent, mut refused) = (0usize, 0usize);
    for _ in 0..2000 {
        match port.send(&out) {
            Ok(_) => sent += 1,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(sent > 0 && refused > 0, "sent {sent} refused {refused}");
    // Drain the client side while the port flushes: every frame arrives whole, in order.
    client.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 65536];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while got.len() < sent * (LEN_PREFIX + 1400) {
        assert!(
            std::time::Instant::now() < deadline,
            "stalled at {}",
            got.len()
        );
        let _ = port.recv(&mut buf);
        match client.read(&mut chunk) {
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got.len(), sent * (LEN_PREFIX + 1400));
    for f in got.chunks(LEN_PREFIX + 1400) {
        assert_eq!(&f[..LEN_PREFIX], &1400u32.to_be_bytes());
        assert!(f[LEN_PREFIX..].iter().all(|&b| b == 5));
    }
}

#[test]
fn stream_bad_length_disconnects() {
    let dir = TmpDir::new("s2");
    let path = dir.join("s2.sock");
    let port = StreamPort::open(&path, 1500).unwrap();
    let mut buf = vec![0u8; VNET_HDR_LEN + 2000];
    let mut client = UnixStream::connect(&path).unwrap();
    let _ = port.recv(&mut buf);
    client.write_all(&0x0010_0000u32.to_be_bytes()).unwrap();
    let _ = port.recv(&mut buf);
    assert!(!port.link().is_up());
    let r = port.link().take().unwrap();
    assert_eq!((r.bad_lengths, r.downs), (1, 1));
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "the switch closed its end");
    drop(port);
    assert!(!path.exists(), "socket file removed on drop");
}
