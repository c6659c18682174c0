//! Control socket requests: any bytes give a request or a typed error, never a panic; a parsed
//! request serializes back to a line that parses to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::control::protocol::{parse_request, Reply};

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Ok(req) => {
            let line = serde_json::to_vec(&req).expect("a request serializes");
            assert_eq!(parse_request(&line).expect("round trip"), req);
        }
        Err(e) => {
            let reply = Reply::error(e.kind, e.message).to_line();
            assert!(reply.ends_with('\n'));
            assert_eq!(reply.matches('\n').count(), 1, "one reply, one line");
        }
    }
});
