//! Base64url helpers (RFC 7515 §2: URL-safe alphabet, no padding).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

/// Encodes bytes as base64url without padding.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding; trailing `=` padding is tolerated.
pub fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('='))
}

/// Decodes standard base64 (as used in Kubernetes `data` fields).
pub fn decode_std(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(compact)
}

/// Encodes bytes as standard base64 with padding.
pub fn encode_std(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Appends the standard base64 (padded) of `bytes` to `out`.
pub fn encode_std_into(bytes: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let len = base64::encoded_len(bytes.len(), true).unwrap_or(0);
    out.resize(start + len, 0);
    let written = STANDARD.encode_slice(bytes, &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
}

/// Strips leading zero bytes of a big-endian unsigned integer, keeping at least one byte.
pub fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    &bytes[first.min(bytes.len())..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_std_into_appends() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            let mut out = b"x".to_vec();
            encode_std_into(&bytes, &mut out);
            assert_eq!(out, format!("x{}", encode_std(&bytes)).into_bytes());
        }
    }

    #[test]
    fn no_padding_and_url_alphabet() {
        assert_eq!(encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(decode("-_8").expect("decodes"), vec![0xfb, 0xff]);
        assert_eq!(decode("-_8=").expect("padding tolerated"), vec![0xfb, 0xff]);
    }

    #[test]
    fn strips_zeros_but_keeps_one_byte() {
        assert_eq!(strip_leading_zeros(&[0, 0, 1, 0]), &[1, 0]);
        assert_eq!(strip_leading_zeros(&[0, 0]), &[0]);
        assert_eq!(strip_leading_zeros(&[]), &[] as &[u8]);
    }
}
