//! Points in time as `irsa.yaml` records them (when a key was created,
//! started and stopped signing).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A point in time to the second, between `0000-01-01T00:00:00Z` and
/// `9999-12-31T23:59:59Z`. Written as RFC 3339 in UTC
/// (`2026-01-01T00:00:00Z`); read from RFC 3339 with any offset (fractions
/// of a second are dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// A time that is not an RFC 3339 time irsa can record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// Not RFC 3339.
    #[error("{value:?} is not an RFC 3339 time ({reason}); write it like 2026-01-01T00:00:00Z")]
    Syntax {
        /// The text read.
        value: String,
        /// What the parser found wrong.
        reason: String,
    },
    /// Outside the years 0000-9999 (in UTC).
    #[error("{0} is outside the years 0000-9999 (UTC) that irsa.yaml can record")]
    OutOfRange(String),
}

impl Timestamp {
    /// The earliest time irsa records: `0000-01-01T00:00:00Z`.
    pub const MIN: Self = Self(-62_167_219_200);
    /// The latest time irsa records: `9999-12-31T23:59:59Z`.
    pub const MAX: Self = Self(253_402_300_799);

    /// The time `secs` seconds after the Unix epoch.
    pub fn from_unix(secs: i64) -> Result<Self, TimestampError> {
        if (Self::MIN.0..=Self::MAX.0).contains(&secs) {
            Ok(Self(secs))
        } else {
            Err(TimestampError::OutOfRange(format!(
                "{secs} seconds after the Unix epoch"
            )))
        }
    }

    /// The time `secs` seconds after the Unix epoch, held to
    /// [`Self::MIN`]..=[`Self::MAX`] (for a clock reading).
    pub fn saturating_from_unix(secs: i64) -> Self {
        Self(secs.clamp(Self::MIN.0, Self::MAX.0))
    }

    /// Seconds since the Unix epoch.
    pub fn unix(self) -> i64 {
        self.0
    }

    /// `secs` seconds later, or [`Self::MAX`] if that is later still.
    pub fn saturating_add(self, secs: i64) -> Self {
        Self::saturating_from_unix(self.0.saturating_add(secs))
    }

    /// `YYYYMMDD-hhmmss` in UTC, for file names.
    pub fn file_tag(self) -> String {
        let d = self.utc();
        format!(
            "{:04}{:02}{:02}-{:02}{:02}{:02}",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        )
    }

    fn utc(self) -> OffsetDateTime {
        // In range by construction: MIN..=MAX are years 0000-9999.
        OffsetDateTime::from_unix_timestamp(self.0).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.utc();
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        )
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| TimestampError::Syntax {
            value: s.into(),
            reason: e.to_string(),
        })?;
        Self::from_unix(t.unix_timestamp())
            .map_err(|_| TimestampError::OutOfRange(format!("{s:?}")))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn writes_rfc3339_utc_and_reads_it_back() {
        let t = Timestamp::from_unix(1_767_225_600).unwrap();
        assert_eq!(t.to_string(), "2026-01-01T00:00:00Z");
        assert_eq!("2026-01-01T00:00:00Z".parse::<Timestamp>(), Ok(t));
        assert_eq!(t.file_tag(), "20260101-000000");
        for edge in [
            Timestamp::MIN,
            Timestamp::MAX,
            Timestamp::from_unix(-1).unwrap(),
        ] {
            assert_eq!(edge.to_string().parse::<Timestamp>(), Ok(edge), "{edge}");
        }
        assert_eq!(Timestamp::MIN.to_string(), "0000-01-01T00:00:00Z");
        assert_eq!(Timestamp::MAX.to_string(), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn reads_any_offset_and_drops_fractions() {
        let t: Timestamp = "2026-01-01T02:00:00.750+02:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-01-01T00:00:00Z");
    }

    #[test]
    fn refuses_what_is_not_rfc3339_naming_the_value_and_the_form() {
        for bad in [
            "2026-01-01",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "1767225600",
            "",
        ] {
            let err = bad.parse::<Timestamp>().unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(&format!("{bad:?}")) && text.contains("2026-01-01T00:00:00Z"),
                "{text}"
            );
        }
        let err = "0000-01-01T00:00:00+01:00"
            .parse::<Timestamp>()
            .unwrap_err();
        assert!(matches!(err, TimestampError::OutOfRange(_)), "{err}");
    }

    #[test]
    fn stays_within_the_years_irsa_records() {
        assert!(Timestamp::from_unix(Timestamp::MAX.unix() + 1).is_err());
        assert!(Timestamp::from_unix(Timestamp::MIN.unix() - 1).is_err());
        assert_eq!(Timestamp::saturating_from_unix(i64::MAX), Timestamp::MAX);
        assert_eq!(Timestamp::saturating_from_unix(i64::MIN), Timestamp::MIN);
        assert_eq!(Timestamp::MAX.saturating_add(i64::MAX), Timestamp::MAX);
        let t = Timestamp::from_unix(10).unwrap();
        assert_eq!(t.saturating_add(5).unix(), 15);
    }
}
