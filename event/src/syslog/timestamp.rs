//! Timestamps: RFC 3339 (RFC 5424 section 6.2.3) and the BSD forms devices send.

use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use super::Problem;

/// Years an event can carry: its wire form keeps nanoseconds in an i64.
const YEARS: std::ops::RangeInclusive<i32> = 1678..=2261;

/// How far in the future an inferred-year timestamp may be (clock skew, time zones).
const FUTURE_SLACK: Duration = Duration::days(31);

/// Two ASCII digits at `b[i..i + 2]`.
fn d2(b: &[u8], i: usize) -> Option<u8> {
    match (b.get(i), b.get(i + 1)) {
        (Some(x @ b'0'..=b'9'), Some(y @ b'0'..=b'9')) => Some((x - b'0') * 10 + (y - b'0')),
        _ => None,
    }
}

/// Four ASCII digits at `b[i..i + 4]`.
fn d4(b: &[u8], i: usize) -> Option<i32> {
    Some(i32::from(d2(b, i)?) * 100 + i32::from(d2(b, i + 2)?))
}

/// A run of 1 to `max` digits at `b[i..]` read as nanoseconds: (nanos, digits).
fn fraction(b: &[u8], i: usize, max: usize) -> Option<(u32, usize)> {
    let n = b
        .get(i..)?
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if n == 0 || n > max {
        return None;
    }
    let mut nanos: u32 = 0;
    for k in 0..9 {
        let digit = if k < n { b[i + k] - b'0' } else { 0 };
        nanos = nanos * 10 + u32::from(digit);
    }
    Some((nanos, n))
}

fn assemble(
    year: i32,
    month: u8,
    day: u8,
    hms: (u8, u8, u8),
    nanos: u32,
    offset: UtcOffset,
) -> Result<OffsetDateTime, Problem> {
    let month = Month::try_from(month).map_err(|_| Problem::Invalid(super::Field::Timestamp))?;
    let date = Date::from_calendar_date(year, month, day)
        .map_err(|_| Problem::Invalid(super::Field::Timestamp))?;
    let time = Time::from_hms_nano(hms.0, hms.1, hms.2, nanos)
        .map_err(|_| Problem::Invalid(super::Field::Timestamp))?;
    if !YEARS.contains(&year) {
        return Err(Problem::TimestampOutOfRange);
    }
    Ok(PrimitiveDateTime::new(date, time).assume_offset(offset))
}

/// An RFC 3339 `full-date "T" full-time` filling all of `b`. RFC 5424 allows at most 6 fraction
/// digits and only upper-case `T` and `Z` (`strict`); RFC 3164 relays get 9 digits and either case.
pub(super) fn rfc3339(b: &[u8], strict: bool) -> Result<OffsetDateTime, Problem> {
    let bad = Problem::Invalid(super::Field::Timestamp);
    let year = d4(b, 0).ok_or(bad)?;
    let ok_t = |c: Option<&u8>, upper: u8| match c {
        Some(&c) => c == upper || (!strict && c == upper.to_ascii_lowercase()),
        None => false,
    };
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !ok_t(b.get(10), b'T')
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return Err(bad);
    }
    let month = d2(b, 5).ok_or(bad)?;
    let day = d2(b, 8).ok_or(bad)?;
    let hms = (
        d2(b, 11).ok_or(bad)?,
        d2(b, 14).ok_or(bad)?,
        d2(b, 17).ok_or(bad)?,
    );
    let mut i = 19;
    let mut nanos = 0;
    if b.get(i) == Some(&b'.') {
        let (n, digits) = fraction(b, i + 1, if strict { 6 } else { 9 }).ok_or(bad)?;
        nanos = n;
        i += 1 + digits;
    }
    let offset = if ok_t(b.get(i), b'Z') {
        i += 1;
        UtcOffset::UTC
    } else {
        let sign: i8 = match b.get(i) {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Err(bad),
        };
        let (h, m) = (d2(b, i + 1).ok_or(bad)?, d2(b, i + 4).ok_or(bad)?);
        if b.get(i + 3) != Some(&b':') || h > 23 || m > 59 {
            return Err(bad);
        }
        i += 6;
        // h <= 23 and m <= 59, so both fit an i8.
        UtcOffset::from_hms(sign * h as i8, sign * m as i8, 0).map_err(|_| bad)?
    };
    if i != b.len() {
        return Err(bad);
    }
    assemble(year, month, day, hms, nanos, offset)
}

fn month(b: &[u8], i: usize) -> Option<u8> {
    let m = b.get(i..i + 3)?;
    const NAMES: [&[u8; 3]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let lower = [
        m[0].to_ascii_lowercase(),
        m[1].to_ascii_lowercase(),
        m[2].to_ascii_lowercase(),
    ];
    NAMES.iter().position(|n| **n == lower).map(|p| p as u8 + 1)
}

/// `hh:mm:ss[.fraction]` at `b[i..]`, hours as 1 or 2 digits: (h, m, s, nanos, end).
fn clock(b: &[u8], i: usize) -> Option<(u8, u8, u8, u32, usize)> {
    let (h, i) = match (b.get(i), b.get(i + 1)) {
        (Some(x @ b'0'..=b'9'), Some(b':')) => (x - b'0', i + 1),
        _ => (d2(b, i)?, i + 2),
    };
    if b.get(i) != Some(&b':') || b.get(i + 3) != Some(&b':') {
        return None;
    }
    let (m, s) = (d2(b, i + 1)?, d2(b, i + 4)?);
    let mut end = i + 6;
    let mut nanos = 0;
    if b.get(end) == Some(&b'.') {
        if let Some((n, digits)) = fraction(b, end + 1, 9) {
            nanos = n;
            end += 1 + digits;
        }
    }
    Some((h, m, s, nanos, end))
}

/// `Mmm dd` with the day as `d`, ` d` or `dd`, at `b[i..]`: (month, day, end).
fn month_day(b: &[u8], i: usize) -> Option<(u8, u8, usize)> {
    let mon = month(b, i)?;
    let mut j = i + 3;
    if b.get(j) != Some(&b' ') {
        return None;
    }
    j += 1;
    if b.get(j) == Some(&b' ') {
        j += 1;
    }
    let (day, end) = match d2(b, j) {
        Some(d) => (d, j + 2),
        None => match b.get(j) {
            Some(d @ b'0'..=b'9') => (d - b'0', j + 1),
            _ => return None,
        },
    };
    Some((mon, day, end))
}

/// The year that puts `month day hh:mm:ss` nearest before `now`, or at most 31 days after it.
fn infer_year(
    month: u8,
    day: u8,
    hms: (u8, u8, u8),
    nanos: u32,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, Problem> {
    let latest = now.checked_add(FUTURE_SLACK).unwrap_or(now);
    let mut invalid = Problem::Invalid(super::Field::Timestamp);
    // Four years back reaches the last Feb 29.
    for year in (now.year() - 4..=now.year() + 1).rev() {
        match assemble(year, month, day, hms, nanos, UtcOffset::UTC) {
            Ok(t) if t <= latest => return Ok(t),
            Ok(_) => {}
            Err(e @ Problem::TimestampOutOfRange) => invalid = e,
            Err(_) => {}
        }
    }
    Err(invalid)
}

/// A BSD-style timestamp at `b[i..]` as RFC 3164 senders write it:
/// - `Mmm dd hh:mm:ss[.frac]` (year inferred from `now`),
/// - `Mmm dd yyyy hh:mm:ss[.frac]` (Cisco ASA, Juniper with year),
/// - `yyyy Mmm dd hh:mm:ss[.frac]` (Cisco NX-OS),
/// - RFC 3339 (rsyslog's forwarding format),
///
/// optionally followed by ` UTC`/` GMT`, or by another upper-case zone name directly before a
/// `:` (Cisco; taken as UTC). `Ok(None)` when the bytes do not have the shape of a timestamp;
/// `Err` when they do but the values are impossible. Returns the time and the end offset.
pub(super) fn bsd(
    b: &[u8],
    i: usize,
    now: OffsetDateTime,
) -> Result<Option<(OffsetDateTime, usize)>, Problem> {
    let head = b.get(i).copied().unwrap_or(0);
    if head.is_ascii_digit() {
        // RFC 3339: the token up to the next space.
        if b.get(i + 4) == Some(&b'-') && b.get(i + 7) == Some(&b'-') && d4(b, i).is_some() {
            let end = b[i..]
                .iter()
                .position(|&c| c == b' ')
                .map_or(b.len(), |p| i + p);
            return rfc3339(&b[i..end], false).map(|t| Some((t, end)));
        }
        // NX-OS: `yyyy Mmm dd hh:mm:ss`.
        let Some(year) = d4(b, i) else {
            return Ok(None);
        };
        if b.get(i + 4) != Some(&b' ') {
            return Ok(None);
        }
        let Some((mon, day, j)) = month_day(b, i + 5) else {
            return Ok(None);
        };
        if b.get(j) != Some(&b' ') {
            return Ok(None);
        }
        let Some((h, m, s, nanos, end)) = clock(b, j + 1) else {
            return Ok(None);
        };
        let t = assemble(year, mon, day, (h, m, s), nanos, UtcOffset::UTC)?;
        return Ok(Some((t, zone(b, end))));
    }
    let Some((mon, day, j)) = month_day(b, i) else {
        return Ok(None);
    };
    if b.get(j) != Some(&b' ') {
        return Ok(None);
    }
    // With a year (`Mmm dd yyyy hh:mm:ss`) or without.
    let (year, j) = match (d4(b, j + 1), b.get(j + 5)) {
        (Some(y), Some(b' ')) => (Some(y), j + 6),
        _ => (None, j + 1),
    };
    let Some((h, m, s, nanos, end)) = clock(b, j) else {
        return Ok(None);
    };
    let t = match year {
        Some(y) => assemble(y, mon, day, (h, m, s), nanos, UtcOffset::UTC)?,
        None => infer_year(mon, day, (h, m, s), nanos, now)?,
    };
    Ok(Some((t, zone(b, end))))
}

/// Skips a time-zone name after a BSD time: ` UTC`/` GMT` always, other upper-case names of 3 to
/// 5 letters only when a `:` follows (Cisco `... 00:00:00.123 CET:`).
fn zone(b: &[u8], end: usize) -> usize {
    if b.get(end) != Some(&b' ') {
        return end;
    }
    let start = end + 1;
    let len = b
        .get(start..)
        .unwrap_or_default()
        .iter()
        .take_while(|c| c.is_ascii_uppercase())
        .count();
    let name = &b[start..start + len];
    let after = b.get(start + len).copied();
    let terminated = matches!(after, None | Some(b' ') | Some(b':'));
    if (name == b"UTC" || name == b"GMT") && terminated
        || ((3..=5).contains(&len) && after == Some(b':'))
    {
        start + len
    } else {
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn rfc3339_accepts_the_rfc5424_examples_and_rejects_the_bad_ones() {
        for (s, want) in [
            (
                "1985-04-12T23:20:50.52Z",
                datetime!(1985-04-12 23:20:50.52 UTC),
            ),
            (
                "1985-04-12T19:20:50.52-04:00",
                datetime!(1985-04-12 19:20:50.52 -4),
            ),
            (
                "2003-10-11T22:14:15.003Z",
                datetime!(2003-10-11 22:14:15.003 UTC),
            ),
            (
                "2003-08-24T05:14:15.000003-07:00",
                datetime!(2003-08-24 05:14:15.000003 -7),
            ),
        ] {
            assert_eq!(rfc3339(s.as_bytes(), true), Ok(want), "{s}");
        }
        for s in [
            "2003-08-24T05:14:15.000000003-07:00",
            "2003-10-11t22:14:15.003Z",
            "2003-10-11T22:14:15.003z",
            "2003-10-11T22:14:15",
            "2003-02-30T22:14:15Z",
            "2003-10-11T24:00:00Z",
            "2003-10-11T23:59:60Z",
            "2003-10-11T22:14:15.Z",
            "2003-10-11T22:14:15+2:00",
            "2003-10-11T22:14:15+24:00",
            "2003-10-11T22:14:15+02:00 ",
            "03-10-11T22:14:15Z",
        ] {
            assert!(rfc3339(s.as_bytes(), true).is_err(), "{s}");
        }
        assert_eq!(
            rfc3339(b"9999-10-11T22:14:15Z", true),
            Err(Problem::TimestampOutOfRange)
        );
        assert!(rfc3339(b"2003-10-11t22:14:15.000000003z", false).is_ok());
    }

    #[test]
    fn year_inference_prefers_the_past_with_a_month_of_slack() {
        let now = datetime!(2026-01-05 10:00 UTC);
        let at = |s: &str| bsd(s.as_bytes(), 0, now).unwrap().unwrap().0;
        assert_eq!(at("Dec 31 23:00:00"), datetime!(2025-12-31 23:00 UTC));
        assert_eq!(at("Jan  5 11:00:00"), datetime!(2026-01-05 11:00 UTC));
        assert_eq!(at("Feb  4 11:00:00"), datetime!(2026-02-04 11:00 UTC));
        assert_eq!(at("Mar  4 11:00:00"), datetime!(2025-03-04 11:00 UTC));
        assert_eq!(at("Feb 29 00:00:00"), datetime!(2024-02-29 00:00 UTC));
        let new_year = datetime!(2026-12-31 23:59 UTC);
        assert_eq!(
            bsd(b"Jan  1 00:00:01", 0, new_year).unwrap().unwrap().0,
            datetime!(2027-01-01 00:00:01 UTC)
        );
        assert!(bsd(b"Feb 30 00:00:00", 0, now).is_err());
        assert_eq!(bsd(b"May 5 people", 0, now), Ok(None));
    }
}
