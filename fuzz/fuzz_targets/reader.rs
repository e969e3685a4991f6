//! The streaming `.qb` reader over arbitrary bytes, fed in fuzzer-chosen
//! read sizes. Anything may fail; nothing may panic, and nothing may be
//! read past the end the reader is entitled to. Seeds with a valid signed
//! bundle so mutations reach the manifest and chunk checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quilt_bundle::{BundleReader, Context, Policy, SecretKey, Source, SourceError, Trust, CHUNK_MAX};

/// Serves `data` in pieces whose sizes come from `steps`.
struct Choppy<'a> {
    data: &'a [u8],
    steps: &'a [u8],
    i: usize,
}

impl Source for Choppy<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, SourceError> {
        let step = self.steps.get(self.i % self.steps.len().max(1)).copied().unwrap_or(255);
        self.i += 1;
        let n = buf.len().min(self.data.len()).min(usize::from(step) * 37 + 1);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|input: &[u8]| {
    let (steps, data) = input.split_at(input.len().min(4));
    let key = SecretKey::from_seed([7; 32]);
    let trust = Trust::new(vec![key.public()], Policy::default()).unwrap();
    let mut buf = vec![0u8; CHUNK_MAX as usize];
    for verified in [true, false] {
        let src = Choppy { data, steps, i: 0 };
        let opened = if verified {
            BundleReader::open(src, &trust, &Context::default())
        } else {
            BundleReader::open_unverified(src)
        };
        if let Ok(mut r) = opened {
            let _ = r.verify_rest(&mut buf);
        }
    }
});
