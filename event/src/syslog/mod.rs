//! Syslog parsing: RFC 5424 (strict) and RFC 3164 as real devices send it.
//!
//! [`parse`] never fails: a line that is not valid syslog becomes a [`Parsed`] whose `message` is
//! the whole line and whose `parse_error` says what was wrong and where, so nothing a sender gave
//! us is dropped. Header fields borrow from the input; only structured-data values that contain
//! escapes and messages that are not valid UTF-8 are copied.
//!
//! # Layout
//! - `mod.rs`: [`parse`], format detection, [`Parsed`], [`ParseError`], tenant credentials.
//! - `rfc5424`: the strict RFC 5424 section 6 parser.
//! - `rfc3164`: the lenient BSD parser (no year, tags, Cisco, Juniper, F5, RFC 3339 stamps).
//! - `timestamp`: RFC 3339 and BSD timestamps, year inference.
//!
//! ```
//! use meniscus_event::syslog::{self, Format};
//! use time::macros::datetime;
//!
//! let now = datetime!(2026-11-15 12:00 UTC);
//! let p = syslog::parse(b"<34>Oct 11 22:14:15 mymachine su[42]: 'su root' failed", Format::Auto, now);
//! assert_eq!(p.host, Some("mymachine"));
//! assert_eq!(p.app, Some("su"));
//! assert_eq!(p.procid, Some("42"));
//! assert_eq!(p.timestamp, Some(datetime!(2026-10-11 22:14:15 UTC)));
//!
//! // No PRI: user.notice (RFC 3164 section 4.3.3), all of it the message.
//! let bare = syslog::parse(b"hello", Format::Auto, now);
//! assert_eq!((bare.message.as_ref(), bare.parse_error), ("hello", None));
//!
//! let bad = syslog::parse(b"<999>hello", Format::Auto, now);
//! assert_eq!(bad.message, "<999>hello");
//! assert_eq!(bad.parse_error.unwrap().to_string(), "syslog: invalid PRI (expected <0> to <191>) at byte 1");
//! ```

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;

use crate::publish::EventDraft;
use crate::{Facility, Severity, StructuredData};

mod rfc3164;
mod rfc5424;
mod timestamp;

#[cfg(test)]
mod tests;

/// Which syslog dialect to expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// Detect per line: `<PRI>1 ` is RFC 5424, any other `<PRI>` is RFC 3164.
    #[default]
    Auto,
    /// RFC 5424, validated strictly.
    Rfc5424,
    /// RFC 3164 and the BSD-style variants devices send.
    Rfc3164,
}

impl Format {
    /// The keyword used on the command line and in error messages.
    pub fn keyword(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Rfc5424 => "rfc5424",
            Format::Rfc3164 => "rfc3164",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Format::Auto),
            "rfc5424" => Ok(Format::Rfc5424),
            "rfc3164" => Ok(Format::Rfc3164),
            _ => Err(format!(
                "unknown syslog format {s:?}; expected one of: auto, rfc5424, rfc3164"
            )),
        }
    }
}

/// A syslog header or structured-data field, as RFC 5424 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Field {
    Timestamp,
    Hostname,
    AppName,
    Procid,
    Msgid,
    StructuredData,
    SdId,
    ParamName,
    ParamValue,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Timestamp => "TIMESTAMP",
            Field::Hostname => "HOSTNAME",
            Field::AppName => "APP-NAME",
            Field::Procid => "PROCID",
            Field::Msgid => "MSGID",
            Field::StructuredData => "STRUCTURED-DATA",
            Field::SdId => "SD-ID",
            Field::ParamName => "PARAM-NAME",
            Field::ParamValue => "PARAM-VALUE",
        })
    }
}

/// What is wrong with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Nothing but line terminators.
    #[error("empty message")]
    Empty,
    /// The line does not start with `<`.
    #[error("missing PRI (expected '<')")]
    MissingPri,
    /// `<...>` is not a priority from 0 to 191.
    #[error("invalid PRI (expected <0> to <191>)")]
    InvalidPri,
    /// RFC 5424 VERSION is missing or not 1 to 3 digits.
    #[error("invalid VERSION (expected 1 to 3 digits, not starting with 0)")]
    UnsupportedVersion,
    /// A header field ends where a space should separate it from the next one.
    #[error("expected a space before {0}")]
    ExpectedSpace(Field),
    /// The field is missing, empty or has a byte it may not contain.
    #[error("invalid {0}")]
    Invalid(Field),
    /// The field is longer than RFC 5424 allows.
    #[error("{field} longer than {max} characters")]
    TooLong {
        /// Which field.
        field: Field,
        /// Its maximum length.
        max: usize,
    },
    /// A timestamp whose year cannot be stored (events keep nanoseconds in an i64).
    #[error("TIMESTAMP outside the years 1678 to 2261")]
    TimestampOutOfRange,
    /// Two SD-ELEMENTs with one SD-ID (RFC 5424 section 6.3.2).
    #[error("duplicate SD-ID")]
    DuplicateSdId,
    /// Structured data that does not follow the grammar; the text says what was expected.
    #[error("invalid STRUCTURED-DATA: {0}")]
    StructuredData(&'static str),
}

/// Why a line is not valid syslog, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}: {problem} at byte {at}", format_name(*.format))]
pub struct ParseError {
    /// The dialect the line was parsed as (`Auto` when no dialect could be detected).
    pub format: Format,
    /// What is wrong.
    pub problem: Problem,
    /// Offset of the offending byte in the line.
    pub at: usize,
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Auto => "syslog",
        other => other.keyword(),
    }
}

/// One structured-data element: `[id name="value" ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdElement<'a> {
    /// The SD-ID.
    pub id: &'a str,
    /// PARAM-NAME and unescaped PARAM-VALUE pairs, in line order (a name may repeat).
    pub params: Vec<(&'a str, Cow<'a, str>)>,
}

/// A parsed syslog line. Header fields borrow from the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The dialect the line was parsed as (`Auto` when none could be detected).
    pub format: Format,
    /// From PRI.
    pub facility: Option<Facility>,
    /// From PRI.
    pub severity: Option<Severity>,
    /// TIMESTAMP with the sender's offset (RFC 3164 times without a zone are taken as UTC).
    pub timestamp: Option<OffsetDateTime>,
    /// HOSTNAME.
    pub host: Option<&'a str>,
    /// APP-NAME, or the RFC 3164 tag.
    pub app: Option<&'a str>,
    /// PROCID, or the pid in an RFC 3164 `tag[pid]:`.
    pub procid: Option<&'a str>,
    /// MSGID, or a Cisco mnemonic such as `SYS-5-CONFIG_I`.
    pub msgid: Option<&'a str>,
    /// STRUCTURED-DATA elements in line order (RFC 5424 only).
    pub structured_data: Vec<SdElement<'a>>,
    /// MSG (without a leading BOM), lossily decoded; the whole line when `parse_error` is set.
    pub message: Cow<'a, str>,
    /// Why the line is not valid syslog; every other field is empty then.
    pub parse_error: Option<ParseError>,
}

impl<'a> Parsed<'a> {
    fn new(format: Format, pri: u8) -> Self {
        Parsed {
            format,
            facility: Facility::from_code(pri >> 3),
            severity: Severity::from_code(pri & 7),
            timestamp: None,
            host: None,
            app: None,
            procid: None,
            msgid: None,
            structured_data: Vec::new(),
            message: Cow::Borrowed(""),
            parse_error: None,
        }
    }

    fn invalid(line: &'a [u8], error: ParseError) -> Self {
        Parsed {
            format: error.format,
            facility: None,
            severity: None,
            timestamp: None,
            host: None,
            app: None,
            procid: None,
            msgid: None,
            structured_data: Vec::new(),
            message: lossy(line),
            parse_error: Some(error),
        }
    }

    /// Converts into an [`EventDraft`]: the timestamp in UTC, structured data as a map (for a
    /// param name repeated in one element the first value is kept), and `parse_error`, if any, as
    /// the string `fields["parse_error"]`.
    pub fn into_draft(self) -> EventDraft {
        let mut structured_data = StructuredData::new();
        for element in self.structured_data {
            let params = structured_data.entry(element.id.to_owned()).or_default();
            for (name, value) in element.params {
                params
                    .entry(name.to_owned())
                    .or_insert_with(|| value.into_owned());
            }
        }
        let mut fields = serde_json::Map::new();
        if let Some(e) = self.parse_error {
            fields.insert("parse_error".into(), e.to_string().into());
        }
        EventDraft {
            id: None,
            timestamp: self.timestamp.map(|t| t.to_offset(time::UtcOffset::UTC)),
            host: self.host.map(str::to_owned),
            app: self.app.map(str::to_owned),
            procid: self.procid.map(str::to_owned),
            msgid: self.msgid.map(str::to_owned),
            facility: self.facility,
            severity: self.severity,
            message: self.message.into_owned(),
            structured_data,
            fields,
        }
    }
}

/// Parses one syslog message (one frame or datagram). Trailing CR, LF and NUL bytes are ignored.
///
/// `now` is used to infer the year of RFC 3164 timestamps that have none: the year that puts the
/// timestamp nearest before `now`, or at most 31 days after it.
pub fn parse(line: &[u8], format: Format, now: OffsetDateTime) -> Parsed<'_> {
    let end = line
        .iter()
        .rposition(|b| !matches!(b, b'\n' | b'\r' | 0))
        .map_or(0, |i| i + 1);
    let line = &line[..end];
    let result = match format {
        Format::Rfc5424 => rfc5424::parse(line),
        Format::Rfc3164 => rfc3164::parse(line, now),
        Format::Auto => match detect(line) {
            Ok(Format::Rfc5424) => rfc5424::parse(line),
            Ok(_) => rfc3164::parse(line, now),
            Err(e) => Err(e),
        },
    };
    result.unwrap_or_else(|e| Parsed::invalid(line, e))
}

/// Detects the dialect of a line from its first bytes: `<PRI>VERSION ` (1 to 3 digits, as RFC
/// 5424's ABNF allows) is RFC 5424, any other `<PRI>` is RFC 3164.
pub fn detect(line: &[u8]) -> Result<Format, ParseError> {
    let after = match pri(line, false) {
        Ok((_, after)) => after,
        // No PRI at all: RFC 3164 section 4.3.3 makes it user.notice.
        Err((Problem::MissingPri, _)) => return Ok(Format::Rfc3164),
        Err((problem, at)) => {
            return Err(ParseError {
                format: Format::Auto,
                problem,
                at,
            })
        }
    };
    Ok(match version_len(line, after) {
        Some(_) => Format::Rfc5424,
        None => Format::Rfc3164,
    })
}

/// The length of an RFC 5424 VERSION (`NONZERO-DIGIT 0*2DIGIT`) at `line[at..]`, followed by
/// a space.
fn version_len(line: &[u8], at: usize) -> Option<usize> {
    let rest = line.get(at..)?;
    let digits = rest
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    let ok = (1..=3).contains(&digits) && rest[0] != b'0' && rest.get(digits) == Some(&b' ');
    ok.then_some(digits)
}

/// Parses `<PRIVAL>` at the start of `line`: the value and the offset after `>`. RFC 5424 forbids
/// leading zeros (`strict`); RFC 3164 senders are forgiven them.
fn pri(line: &[u8], strict: bool) -> Result<(u8, usize), (Problem, usize)> {
    match line.first() {
        None => return Err((Problem::Empty, 0)),
        Some(b'<') => {}
        Some(_) => return Err((Problem::MissingPri, 0)),
    }
    let mut value: u32 = 0;
    let mut i = 1;
    while let Some(&b) = line.get(i) {
        if !b.is_ascii_digit() {
            break;
        }
        if i > 3 {
            return Err((Problem::InvalidPri, i));
        }
        value = value * 10 + u32::from(b - b'0');
        i += 1;
    }
    let digits = i - 1;
    if digits == 0 || line.get(i) != Some(&b'>') {
        return Err((Problem::InvalidPri, i));
    }
    if value > 191 || (strict && digits > 1 && line[1] == b'0') {
        return Err((Problem::InvalidPri, 1));
    }
    // `value` is at most 191 here.
    Ok((value as u8, i + 1))
}

/// `bytes` as text, borrowed when it is valid UTF-8 (the common case, checked by the fast path).
fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// `bytes` as a `&str` when every byte is printable US-ASCII (33 to 126).
fn printable(bytes: &[u8]) -> Option<&str> {
    if bytes.iter().all(|b| (33..=126).contains(b)) {
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

/// What a `meniscus` structured-data element says: the tenant credentials, and the
/// publisher's idempotency key.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct MeniscusSd {
    /// The `tenant` param.
    pub tenant: Option<String>,
    /// The `token` param.
    pub token: Option<String>,
    /// The `id` param: the event's id, so a message sent again (after a lost
    /// acknowledgement) replaces the first copy instead of being stored twice.
    pub id: Option<String>,
}

impl fmt::Debug for MeniscusSd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeniscusSd")
            .field("tenant", &self.tenant)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("id", &self.id)
            .finish()
    }
}

/// Removes every element whose SD-ID is `meniscus` or starts with `meniscus@`, in any case
/// (a sender's `Meniscus` must not store its token either), so tokens are never stored, and
/// returns the `tenant`, `token` and `id` params of the first one (in SD-ID order).
/// `None` when there is no such element.
pub fn take_meniscus_sd(sd: &mut StructuredData) -> Option<MeniscusSd> {
    let is_ours = |id: &str| {
        let prefix = id.get(..9).unwrap_or(id);
        id.eq_ignore_ascii_case("meniscus")
            || (prefix.eq_ignore_ascii_case("meniscus@") && id.len() > 9)
    };
    let ids: Vec<String> = sd.keys().filter(|id| is_ours(id)).cloned().collect();
    let mut found = None;
    for id in ids {
        if let Some(mut params) = sd.remove(&id) {
            found.get_or_insert_with(|| MeniscusSd {
                tenant: params.remove("tenant"),
                token: params.remove("token"),
                id: params.remove("id"),
            });
        }
    }
    found
}
