//! The control socket's frame decoder, as quilt-init runs it on every
//! message a client sends: it must refuse or decode, never panic, and a
//! decoded request must re-encode to the same frame (one encoding only).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = quilt_proto::decode_request(data) {
        let again = quilt_proto::encode_request(&req).expect("a decoded request re-encodes");
        assert_eq!(quilt_proto::decode_request(&again).as_ref(), Ok(&req));
    }
    let _ = quilt_proto::decode_reply(data);
});
