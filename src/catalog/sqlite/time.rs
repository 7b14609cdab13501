//! Times as the catalog stores them: ISO 8601 text in the v1 tables
//! (`created_at`, `updated_at`, microseconds), nanoseconds in the side
//! tables. A side table's nanoseconds are used only while the text still
//! says the same microsecond (the app may have changed the text since).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the epoch.
pub fn to_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos().min(i64::MAX as u128) as i64,
        Err(e) => -(e.duration().as_nanos().min(i64::MAX as u128) as i64),
    }
}

pub fn from_ns(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

pub(super) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

pub(super) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parse the catalog's ISO 8601 UTC text (`2024-03-01T10:22:31.000000Z`,
/// tolerating a space for `T`, any number of fraction digits, `Z`, `+00:00`
/// or nothing) into nanoseconds. `None` for anything else.
pub fn parse_iso(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut frac_ns: i64 = 0;
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let mut scale = 100_000_000;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            frac_ns += (c - b'0') as i64 * scale;
            scale /= 10;
            i += 1;
        }
    }
    match &b[i..] {
        b"" | b"Z" | b"z" | b"+00:00" | b"+0000" => {}
        _ => return None,
    }
    let secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
    secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)
}

/// Format nanoseconds as the catalog writes times (microseconds, `Z`).
pub fn format_iso(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let micros = ns.rem_euclid(1_000_000_000) / 1000;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The catalog keeps microseconds; `mb_inodes` keeps the nanoseconds the mount
/// set. Use the precise value only while it still matches the catalog's text
/// (so a change made by the rest of MarkBase wins).
pub(super) fn precise(text_ns: Option<i64>, stored_ns: Option<i64>) -> Option<i64> {
    match (text_ns, stored_ns) {
        (Some(t), Some(s)) if s.div_euclid(1000) == t.div_euclid(1000) => Some(s),
        (Some(t), _) => Some(t),
        (None, s) => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn iso_round_trip() {
        let ns = parse_iso("2024-03-01T10:22:31.000000Z").unwrap();
        assert_eq!(format_iso(ns), "2024-03-01T10:22:31.000000Z");
        assert_eq!(parse_iso("2024-03-01 10:22:31"), Some(ns));
        assert_eq!(parse_iso("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_iso("2024-03-01T10:22:31.5+00:00"),
            Some(ns + 500_000_000)
        );
        assert_eq!(parse_iso("garbage"), None);
        assert_eq!(format_iso(-1), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    pub(super) fn precise_time_only_while_text_matches() {
        assert_eq!(precise(Some(5_000_000), Some(5_000_123)), Some(5_000_123));
        assert_eq!(precise(Some(6_000_000), Some(5_000_123)), Some(6_000_000));
        assert_eq!(precise(None, Some(7)), Some(7));
    }
}
