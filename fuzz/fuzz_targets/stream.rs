//! QEMU's stream framing as a stream port reassembles it: the input is cut into reads of sizes
//! taken from its first bytes, and the frames that come out must be exactly those a one-pass
//! parse of the whole input finds, stopping at the same bad length. Never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::port::socket::{FrameReassembler, MAX_FRAME};

/// The frames of `wire` parsed in one pass, and whether a bad length ended it.
fn reference(wire: &[u8]) -> (Vec<Vec<u8>>, bool) {
    let (mut out, mut at) = (Vec::new(), 0);
    while wire.len() - at >= 4 {
        let len = u32::from_be_bytes(wire[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 || len > MAX_FRAME {
            return (out, true);
        }
        if wire.len() - at - 4 < len {
            break;
        }
        out.push(wire[at + 4..at + 4 + len].to_vec());
        at += 4 + len;
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cuts, rest)) = data.split_first() else {
        return;
    };
    let (sizes, wire) = rest.split_at(usize::from(cuts).min(rest.len()));
    let mut r = FrameReassembler::new();
    let (mut got, mut bad, mut at, mut i) = (Vec::new(), false, 0, 0);
    'feed: loop {
        loop {
            match r.next_frame() {
                Ok(Some(f)) => got.push(f.to_vec()),
                Ok(None) => break,
                Err(_) => {
                    bad = true;
                    break 'feed;
                }
            }
        }
        if at == wire.len() {
            break;
        }
        let want = sizes.get(i).map_or(wire.len(), |&s| usize::from(s) + 1);
        i += 1;
        let space = r.space();
        assert!(!space.is_empty());
        let n = want.min(space.len()).min(wire.len() - at);
        space[..n].copy_from_slice(&wire[at..at + n]);
        r.filled(n);
        at += n;
    }
    assert_eq!((got, bad), reference(wire));
});
