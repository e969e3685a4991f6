//! quilt-init's kernel uevent parser (`init/quilt-init/src/uevent.rs`,
//! included as it is: quilt-init is a binary crate) over arbitrary
//! netlink datagrams: it must refuse or parse, never panic, and what it
//! parses must hold what quilt-init relies on before it builds `/dev/<name>`.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../init/quilt-init/src/uevent.rs"]
mod uevent;

fuzz_target!(|data: &[u8]| {
    let Some(ev) = uevent::parse(data) else {
        return;
    };
    assert!(data.len() <= uevent::MAX_MESSAGE);
    assert!(ev.devpath.starts_with('/'));
    let _ = uevent::on_usb(ev.devpath);
    if let Some(name) = ev.devname.filter(|n| uevent::safe_devname(n)) {
        assert!(!name.is_empty() && name.len() <= 32);
        assert!(!name.contains('/') && !name.starts_with('.'));
    }
});
