//! RFC 5424 section 6, validated strictly.
//!
//! ```text
//! SYSLOG-MSG = PRI VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP
//!              STRUCTURED-DATA [SP MSG]
//! ```

use std::borrow::Cow;

use super::{printable, timestamp, Field, Format, ParseError, Parsed, Problem, SdElement};

const BOM: &[u8] = b"\xEF\xBB\xBF";
/// Longest SD-NAME (SD-ID and PARAM-NAME), RFC 5424 section 6.3.
const SD_NAME_MAX: usize = 32;

fn err(problem: Problem, at: usize) -> ParseError {
    ParseError {
        format: Format::Rfc5424,
        problem,
        at,
    }
}

/// Parses an RFC 5424 message (without trailing line terminators).
pub(super) fn parse(line: &[u8]) -> Result<Parsed<'_>, ParseError> {
    let (pri, mut pos) = super::pri(line, true).map_err(|(p, at)| err(p, at))?;
    let mut parsed = Parsed::new(Format::Rfc5424, pri);
    // VERSION = NONZERO-DIGIT 0*2DIGIT; every version defined so far shares this layout.
    match super::version_len(line, pos) {
        Some(n) => pos += n + 1,
        None => return Err(err(Problem::UnsupportedVersion, pos)),
    }

    let ts = token(line, pos, Field::Timestamp)?;
    if ts != b"-" {
        let t = timestamp::rfc3339(ts, true).map_err(|p| err(p, pos))?;
        parsed.timestamp = Some(t);
    }
    pos += ts.len() + 1;
    parsed.host = header_field(line, &mut pos, Field::Hostname, 255)?;
    parsed.app = header_field(line, &mut pos, Field::AppName, 48)?;
    parsed.procid = header_field(line, &mut pos, Field::Procid, 128)?;
    parsed.msgid = header_field(line, &mut pos, Field::Msgid, 32)?;

    // One UTF-8 check for structured data and message together; when the message is not UTF-8
    // (MSG-ANY may be anything), values are checked one by one and the message decoded lossily.
    let tail = std::str::from_utf8(line.get(pos..).unwrap_or_default())
        .ok()
        .map(|text| Tail { base: pos, text });
    pos = structured_data(line, pos, tail, &mut parsed.structured_data)?;
    match line.get(pos) {
        None => {}
        Some(b' ') => {
            parsed.message = match tail.and_then(|t| t.get(pos + 1, None)) {
                Some(msg) => Cow::Borrowed(msg.strip_prefix('\u{FEFF}').unwrap_or(msg)),
                None => {
                    let msg = &line[pos + 1..];
                    super::lossy(msg.strip_prefix(BOM).unwrap_or(msg))
                }
            };
        }
        Some(_) => return Err(err(Problem::StructuredData("expected a space or '['"), pos)),
    }
    Ok(parsed)
}

/// The rest of the line from `base`, when it is valid UTF-8.
#[derive(Clone, Copy)]
struct Tail<'a> {
    base: usize,
    text: &'a str,
}

impl<'a> Tail<'a> {
    /// `line[from..to]` (or `line[from..]`) as text.
    fn get(self, from: usize, to: Option<usize>) -> Option<&'a str> {
        let from = from.checked_sub(self.base)?;
        match to {
            Some(to) => self.text.get(from..to.checked_sub(self.base)?),
            None => self.text.get(from..),
        }
    }
}

/// The bytes from `pos` up to the next space, which must exist (a field follows).
fn token(line: &[u8], pos: usize, field: Field) -> Result<&[u8], ParseError> {
    let rest = line.get(pos..).unwrap_or_default();
    match rest.iter().position(|&b| b == b' ') {
        Some(0) => Err(err(Problem::Invalid(field), pos)),
        Some(n) => Ok(&rest[..n]),
        None if rest.is_empty() => Err(err(Problem::Invalid(field), pos)),
        None => Err(err(Problem::ExpectedSpace(next(field)), line.len())),
    }
}

fn next(field: Field) -> Field {
    match field {
        Field::Timestamp => Field::Hostname,
        Field::Hostname => Field::AppName,
        Field::AppName => Field::Procid,
        Field::Procid => Field::Msgid,
        _ => Field::StructuredData,
    }
}

/// HOSTNAME, APP-NAME, PROCID or MSGID: NILVALUE or 1 to `max` printable US-ASCII characters.
fn header_field<'a>(
    line: &'a [u8],
    pos: &mut usize,
    field: Field,
    max: usize,
) -> Result<Option<&'a str>, ParseError> {
    let start = *pos;
    let t = token(line, start, field)?;
    if t.len() > max {
        return Err(err(Problem::TooLong { field, max }, start + max));
    }
    let s = printable(t).ok_or_else(|| {
        let bad = t.iter().position(|b| !(33..=126).contains(b)).unwrap_or(0);
        err(Problem::Invalid(field), start + bad)
    })?;
    *pos = start + t.len() + 1;
    Ok(if s == "-" { None } else { Some(s) })
}

/// STRUCTURED-DATA at `pos`: NILVALUE or one or more SD-ELEMENTs. Returns the offset after it.
fn structured_data<'a>(
    line: &'a [u8],
    mut pos: usize,
    tail: Option<Tail<'a>>,
    out: &mut Vec<SdElement<'a>>,
) -> Result<usize, ParseError> {
    let start = pos;
    match line.get(pos) {
        Some(b'-') => return Ok(pos + 1),
        Some(b'[') => {}
        _ => {
            return Err(err(
                Problem::StructuredData("expected '-' or '['"),
                pos.min(line.len()),
            ))
        }
    }
    while line.get(pos) == Some(&b'[') {
        pos += 1;
        let (id, after) = sd_name(line, pos, Field::SdId)?;
        pos = after;
        let mut element = SdElement {
            id,
            params: Vec::new(),
        };
        loop {
            match line.get(pos) {
                Some(b']') => {
                    pos += 1;
                    break;
                }
                Some(b' ') => {
                    let (name, after) = sd_name(line, pos + 1, Field::ParamName)?;
                    pos = after;
                    if line.get(pos) != Some(&b'=') {
                        return Err(err(Problem::StructuredData("expected '='"), pos));
                    }
                    if line.get(pos + 1) != Some(&b'"') {
                        return Err(err(Problem::StructuredData("expected '\"'"), pos + 1));
                    }
                    let (value, after) = param_value(line, pos + 2, tail)?;
                    pos = after;
                    element.params.push((name, value));
                }
                Some(_) => {
                    return Err(err(Problem::StructuredData("expected ' ' or ']'"), pos));
                }
                None => return Err(err(Problem::StructuredData("unterminated element"), pos)),
            }
        }
        out.push(element);
    }
    check_unique_ids(out, start)?;
    Ok(pos)
}

/// SD-NAME: 1 to 32 printable US-ASCII characters except `=`, SP, `]` and `"`.
fn sd_name(line: &[u8], pos: usize, field: Field) -> Result<(&str, usize), ParseError> {
    let rest = line.get(pos..).unwrap_or_default();
    let n = rest
        .iter()
        .position(|&b| matches!(b, b'=' | b' ' | b']' | b'"') || !(33..=126).contains(&b))
        .unwrap_or(rest.len());
    if n == 0 {
        return Err(err(Problem::Invalid(field), pos));
    }
    if n > SD_NAME_MAX {
        return Err(err(
            Problem::TooLong {
                field,
                max: SD_NAME_MAX,
            },
            pos + SD_NAME_MAX,
        ));
    }
    // Every byte was checked to be printable US-ASCII above.
    let name = std::str::from_utf8(&rest[..n]).map_err(|_| err(Problem::Invalid(field), pos))?;
    Ok((name, pos + n))
}

/// PARAM-VALUE from `pos` (after the opening quote) to the closing quote: UTF-8 with `\"`, `\\`
/// and `\]` unescaped; a backslash before any other character is kept as it is (section 6.3.3).
fn param_value<'a>(
    line: &'a [u8],
    pos: usize,
    tail: Option<Tail<'a>>,
) -> Result<(Cow<'a, str>, usize), ParseError> {
    let rest = line.get(pos..).unwrap_or_default();
    let mut i = 0;
    let mut escaped = false;
    loop {
        // RFC 5424 section 6.3.3: '"', '\\' and ']' MUST be escaped inside PARAM-VALUE; an
        // unescaped ']' is refused (it cannot be told from the element's end by a reader).
        match memchr::memchr3(b'"', b'\\', b']', &rest[i..]) {
            None => {
                return Err(err(
                    Problem::StructuredData("unterminated PARAM-VALUE"),
                    line.len(),
                ))
            }
            Some(n) if rest[i + n] == b'"' => {
                i += n;
                break;
            }
            Some(n) if rest[i + n] == b']' => {
                return Err(err(
                    Problem::StructuredData("unescaped ']' in PARAM-VALUE"),
                    pos + i + n,
                ))
            }
            Some(n) => {
                // A backslash escapes one of the three; before any other character it is an
                // invalid escape, which RFC 5424 6.3.3 says to keep as a plain backslash.
                if matches!(rest.get(i + n + 1), Some(b'"' | b'\\' | b']')) {
                    escaped = true;
                    i += n + 2;
                } else {
                    i += n + 1;
                }
            }
        }
    }
    let raw = match tail.and_then(|t| t.get(pos, Some(pos + i))) {
        Some(raw) => raw,
        None => std::str::from_utf8(&rest[..i])
            .map_err(|e| err(Problem::Invalid(Field::ParamValue), pos + e.valid_up_to()))?,
    };
    let value = if escaped {
        let mut s = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                let mut peek = chars.clone();
                match peek.next() {
                    Some(e @ ('"' | '\\' | ']')) => {
                        s.push(e);
                        chars = peek;
                    }
                    _ => s.push(c),
                }
            } else {
                s.push(c);
            }
        }
        Cow::Owned(s)
    } else {
        Cow::Borrowed(raw)
    };
    Ok((value, pos + i + 1))
}

/// RFC 5424 section 6.3.2: an SD-ID appears at most once per message.
/// Reported at `start`, the offset of STRUCTURED-DATA: elements do not keep their offsets.
fn check_unique_ids(elements: &[SdElement<'_>], start: usize) -> Result<(), ParseError> {
    let duplicate = if elements.len() <= 8 {
        elements
            .iter()
            .enumerate()
            .any(|(i, e)| elements[..i].iter().any(|o| o.id == e.id))
    } else {
        let mut ids: Vec<&str> = elements.iter().map(|e| e.id).collect();
        ids.sort_unstable();
        ids.windows(2).any(|w| w[0] == w[1])
    };
    if duplicate {
        return Err(err(Problem::DuplicateSdId, start));
    }
    Ok(())
}
