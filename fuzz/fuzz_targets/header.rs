//! The header decoder and the envelope parsers: arbitrary bytes must give a
//! header or an error, never a panic; a decoded header re-encodes to the
//! same bytes (the decoder accepts one encoding per header).
#![no_main]

use libfuzzer_sys::fuzz_target;
use quilt_bundle::envelope::{Envelope, MAGIC_BUNDLE, MAGIC_PERMIT, MAGIC_TRUST};
use quilt_bundle::{Context, Header, Policy, PublicKey, Trust};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Header::decode(data) {
        assert_eq!(h.encode().unwrap(), data);
    }
    for magic in [&MAGIC_BUNDLE, &MAGIC_TRUST, &MAGIC_PERMIT] {
        let _ = Envelope::parse(magic, "fuzz", data);
    }
    let trust = Trust::new(vec![PublicKey([9; 32])], Policy::default()).unwrap();
    let _ = trust.apply_update(data, &Context::default());
    let _ = trust.verify_permit(data, &Context::default());
    if let Ok(text) = core::str::from_utf8(data) {
        if let Ok(p) = Policy::parse(text) {
            assert_eq!(Policy::parse(&p.to_text()).unwrap(), p);
        }
        let _ = PublicKey::from_file(text);
    }
});
