//! Memory helpers for the data plane: a zeroed atomic table and a cache prefetch hint. No I/O.
//!
//! Both need unchecked code inside (an allocation from the zeroed allocator turned into a
//! boxed slice; the x86_64 prefetch intrinsic), and by the crate's rule all such code lives in
//! `port/sys.rs`, each block with its SAFETY comment. Their interfaces are safe; this module is their
//! neutral name, so that `switch` reaches them without importing anything from `port`, whose
//! other contents are system calls.

pub(crate) use crate::port::sys::{prefetch, zeroed_atomic_u64s};
