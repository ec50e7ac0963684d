//! Percent-encoding of URL query values (RFC 3986): a leaf, used by the requests that
//! carry values and by the scrubber that must recognise them.

/// Percent-encodes a query value (RFC 3986 unreserved characters pass as they are).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The byte a `%XX` escape stands for (either case of hex digit), if `s` starts with one.
pub(crate) fn decode_escape(s: &[u8]) -> Option<u8> {
    let [b'%', h, l, ..] = s else {
        return None;
    };
    let digit = |c: u8| (c as char).to_digit(16);
    Some((digit(*h)? * 16 + digit(*l)?) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_key_characters() {
        assert_eq!(percent_encode("a+b/c=d e"), "a%2Bb%2Fc%3Dd%20e");
        assert_eq!(percent_encode("A1-B2_c.d~"), "A1-B2_c.d~");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn decodes_either_case() {
        assert_eq!(decode_escape(b"%2Bx"), Some(b'+'));
        assert_eq!(decode_escape(b"%2b"), Some(b'+'));
        assert_eq!(decode_escape(b"%2"), None);
        assert_eq!(decode_escape(b"%zz"), None);
        assert_eq!(decode_escape(b"a%2B"), None);
    }
}
