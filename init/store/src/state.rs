//! The store's persisted state: which bundle is installed under each name,
//! the highest version ever installed per name (rollback protection), the
//! last downgrade-permit sequence used per name (permit replay), and the
//! trust store after any rotation. It is one file, replaced atomically:
//! writing it is the single commit step of every install, removal and
//! rotation.
//!
//! File layout: `QSTATE01`, postcard body, SHA3-256 leaf hash of the body
//! (32 bytes) so a torn or rotted file is detected rather than trusted.

use quilt_bundle::{hash, Hash, Trust};
use serde::{Deserialize, Serialize};

const MAGIC: [u8; 8] = *b"QSTATE01";

/// One installed bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    pub name: String,
    pub version: u64,
    pub root: Hash,
}

/// Everything the store persists besides chunks and records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub installed: Vec<Installed>,
    /// Highest version ever installed, per name; never decreases.
    pub highest: Vec<(String, u64)>,
    /// Root of the bundle that set `highest`, per name (so the same bundle
    /// can come back after a permitted downgrade).
    pub highest_root: Vec<(String, Hash)>,
    /// Last downgrade-permit sequence used, per name.
    pub permit_seq: Vec<(String, u64)>,
    /// Trust after a rotation; `None` means the image's trust dir.
    pub trust: Option<Trust>,
}

fn get(list: &[(String, u64)], name: &str) -> Option<u64> {
    list.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

fn set(list: &mut Vec<(String, u64)>, name: &str, v: u64) {
    match list.iter_mut().find(|(n, _)| n == name) {
        Some(e) => e.1 = v,
        None => list.push((name.to_string(), v)),
    }
}

impl State {
    pub fn highest(&self, name: &str) -> Option<u64> {
        get(&self.highest, name)
    }
    pub fn set_highest(&mut self, name: &str, v: u64, root: Hash) {
        set(&mut self.highest, name, v);
        match self.highest_root.iter_mut().find(|(n, _)| n == name) {
            Some(e) => e.1 = root,
            None => self.highest_root.push((name.to_string(), root)),
        }
    }
    pub fn highest_root(&self, name: &str) -> Option<Hash> {
        self.highest_root
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| *r)
    }
    pub fn permit_seq(&self, name: &str) -> u64 {
        get(&self.permit_seq, name).unwrap_or(0)
    }
    pub fn set_permit_seq(&mut self, name: &str, v: u64) {
        set(&mut self.permit_seq, name, v);
    }
    pub fn installed(&self, name: &str) -> Option<&Installed> {
        self.installed.iter().find(|i| i.name == name)
    }
    pub fn set_installed(&mut self, i: Installed) {
        self.installed.retain(|x| x.name != i.name);
        self.installed.push(i);
        self.installed.sort_by(|a, b| a.name.cmp(&b.name));
    }

    pub fn encode(&self) -> Option<Vec<u8>> {
        let body = postcard::to_allocvec(self).ok()?;
        let mut out = Vec::with_capacity(8 + body.len() + 32);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&body);
        out.extend_from_slice(&hash::leaf(&body).0);
        Some(out)
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let rest = bytes.strip_prefix(&MAGIC)?;
        let (body, sum) = rest.split_at_checked(rest.len().checked_sub(32)?)?;
        if hash::leaf(body).0 != sum {
            return None;
        }
        match postcard::take_from_bytes::<State>(body) {
            Ok((s, [])) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption_is_detected() {
        let mut s = State::default();
        s.set_highest("a", 3, Hash([2; 32]));
        s.set_installed(Installed {
            name: "a".into(),
            version: 3,
            root: Hash([1; 32]),
        });
        let b = s.encode().unwrap();
        assert_eq!(State::decode(&b).unwrap(), s);
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x10;
            assert!(State::decode(&c).is_none(), "flip at {i}");
        }
        assert!(State::decode(&b[..b.len() - 1]).is_none());
    }
}
