//! quiltd's parser of the `Signature-Input` and `Signature` fields (and
//! the profile check and `Content-Digest` parser behind it), which every
//! unauthenticated peer reaches: it must refuse or parse, never panic; a
//! parsed signature's inputs re-serialize to something that parses to the
//! same value; building the signature base never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use quilt_gateway_auth::sig::{signature_base, Message, Signature};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The two fields, split at the first newline.
    let (input, signature) = text.split_once('\n').unwrap_or((&text, ""));
    let _ = quilt_gateway_auth::digest::check(input, data);
    if let Ok(s) = Signature::parse(input, signature) {
        let again = format!("{}={}", s.label, s.covered.serialize());
        let s2 = Signature::parse(&again, signature).expect("a parsed input re-serializes");
        assert_eq!(s2.covered, s.covered);
        let _ = quilt_gateway_auth::profile::check(&s.covered);
        let headers = [("content-digest", "sha-256=:AA==:"), ("date", "x")];
        let m = Message {
            method: "GET",
            authority: Some("b"),
            path: "/",
            query: None,
            headers: &headers,
        };
        let _ = signature_base(&s.covered, &m);
        let _ = s.verify(&m, &[0; 32]);
    }
});
