//! ZIP inspection, then the one-pass extraction (data checked as written) of what passed into a fresh temp dir: a
//! rejection or a complete slot, never a panic and never a write outside the dir.
#![no_main]
use cybersensei_agent::update::{slots, verify};
use libfuzzer_sys::fuzz_target;

const LIMITS: verify::Limits = verify::Limits {
    max_entries: 64,
    max_unpacked: 1 << 20,
};

fuzz_target!(|data: &[u8]| {
    let Ok(tmp) = tempfile::tempdir() else {
        return;
    };
    let pkg_path = tmp.path().join("pkg.zip");
    if std::fs::write(&pkg_path, data).is_err() {
        return;
    }
    let Ok(f) = std::fs::File::open(&pkg_path) else {
        return;
    };
    // One descriptor for both, as the agent does.
    let Ok((mut zip, pkg)) = verify::inspect(&f, &LIMITS, None) else {
        return;
    };
    let slot = tmp.path().join("slot");
    if std::fs::create_dir(&slot).is_err() {
        return;
    }
    let _ = slots::extract(&mut zip, &pkg, &slot, LIMITS.max_unpacked, false);
    // Whatever happened, nothing may appear beside the slot.
    let mut names: Vec<_> = std::fs::read_dir(tmp.path())
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    names.sort();
    assert_eq!(
        names,
        ["pkg.zip", "slot"],
        "extraction wrote outside the slot"
    );
});
