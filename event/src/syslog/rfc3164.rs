//! RFC 3164 ("BSD syslog") as devices really send it.
//!
//! ```text
//! <PRI>[cisco counters: ][TIMESTAMP[:] [HOSTNAME [severity]] ][TAG[[PID]]: ]MSG
//! ```
//!
//! Only PRI is required. TIMESTAMP is any form [`timestamp::bsd`] knows; HOSTNAME is looked for
//! only after a timestamp (RFC 3164 section 4.3.2: without one, everything after PRI is content).
//! Variants handled:
//! - Cisco IOS `<189>123: [host: ][000042: ]*Mar  1 00:00:00.123 [UTC]: %SYS-5-CONFIG_I: ...`,
//!   NX-OS `<189>: 2024 Jan  5 12:00:00 UTC: %ETHPORT-5-IF_UP: ...`, ASA
//!   `<166>Jan 05 2024 12:00:00 [fw01 ]: %ASA-6-302013: ...`: the `%MNEMONIC` becomes MSGID and
//!   stays at the start of the message; counters are dropped.
//! - F5 BIG-IP `host severity tag[pid]: ...`: the severity word is dropped (PRI has it).
//! - Juniper, Linux and BSD `host tag[pid]: ...`, missing hostname, empty tag (`host : msg`).

use std::borrow::Cow;

use time::OffsetDateTime;

use super::{printable, timestamp, Format, ParseError, Parsed};

fn err(problem: super::Problem, at: usize) -> ParseError {
    ParseError {
        format: Format::Rfc3164,
        problem,
        at,
    }
}

/// The PRI of a message that has none (RFC 3164 section 4.3.3): user.notice.
const USER_NOTICE: u8 = 13;

/// Longest tag taken as APP-NAME (RFC 5424's APP-NAME maximum).
const TAG_MAX: usize = 48;
/// Longest pid taken as PROCID.
const PID_MAX: usize = 128;
/// Severity words F5 BIG-IP writes between the hostname and the tag.
const SEVERITY_WORDS: [&[u8]; 10] = [
    b"emerg", b"alert", b"crit", b"err", b"error", b"warning", b"warn", b"notice", b"info",
    b"debug",
];

/// Parses an RFC 3164 message (without trailing line terminators).
pub(super) fn parse(line: &[u8], now: OffsetDateTime) -> Result<Parsed<'_>, ParseError> {
    let (pri, after_pri) = match super::pri(line, false) {
        Ok(found) => found,
        // RFC 3164 section 4.3.3: a message without PRI is user.notice; what follows is
        // parsed as any other (devices that omit PRI still send a timestamp and a tag).
        Err((super::Problem::MissingPri, _)) if !line.is_empty() => (USER_NOTICE, 0),
        Err((p, at)) => return Err(err(p, at)),
    };
    let mut parsed = Parsed::new(Format::Rfc3164, pri);
    let mut pos = skip_spaces(line, after_pri);

    let mut cisco = false;
    let mut stamp = None;
    if let Some((after, origin)) = cisco_prefix(line, pos) {
        let s = timestamp_at(line, after, now)?;
        if s.is_some() || line.get(after) == Some(&b'%') {
            cisco = true;
            pos = after;
            parsed.host = origin;
            stamp = s;
        }
    }
    if !cisco {
        stamp = timestamp_at(line, pos, now)?;
    }
    if let Some((t, end)) = stamp {
        parsed.timestamp = Some(t);
        pos = skip_spaces(line, end);
        if !cisco {
            pos = hostname(line, pos, &mut parsed);
        }
    }

    let tok = token(line, pos);
    if tok == b":" {
        // An empty tag (`host : msg`, Cisco ASA `host : %ASA-...`).
        pos = skip_spaces(line, pos + 1);
    }
    let tok = token(line, pos);
    if let Some(mnemonic) = cisco_mnemonic(tok) {
        // The mnemonic stays in the message: it is what operators search for.
        parsed.msgid = Some(mnemonic);
    } else if let Some((app, procid)) = tag(tok) {
        parsed.app = Some(app);
        parsed.procid = procid;
        pos = skip_spaces(line, pos + tok.len());
    } else if let Some((app, procid, used)) = glued_tag(tok) {
        // `tag:message`, no space after the colon.
        parsed.app = Some(app);
        parsed.procid = procid;
        pos += used;
    } else if let Some((app, procid)) = stamp
        .and(parsed.host)
        .and_then(|_| bare_tag(tok))
        .filter(|_| line.get(pos + tok.len()) == Some(&b' '))
    {
        // A whole header (timestamp, host) and then `app[pid]` without a colon: the tag
        // (`<13>Jan  1 10:00:00 host sshd[42] message`).
        parsed.app = Some(app);
        parsed.procid = procid;
        pos = skip_spaces(line, pos + tok.len());
    }
    parsed.message = match line.get(pos..) {
        Some(rest) => super::lossy(rest),
        None => Cow::Borrowed(""),
    };
    Ok(parsed)
}

fn skip_spaces(line: &[u8], mut i: usize) -> usize {
    while line.get(i) == Some(&b' ') {
        i += 1;
    }
    i
}

/// The bytes from `i` to the next space or the end.
fn token(line: &[u8], i: usize) -> &[u8] {
    let rest = line.get(i..).unwrap_or_default();
    let n = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    &rest[..n]
}

/// Cisco message counters (`123: `, `000042: `, or NX-OS's bare `: `), with an optional
/// origin hostname (`router1: `) after the first counter. Returns the offset after them.
fn cisco_prefix(line: &[u8], mut i: usize) -> Option<(usize, Option<&str>)> {
    let mut counted = false;
    if line.get(i..i + 2) == Some(b": ") {
        counted = true;
        i = skip_spaces(line, i + 1);
    }
    let mut host = None;
    for _ in 0..3 {
        let tok = token(line, i);
        if tok.len() < 2 || tok.last() != Some(&b':') || line.get(i + tok.len()) != Some(&b' ') {
            break;
        }
        let name = &tok[..tok.len() - 1];
        if name.len() <= 10 && name.iter().all(u8::is_ascii_digit) {
            counted = true;
        } else if counted && host.is_none() && is_hostname(name) {
            host = printable(name);
        } else {
            break;
        }
        i = skip_spaces(line, i + tok.len());
    }
    counted.then_some((i, host))
}

/// A timestamp at `i`, with Cisco's `*` (clock not synchronized) or `.` marks before it and an
/// optional `:` after it. It must end the line or be followed by a space. Returns the time and
/// the offset after it.
fn timestamp_at(
    line: &[u8],
    i: usize,
    now: OffsetDateTime,
) -> Result<Option<(OffsetDateTime, usize)>, ParseError> {
    let start = match line.get(i) {
        Some(b'*' | b'.') => i + 1,
        _ => i,
    };
    let Some((t, mut end)) = timestamp::bsd(line, start, now).map_err(|p| err(p, start))? else {
        return Ok(None);
    };
    if line.get(end) == Some(&b':') {
        end += 1;
    }
    match line.get(end) {
        None | Some(b' ') => Ok(Some((t, end))),
        Some(_) => Ok(None),
    }
}

/// HOSTNAME after a timestamp, if the token at `pos` looks like one rather than a tag; then the
/// F5 severity word. Returns the offset of what follows.
fn hostname<'a>(line: &'a [u8], pos: usize, parsed: &mut Parsed<'a>) -> usize {
    let tok = token(line, pos);
    if !is_hostname(tok) {
        return pos;
    }
    parsed.host = printable(tok);
    let next = skip_spaces(line, pos + tok.len());
    let word = token(line, next);
    if SEVERITY_WORDS.contains(&word) {
        let after = skip_spaces(line, next + word.len());
        if tag(token(line, after)).is_some() {
            return after;
        }
    }
    next
}

/// Letters, digits, `.`, `-`, `_`, and `:` (IPv6) except at the end, where it marks a tag.
fn is_hostname(tok: &[u8]) -> bool {
    !tok.is_empty()
        && tok.len() <= 255
        && tok.last() != Some(&b':')
        && tok
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
}

/// `%FACILITY-SEVERITY-MNEMONIC:` (Cisco IOS, NX-OS, ASA): the name without `%` and `:`.
fn cisco_mnemonic(tok: &[u8]) -> Option<&str> {
    let name = tok.strip_prefix(b"%")?.strip_suffix(b":")?;
    let ok = (1..=32).contains(&name.len())
        && name.contains(&b'-')
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        printable(name)
    } else {
        None
    }
}

/// `app:message` (no space after the colon): the app, the pid, and the bytes the tag and its
/// colon take. The app must start with a letter and the message must not start with `/`, so
/// clock times (`10:00:00`) and URLs (`http://...`) stay messages.
fn glued_tag(tok: &[u8]) -> Option<(&str, Option<&str>, usize)> {
    let colon = tok.iter().position(|&b| b == b':')?;
    let rest = &tok[colon + 1..];
    if !tok.first()?.is_ascii_alphabetic() || rest.is_empty() || rest.starts_with(b"/") {
        return None;
    }
    let (app, pid) = tag(&tok[..=colon])?;
    Some((app, pid, colon + 1))
}

/// A tag without its colon, `app[pid]`: a word of letters, digits, `-`, `_`, `.` and `/`,
/// starting with a letter, and its pid. Without the pid a word is the message's first word
/// (RFC 3164's own example 2, `10.0.0.99 Use the BFG!`, has no tag).
fn bare_tag(tok: &[u8]) -> Option<(&str, Option<&str>)> {
    let open = tok.iter().position(|&b| b == b'[')?;
    let pid = tok[open + 1..].strip_suffix(b"]")?;
    if pid.is_empty() || pid.len() > PID_MAX || pid.iter().any(|&b| b == b'[' || b == b']') {
        return None;
    }
    let (app, pid) = (&tok[..open], Some(printable(pid)?));
    let ok = app.len() <= TAG_MAX
        && app.first()?.is_ascii_alphabetic()
        && app
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
    if !ok {
        return None;
    }
    Some((printable(app)?, pid))
}

/// `app:` or `app[pid]:`: the app and the pid.
fn tag(tok: &[u8]) -> Option<(&str, Option<&str>)> {
    let name = tok.strip_suffix(b":")?;
    let (app, pid) = match name.strip_suffix(b"]") {
        Some(inner) => {
            let open = inner.iter().position(|&b| b == b'[')?;
            let pid = &inner[open + 1..];
            if pid.is_empty() || pid.len() > PID_MAX || pid.iter().any(|&b| b == b'[' || b == b']')
            {
                return None;
            }
            (&inner[..open], Some(printable(pid)?))
        }
        None => (name, None),
    };
    if app.is_empty() || app.len() > TAG_MAX || app.iter().any(|&b| b == b'[' || b == b']') {
        return None;
    }
    Some((printable(app)?, pid))
}
