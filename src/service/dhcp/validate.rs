//! Pre-decode validation of DHCPv4 option lengths.
//!
//! # Theory of operation
//!
//! dhcproto 0.15 trusts some option lengths: it `debug_assert!`s on 80 (rapid commit, len 0),
//! 94 (len 3), 91 and 152-155 (len 4), and subtracts from the length of 81 (client FQDN, len >= 3)
//! and 151 (BLQ status, len >= 1), which underflows. A peer's bytes must never panic the switch, so
//! [`check_options`] walks the raw option area first, merges consecutive same-code options the
//! way dhcproto does (RFC 3396 concatenation: a run of one code, broken by Pad or another code),
//! and rejects a message whose merged lengths are wrong. It also rejects a message whose option
//! area overruns the buffer. Only then is the message handed to dhcproto.

/// The fixed BOOTP header (236 bytes) plus the 4-byte magic cookie.
pub const OPTIONS_OFFSET: usize = 240;
/// RFC 2131 §3: the magic cookie that starts the options.
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

const PAD: u8 = 0;
const END: u8 = 255;

/// Why a message was refused before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than the BOOTP header and the cookie.
    Short,
    /// The magic cookie is not 99.130.83.99.
    BadCookie,
    /// An option's length runs past the end of the buffer.
    Truncated,
    /// An option (by code) whose merged length dhcproto cannot decode safely.
    BadLength(u8),
}

/// Is `len` (the merged length of a run of option `code`) safe to give to dhcproto?
fn length_ok(code: u8, len: usize) -> bool {
    match code {
        80 => len == 0,             // rapid commit
        81 => len >= 3,             // client FQDN: flags, rcode1, rcode2, name
        91 | 152..=155 => len == 4, // u32 times
        92 => len % 4 == 0,         // associated-ip list
        93 => len == 2,             // client system architecture
        94 => len == 3,             // client network interface
        151 => len >= 1,            // BLQ status code
        _ => true,
    }
}

/// Checks the header, the cookie and every option length of `payload`.
pub fn check_options(payload: &[u8]) -> Result<(), Malformed> {
    if payload.len() < OPTIONS_OFFSET {
        return Err(Malformed::Short);
    }
    if payload[236..OPTIONS_OFFSET] != MAGIC_COOKIE {
        return Err(Malformed::BadCookie);
    }
    let opts = &payload[OPTIONS_OFFSET..];
    let mut i = 0;
    // The run being merged: (code, total length).
    let mut run: Option<(u8, usize)> = None;
    while i < opts.len() {
        let code = opts[i];
        if code == PAD || code == END {
            if let Some((c, l)) = run.take() {
                if !length_ok(c, l) {
                    return Err(Malformed::BadLength(c));
                }
            }
            if code == END {
                return Ok(());
            }
            i += 1;
            continue;
        }
        let len = *opts.get(i + 1).ok_or(Malformed::Truncated)? as usize;
        if i + 2 + len > opts.len() {
            return Err(Malformed::Truncated);
        }
        run = match run {
            Some((c, l)) if c == code => Some((c, l + len)),
            Some((c, l)) => {
                if !length_ok(c, l) {
                    return Err(Malformed::BadLength(c));
                }
                Some((code, len))
            }
            None => Some((code, len)),
        };
        i += 2 + len;
    }
    match run {
        Some((c, l)) if !length_ok(c, l) => Err(Malformed::BadLength(c)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_opts(opts: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; 236];
        v.extend_from_slice(&MAGIC_COOKIE);
        v.extend_from_slice(opts);
        v
    }

    #[test]
    fn rejects_the_lengths_dhcproto_asserts_on() {
        assert_eq!(
            check_options(&with_opts(&[80, 1, 0, 255])),
            Err(Malformed::BadLength(80))
        );
        assert_eq!(
            check_options(&with_opts(&[81, 2, 0, 0, 255])),
            Err(Malformed::BadLength(81))
        );
        assert_eq!(
            check_options(&with_opts(&[91, 3, 0, 0, 0])),
            Err(Malformed::BadLength(91))
        );
        assert_eq!(
            check_options(&with_opts(&[94, 2, 0, 0, 255])),
            Err(Malformed::BadLength(94))
        );
        assert_eq!(
            check_options(&with_opts(&[151, 0, 255])),
            Err(Malformed::BadLength(151))
        );
        assert_eq!(check_options(&with_opts(&[80, 0, 255])), Ok(()));
        // Two consecutive 81s of 2 bytes merge into 4: accepted, as dhcproto merges them too.
        assert_eq!(
            check_options(&with_opts(&[81, 2, 0, 0, 81, 2, 0, 0, 255])),
            Ok(())
        );
        // ... but a Pad breaks the run.
        assert_eq!(
            check_options(&with_opts(&[81, 2, 0, 0, 0, 81, 2, 0, 0, 255])),
            Err(Malformed::BadLength(81))
        );
    }

    #[test]
    fn rejects_short_bad_cookie_and_overrun() {
        assert_eq!(check_options(&[0u8; 100]), Err(Malformed::Short));
        assert_eq!(check_options(&[0u8; 240]), Err(Malformed::BadCookie));
        assert_eq!(
            check_options(&with_opts(&[53, 1])),
            Err(Malformed::Truncated)
        );
        assert_eq!(check_options(&with_opts(&[53])), Err(Malformed::Truncated));
    }
}
