//! stub (filled below)
pub mod error;
pub mod io;
pub mod trustdir;
pub use error::StoreError;
