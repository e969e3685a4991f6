//! DNS servers into a resolv.conf (`/run/quilt/resolv.conf` by default),
//! replaced atomically so a reader never sees half a file.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::error::NetError;

/// The file's text.
pub fn render(iface: &str, dns: &[Ipv4Addr]) -> String {
    let mut s = format!("# written by quilt-net for {iface}\n");
    for d in dns {
        s.push_str(&format!("nameserver {d}\n"));
    }
    s
}

/// Write `dns` to `path` (its directory made if missing): a temporary file
/// beside it, then a rename.
pub fn write(path: &str, iface: &str, dns: &[Ipv4Addr]) -> Result<(), NetError> {
    let err = |source| NetError::Resolv {
        path: path.to_owned(),
        source,
    };
    let p = Path::new(path);
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, render(iface, dns)).map_err(err)?;
    std::fs::rename(&tmp, p).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_nameserver_line_each() {
        assert_eq!(
            render(
                "eth0",
                &[Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)]
            ),
            "# written by quilt-net for eth0\nnameserver 10.0.2.3\nnameserver 1.1.1.1\n"
        );
    }

    #[test]
    fn written_atomically_into_a_new_directory() {
        let dir = std::env::temp_dir().join(format!("quilt-net-test-{}", std::process::id()));
        let path = dir.join("sub/resolv.conf");
        let path = path.to_str().unwrap();
        write(path, "eth0", &[Ipv4Addr::new(10, 0, 2, 3)]).unwrap();
        assert!(std::fs::read_to_string(path)
            .unwrap()
            .contains("nameserver 10.0.2.3"));
        assert!(!Path::new(&format!("{path}.tmp")).exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
