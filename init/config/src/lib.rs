//! Boot configuration of `quilt-init`.
//!
//! The board carries a small binary file (`/etc/quilt/boot.bin`): a magic,
//! a format version and a postcard body. Every field has a fixed capacity
//! (`heapless`), so decoding it in PID 1 never allocates and a hostile or
//! corrupt file can only be refused, never make init grow. The host compiles
//! it from TOML (`quilt config compile`, feature `toml`) and runs the same
//! [`BootConfig::validate`] that init runs again after decoding.
//!
//! No I/O here: init, the host tool and the fuzzer all share this code.
#![cfg_attr(not(feature = "std"), no_std)]

mod codec;
mod model;
#[cfg(feature = "toml")]
mod source;
mod validate;

pub use codec::{decode, encode, DecodeError, MAGIC, VERSION};
pub use model::*;
#[cfg(feature = "toml")]
pub use source::{compile, CompileError};
pub use validate::{start_order, ConfigError, StartOrder};
