//! One module per subcommand; each is a thin layer over `irsa-core`.

#[cfg(feature = "online")]
pub mod agent;
pub mod aws_args;
pub mod bind;
pub mod cluster;
pub mod docs;
#[cfg(feature = "online")]
pub mod doctor;
pub mod export;
pub mod init;
pub mod keys;
pub mod token;
pub mod validate;
#[cfg(feature = "online")]
pub mod verify;
pub mod webhook;

/// Current Unix time in seconds.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// RFC 3339 rendering of a Unix time.
pub fn rfc3339(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ts.to_string())
}
