//! The status page at `/`: plain HTML and JS, no external asset (a technician's
//! page when the node itself is down). French, like the dashboard.
//!
//! `page.html` is the source; the binary holds `page.html.gz` (3.4 KB instead of
//! 7.6: the boards' size budget), served as is to a browser (they all accept gzip)
//! and inflated for a client that does not. After editing the page, regenerate it:
//! `python3 -c 'import gzip; d=open("src/admin/page.html","rb").read(); open("src/admin/page.html.gz","wb").write(gzip.compress(d, 9, mtime=0))'`
//! (the unit test below fails while the two differ).

use std::io::Read;

/// The page, gzip-compressed (a 10-byte header without name or time, raw deflate, an
/// 8-byte trailer).
const PAGE_GZ: &[u8] = include_bytes!("page.html.gz");

/// The page's bytes for a client, and whether they are gzip-compressed.
pub(crate) fn page(accepts_gzip: bool) -> (Vec<u8>, bool) {
    if accepts_gzip {
        return (PAGE_GZ.to_vec(), true);
    }
    let deflated = PAGE_GZ
        .get(10..PAGE_GZ.len().saturating_sub(8))
        .unwrap_or_default();
    let mut out = Vec::new();
    let _ = flate2::read::DeflateDecoder::new(deflated)
        .take(64 * 1024)
        .read_to_end(&mut out);
    (out, false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn small_self_contained_and_the_gzip_is_the_source() {
        let source = include_str!("page.html");
        let (plain, gz) = super::page(false);
        assert!(!gz);
        assert_eq!(
            plain,
            source.as_bytes(),
            "page.html.gz is stale: regenerate it (page.rs)"
        );
        assert!(source.len() <= 12 * 1024, "{} bytes", source.len());
        for external in ["src=\"http", "href=\"http", "@import", "url("] {
            assert!(!source.contains(external), "{external}");
        }
    }
}
