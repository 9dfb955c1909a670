//! The two text encodings webhook senders use besides JSON: base64 (Standard Webhooks signatures
//! and secrets) and `application/x-www-form-urlencoded` (Slack interactions and commands, GitHub's
//! form content type). Small enough to write out, and strict: bad input is `None`, never a guess.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
///
/// ```
/// use openflume_proto::webhook::base64_encode;
/// assert_eq!(base64_encode(b"hi!?"), "aGkhPw==");
/// ```
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> shift & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64; padding is optional, anything else outside the alphabet is refused.
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let value = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = acc << 6 | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits & 0xff) as u8);
        }
    }
    Some(out)
}

/// The fields of a form body in order, `+` as space and `%XX` decoded; `None` when an escape is
/// broken or a name or value is not UTF-8.
pub(crate) fn form_fields(body: &[u8]) -> Option<Vec<(String, String)>> {
    body.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let mut parts = pair.splitn(2, |&b| b == b'=');
            let name = percent_decode(parts.next().unwrap_or_default())?;
            let value = percent_decode(parts.next().unwrap_or_default())?;
            Some((name, value))
        })
        .collect()
}

fn percent_decode(text: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = [*bytes.next()?, *bytes.next()?];
                let pair = crate::bytes::from_hex(std::str::from_utf8(&hex).ok()?)?;
                out.extend_from_slice(&pair);
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_every_length() {
        for len in 0..40u8 {
            let bytes: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base64_decode(&base64_encode(&bytes)), Some(bytes));
        }
        assert_eq!(
            base64_decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Some(vec![
                0x31, 0xf2, 0x90, 0xf6, 0xbf, 0x06, 0x29, 0x8a, 0xab, 0x4f, 0x08, 0xd4, 0x3c, 0x3f,
                0x08, 0x2c, 0xf6, 0x48, 0xa3, 0x62, 0xda, 0x2d, 0xa4, 0xb0
            ])
        );
        assert_eq!(base64_decode("a"), None);
        assert_eq!(base64_decode("ab!d"), None);
    }

    #[test]
    fn form_fields_decode_escapes_and_plus() {
        assert_eq!(
            form_fields(b"payload=%7B%22a%22%3A1%7D&text=hello+world&empty=&flag"),
            Some(vec![
                ("payload".into(), "{\"a\":1}".into()),
                ("text".into(), "hello world".into()),
                ("empty".into(), String::new()),
                ("flag".into(), String::new()),
            ])
        );
        assert_eq!(form_fields(b"a=%zz"), None);
        assert_eq!(form_fields(b"a=%4"), None);
        assert_eq!(form_fields(b"a=%ff"), None);
    }
}
