//! What a gateway client (`quilt call`, later `quilt mcp`) and `quiltd`
//! agree on, so both sides use one implementation and never a copy:
//!
//! - [`sig`]: HTTP Message Signatures (RFC 9421) for `ed25519`: parsing
//!   `Signature-Input`/`Signature`, the signature base, signing, verifying;
//! - [`profile`]: which components and parameters a gateway request must
//!   cover, and signing a request that way;
//! - [`digest`]: `Content-Digest` (RFC 9530, `sha-256`);
//! - [`fingerprint`]: the board key's fingerprint clients pin;
//! - [`keys`]: client key files and their public form.
//!
//! Pure: no I/O and no clock (callers pass the time), so a fuzzer and unit
//! tests drive it directly. Freshness, replay and roles are policy and
//! belong to the server (`quiltd`).

pub mod digest;
pub mod fingerprint;
pub mod keys;
pub mod profile;
pub mod sig;
