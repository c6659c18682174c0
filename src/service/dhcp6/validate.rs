//! What a DHCPv6 client message must look like before `dhcproto` may decode it.
//!
//! Threat: `dhcproto` 0.15's v6 decoder subtracts fixed sizes from option lengths without
//! checking them (status code `len - 2`, vendor class and vendor options `len - 4`,
//! authentication `len - 11`): a short option is an arithmetic overflow, a panic in a debug
//! build and a huge slice request in a release one. It also recurses into relay messages and
//! IA options. So every message is walked here first, with the lengths checked against each
//! option's fixed part, the nesting bounded, and the options counted; only a message that
//! passes is handed to the decoder. What is refused is a counted drop, never an `Err` that
//! travels up.

/// Largest message accepted (a client message is a few hundred bytes).
pub const MAX_MESSAGE_LEN: usize = 1500;
/// Most options in the whole message, nested ones included.
const MAX_OPTIONS: usize = 64;
/// IA_NA → IA_ADDR → status code: three levels are all a client uses.
const MAX_DEPTH: usize = 3;
/// A DUID is at most 128 bytes (RFC 8415 §11.1).
const MAX_DUID_LEN: usize = 128;

/// Client message types (RFC 8415 §7.3) the server reads.
const CLIENT_TYPES: [u8; 8] = [1, 3, 4, 5, 6, 8, 9, 11];

/// Why a message was refused before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    Length,
    NotClientMessage,
    OptionLength(u16),
    /// A relay message (option 9): relays are not served.
    Relay,
    TooManyOptions,
    TooDeep,
}

/// Checks `msg` (the UDP payload) as described in the module doc.
pub fn validate(msg: &[u8]) -> Result<(), Invalid> {
    if msg.len() < 4 || msg.len() > MAX_MESSAGE_LEN {
        return Err(Invalid::Length);
    }
    if !CLIENT_TYPES.contains(&msg[0]) {
        return Err(Invalid::NotClientMessage);
    }
    let mut count = 0;
    walk(&msg[4..], 1, &mut count)
}

/// The fixed part of option `code` before its nested options (if it has any), and whether
/// its length must be exactly the fixed part, at least it, or a multiple of a unit.
fn check_option(code: u16, len: usize) -> Result<Option<usize>, Invalid> {
    let bad = Err(Invalid::OptionLength(code));
    let nested = match code {
        1 | 2 if (1..=MAX_DUID_LEN + 2).contains(&len) => None,
        3 if len >= 12 => Some(12), // IA_NA: IAID, T1, T2
        4 if len >= 4 => Some(4),   // IA_TA: IAID
        5 if len >= 24 => Some(24), // IA_ADDR: address, lifetimes
        6 if len % 2 == 0 => None,  // ORO
        7 if len == 1 => None,      // preference
        8 if len == 2 => None,      // elapsed time
        9 => return Err(Invalid::Relay),
        11 if len >= 11 => None,     // authentication
        12 if len == 16 => None,     // server unicast
        13 if len >= 2 => None,      // status code
        14 | 20 if len == 0 => None, // rapid commit, reconfigure accept
        15 => None,                  // user class: the decoder stops at a short item
        16 if len >= 4 => None,      // vendor class
        17 if len >= 4 => Some(4),   // vendor options
        19 if len == 1 => None,      // reconfigure message
        23 if len % 16 == 0 => None, // DNS servers
        25 if len >= 12 => Some(12), // IA_PD
        26 if len >= 25 => Some(25), // IA prefix
        32 if len == 4 => None,      // information refresh time
        56 | 61 if len % 2 == 0 => None,
        1..=26 | 32 | 56 | 61 => return bad,
        _ => None, // unknown to the decoder: kept as raw bytes
    };
    Ok(nested)
}

fn walk(mut opts: &[u8], depth: usize, count: &mut usize) -> Result<(), Invalid> {
    if depth > MAX_DEPTH {
        return Err(Invalid::TooDeep);
    }
    while !opts.is_empty() {
        if opts.len() < 4 {
            return Err(Invalid::Length);
        }
        *count += 1;
        if *count > MAX_OPTIONS {
            return Err(Invalid::TooManyOptions);
        }
        let code = u16::from_be_bytes([opts[0], opts[1]]);
        let len = usize::from(u16::from_be_bytes([opts[2], opts[3]]));
        let body = opts.get(4..4 + len).ok_or(Invalid::OptionLength(code))?;
        if let Some(fixed) = check_option(code, len)? {
            walk(&body[fixed..], depth + 1, count)?;
        }
        if code == 56 {
            // NTP suboptions: each 4 bytes of header and its length.
            let mut sub = body;
            while !sub.is_empty() {
                let l = sub
                    .get(2..4)
                    .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
                sub = l
                    .and_then(|l| sub.get(4 + l..))
                    .ok_or(Invalid::OptionLength(code))?;
            }
        }
        opts = &opts[4 + len..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(code: u16, body: &[u8]) -> Vec<u8> {
        let mut o = code.to_be_bytes().to_vec();
        o.extend_from_slice(&(body.len() as u16).to_be_bytes());
        o.extend_from_slice(body);
        o
    }

    fn msg(kind: u8, opts: &[Vec<u8>]) -> Vec<u8> {
        let mut m = vec![kind, 1, 2, 3];
        for o in opts {
            m.extend_from_slice(o);
        }
        m
    }

    #[test]
    fn the_decoder_never_sees_what_would_panic_it() {
        let duid = opt(1, &[0, 3, 0, 1, 0x52, 0x54, 0, 0, 0, 9]);
        let iaaddr = opt(5, &[0; 24]);
        let mut ia = vec![0; 12];
        ia.extend_from_slice(&iaaddr);
        let good = msg(
            1,
            &[duid.clone(), opt(3, &ia), opt(8, &[0, 0]), opt(6, &[0, 23])],
        );
        assert_eq!(validate(&good), Ok(()));
        for (bad, why) in [
            (msg(1, &[opt(13, &[0])]), Invalid::OptionLength(13)),
            (msg(1, &[opt(16, &[0, 0])]), Invalid::OptionLength(16)),
            (msg(1, &[opt(17, &[0])]), Invalid::OptionLength(17)),
            (msg(1, &[opt(11, &[0; 5])]), Invalid::OptionLength(11)),
            (msg(1, &[opt(3, &[0; 8])]), Invalid::OptionLength(3)),
            (msg(1, &[opt(9, &[1, 2, 3, 4])]), Invalid::Relay),
            (
                msg(2, std::slice::from_ref(&duid)),
                Invalid::NotClientMessage,
            ),
            (msg(12, &[]), Invalid::NotClientMessage),
            (msg(1, &[opt(1, &[])]), Invalid::OptionLength(1)),
            (
                msg(1, &[opt(56, &[0, 1, 0, 16])]),
                Invalid::OptionLength(56),
            ),
        ] {
            assert_eq!(validate(&bad), Err(why), "{bad:?}");
        }
        // A length past the end, a torn option header.
        let mut torn = good.clone();
        torn.extend_from_slice(&[0, 1, 0, 50, 1]);
        assert_eq!(validate(&torn), Err(Invalid::OptionLength(1)));
        torn.truncate(good.len() + 2);
        assert_eq!(validate(&torn), Err(Invalid::Length));
        // Too deep: IA_NA in IA_ADDR in IA_NA in IA_NA.
        let mut inner = vec![0; 12];
        inner.extend_from_slice(&opt(5, &[0; 24]));
        let mut deep = opt(3, &inner);
        for _ in 0..3 {
            let mut wrap = vec![0; 12];
            wrap.extend_from_slice(&deep);
            deep = opt(3, &wrap);
        }
        assert_eq!(validate(&msg(1, &[deep])), Err(Invalid::TooDeep));
        let many: Vec<Vec<u8>> = (0..65).map(|_| opt(8, &[0, 0])).collect();
        assert_eq!(validate(&msg(1, &many)), Err(Invalid::TooManyOptions));
    }
}
