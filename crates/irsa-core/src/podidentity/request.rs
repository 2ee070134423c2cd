//! The credentials request as the SDKs send it: `GET /v1/credentials`
//! with the token file's content as the whole `Authorization` header, to
//! an address given by IP (the SDKs allow plain HTTP only to loopback and
//! the container-credentials link-local addresses).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Longest token read from `Authorization` (a ServiceAccount token is
/// about 1 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A request refused: the HTTP status and a one-line reason that names
/// the problem and the fix, never a token or a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// One line, no secret.
    pub reason: String,
}

impl Refusal {
    /// A refusal with `status` and `reason` (cut to one line of at most
    /// 300 characters).
    pub fn new(status: u16, reason: impl Into<String>) -> Self {
        let reason: String = reason
            .into()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(300)
            .collect();
        Self { status, reason }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

fn base64url(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
}

/// The token in an `Authorization` header value: the whole value (as the
/// SDKs send it) or after `Bearer `, trimmed; a compact JWS
/// (three base64url segments) of at most [`MAX_TOKEN_BYTES`].
pub fn token_from_authorization(value: Option<&[u8]>) -> Result<&str, Refusal> {
    let Some(value) = value else {
        return Err(Refusal::new(400, "no Authorization header: send the pod's projected ServiceAccount token (the content of AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)"));
    };
    if value.len() > MAX_TOKEN_BYTES {
        return Err(Refusal::new(
            400,
            format!("the Authorization header has {} bytes, more than {MAX_TOKEN_BYTES}: send only the ServiceAccount token", value.len()),
        ));
    }
    let text = std::str::from_utf8(value)
        .map_err(|_| {
            Refusal::new(
                400,
                "the Authorization header is not text: send the ServiceAccount token",
            )
        })?
        .trim();
    let token = text.strip_prefix("Bearer ").map_or(text, str::trim);
    let mut parts = token.split('.');
    let jws =
        parts.by_ref().take(3).filter(|s| base64url(s)).count() == 3 && parts.next().is_none();
    if !jws {
        return Err(Refusal::new(400, "the Authorization header is not a ServiceAccount token (a JWT of three base64url parts): point AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE at the projected token"));
    }
    Ok(token)
}

/// Whether a request's `Host` names one of the addresses the server
/// listens on (by IP: a name would let a page on another site reach the
/// endpoint through DNS rebinding). Without a port, the host means port 80.
pub fn host_allowed(host: Option<&[u8]>, listening: &[SocketAddr]) -> bool {
    let Some(host) = host.and_then(|h| std::str::from_utf8(h).ok()) else {
        return false;
    };
    let (ip, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return false;
        };
        match after {
            "" => (ip, None),
            p => match p.strip_prefix(':') {
                Some(p) => (ip, Some(p)),
                None => return false,
            },
        }
    } else {
        match host.split_once(':') {
            Some((ip, port)) => (ip, Some(port)),
            None => (host, None),
        }
    };
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return false;
    };
    let port = match port {
        None => 80,
        Some(p) => match p.parse::<u16>() {
            Ok(p) => p,
            Err(_) => return false,
        },
    };
    listening.iter().any(|a| a.ip() == ip && a.port() == port)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";

    #[test]
    fn the_token_is_the_whole_header_as_the_sdks_send_it() {
        assert_eq!(token_from_authorization(Some(JWT.as_bytes())), Ok(JWT));
        let bearer = format!("Bearer {JWT}\n");
        assert_eq!(token_from_authorization(Some(bearer.as_bytes())), Ok(JWT));
    }

    #[test]
    fn a_missing_or_malformed_header_is_a_400_naming_the_fix() {
        let refused = |v: Option<&[u8]>| token_from_authorization(v).err();
        let missing = refused(None);
        assert!(
            missing
                .as_ref()
                .is_some_and(|r| r.status == 400
                    && r.reason.contains("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")),
            "{missing:?}"
        );
        let big = vec![b'a'; MAX_TOKEN_BYTES + 1];
        for bad in [
            &b""[..],
            b"secret-password",
            b"a.b",
            b"a.b.c.d",
            b"a..c",
            b"a.b c.d",
            b"\xff.a.b",
            &big,
        ] {
            let r = refused(Some(bad));
            assert!(
                r.as_ref().is_some_and(|r| r.status == 400),
                "{bad:?}: {r:?}"
            );
            assert!(
                r.is_some_and(|r| !r.reason.contains("secret-password")),
                "never echoed"
            );
        }
    }

    #[test]
    fn refusal_reasons_are_one_line() {
        let r = Refusal::new(401, format!("a\nb\r{}", "x".repeat(500)));
        assert!(!r.reason.contains('\n') && !r.reason.contains('\r'));
        assert_eq!(r.reason.chars().count(), 300);
    }

    #[test]
    fn only_a_listening_address_is_an_allowed_host() {
        let listening: Vec<SocketAddr> =
            ["169.254.170.23:80", "[fd00:ec2::23]:80", "127.0.0.1:8080"]
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect();
        let ok = |h: &str| host_allowed(Some(h.as_bytes()), &listening);
        for good in [
            "169.254.170.23",
            "169.254.170.23:80",
            "[fd00:ec2::23]",
            "[fd00:ec2::23]:80",
            "127.0.0.1:8080",
        ] {
            assert!(ok(good), "{good}");
        }
        for bad in [
            "evil.example",
            "evil.example:80",
            "127.0.0.1",
            "127.0.0.1:80",
            "169.254.170.23:8080",
            "[fd00:ec2::23",
            "[fd00:ec2::23]x",
            "fd00:ec2::23",
            "",
            "169.254.170.23:",
            "localhost:8080",
        ] {
            assert!(!ok(bad), "{bad}");
        }
        assert!(!host_allowed(None, &listening));
    }
}
