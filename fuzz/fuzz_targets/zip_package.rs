//! Package verification and extraction on arbitrary bytes: a rejection or a clean
//! extraction inside the slot directory, never a panic, never a file outside it.
#![no_main]
use cybersensei_agent::update::{slots, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let pkg_path = dir.path().join("pkg.zip");
    if std::fs::write(&pkg_path, data).is_err() {
        return;
    }
    let limits = verify::Limits {
        max_entries: 64,
        max_unpacked: 1 << 20,
    };
    let Ok(pkg) = verify::verify(&pkg_path, &limits, None) else {
        return;
    };
    let slot = dir.path().join("slots/a");
    if std::fs::create_dir_all(&slot).is_err() {
        return;
    }
    let Ok(mut zip) = verify::open(&pkg_path) else {
        return;
    };
    let _ = slots::extract(&mut zip, &pkg, &slot, limits.max_unpacked);
    // Nothing may appear next to the slot but the package itself.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    assert_eq!(names, vec!["pkg.zip".to_string(), "slots".to_string()]);
});
