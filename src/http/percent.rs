//! Percent-decoding (RFC 3986 §2.1), shared by path parameters and query strings.
//!
//! Written here rather than pulled in as a crate: it is twenty lines, and the two callers differ
//! only in whether `+` means a space (it does in `application/x-www-form-urlencoded` query
//! strings, not in paths).

use std::borrow::Cow;

/// Decodes `%XX` escapes (and `+` as a space when `plus_as_space`).
///
/// Never fails: a `%` not followed by two hex digits is kept literally, and bytes that do not
/// form UTF-8 become U+FFFD — such a value then simply matches nothing, which is the useful
/// outcome for an id or a filter. Borrows when there is nothing to decode.
pub fn decode(input: &str, plus_as_space: bool) -> Cow<'_, str> {
    if !input.bytes().any(|b| b == b'%' || (plus_as_space && b == b'+')) {
        return Cow::Borrowed(input);
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => match escaped_byte(bytes, i) {
                Some(byte) => {
                    out.push(byte);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b'+' if plus_as_space => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The byte `%XX` at `at` encodes, if the two digits are there and are hex.
fn escaped_byte(bytes: &[u8], at: usize) -> Option<u8> {
    let high = hex_digit(*bytes.get(at + 1)?)?;
    let low = hex_digit(*bytes.get(at + 2)?)?;
    Some((high << 4) | low)
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_escapes_and_optionally_plus() {
        let cases = [
            ("plain", false, "plain"),
            ("a%20b", false, "a b"),
            ("a%2Fb%2fc", false, "a/b/c"),
            ("caf%C3%A9", false, "café"),
            ("a+b", false, "a+b"),
            ("a+b", true, "a b"),
            ("100%", false, "100%"),
            ("%zz%4", false, "%zz%4"),
            ("%FF", false, "\u{FFFD}"),
        ];
        for (input, plus, expected) in cases {
            assert_eq!(decode(input, plus), expected, "{input:?} plus={plus}");
        }
    }

    #[test]
    fn borrows_when_nothing_to_decode() {
        assert!(matches!(decode("abc", true), std::borrow::Cow::Borrowed(_)));
    }
}
