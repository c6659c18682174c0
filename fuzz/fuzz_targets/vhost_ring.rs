//! A vhost-user port's ring code on random memory maps, ring layouts, features and guest
//! memory contents (descriptor tables, avail rings, buffers): frames are taken from the TX
//! ring and given to the RX ring until the port stops. Never panics, never reads outside the
//! map; a bad descriptor stops the port (the harness asserts it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::port::vhost_user::fuzzing;

fuzz_target!(|data: &[u8]| {
    fuzzing::run(data);
});
