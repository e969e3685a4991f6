//! Lower-case hex, for key files, ids and messages (no allocation-free need here).

use alloc::string::String;

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Encodes bytes as lower-case hex.
pub fn encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 0xf] {
            if let Some(&d) = DIGITS.get(usize::from(nibble)) {
                s.push(char::from(d));
            }
        }
    }
    s
}

fn value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes exactly `N` bytes of hex; `None` on a wrong length or digit.
pub fn decode_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let (hi, lo) = (pair.first()?, pair.get(1)?);
        *o = (value(*hi)? << 4) | value(*lo)?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        let s = super::encode(&[0x00, 0x3f, 0xa2, 0xff]);
        assert_eq!(s, "003fa2ff");
        assert_eq!(super::decode_array::<4>(&s), Some([0x00, 0x3f, 0xa2, 0xff]));
        assert_eq!(super::decode_array::<4>("003fa2f"), None);
        assert_eq!(super::decode_array::<2>("zz00"), None);
    }
}
