//! RELP frames: `TXNR SP COMMAND SP DATALEN [SP DATA] LF`, cut from a byte stream however it
//! is split into reads, and the frames the server answers with.
//!
//! Unlike syslog framing, a RELP stream cannot resynchronise after a bad frame: the parser
//! reports the first [`RelpFrameError`] and the connection is closed.

/// Most digits of a TXNR or DATALEN.
const MAX_DIGITS: usize = 9;
/// Most letters of a COMMAND.
const MAX_COMMAND: usize = 32;
/// Longest response text after the code (RELP: at most 80 octets including the code).
const MAX_RSP_TEXT: usize = 80;

/// One frame read from the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RelpFrame<'a> {
    /// The transaction number the response must carry.
    pub txnr: u32,
    /// `open`, `syslog`, `close`, ...
    pub command: &'a [u8],
    /// The DATA part (empty when DATALEN is 0).
    pub data: &'a [u8],
}

/// Why a stream is not RELP; the connection cannot continue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RelpFrameError {
    /// TXNR is missing, too long, or not followed by a space.
    #[error("malformed RELP frame: bad transaction number near {near:?}")]
    Txnr {
        /// The first bytes of the frame.
        near: String,
    },
    /// COMMAND is missing, too long, or not letters.
    #[error("malformed RELP frame: bad command near {near:?}")]
    Command {
        /// The first bytes of the frame.
        near: String,
    },
    /// DATALEN is missing, too long, or not followed by a space or LF.
    #[error("malformed RELP frame: bad data length near {near:?}")]
    DataLen {
        /// The first bytes of the frame.
        near: String,
    },
    /// DATALEN exceeds the limit.
    #[error("RELP frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The announced DATALEN.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The byte after DATA is not the LF trailer.
    #[error("malformed RELP frame: no LF after {len} bytes of data (txnr {txnr})")]
    Trailer {
        /// The frame's transaction number.
        txnr: u32,
        /// Its DATALEN.
        len: usize,
    },
}

/// Cuts RELP frames from a stream. Holds at most one partial frame: its header and at most
/// `max_data` bytes of data.
#[derive(Debug)]
pub(crate) struct RelpParser {
    partial: Vec<u8>,
    max_data: usize,
}

impl RelpParser {
    /// A parser that refuses frames whose DATALEN exceeds `max_data`.
    pub fn new(max_data: usize) -> Self {
        RelpParser {
            partial: Vec::new(),
            max_data,
        }
    }

    /// Bytes held of a partial frame.
    #[cfg(test)]
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    /// Feeds one read; calls `emit` with each complete frame in order. After an error, the
    /// stream is not RELP: stop feeding it.
    pub fn push<F>(&mut self, input: &[u8], mut emit: F) -> Result<(), RelpFrameError>
    where
        F: FnMut(RelpFrame<'_>),
    {
        if self.partial.is_empty() {
            let used = parse_all(input, self.max_data, &mut emit)?;
            self.partial.extend_from_slice(&input[used..]);
        } else {
            self.partial.extend_from_slice(input);
            let used = parse_all(&self.partial, self.max_data, &mut emit)?;
            self.partial.drain(..used);
        }
        Ok(())
    }
}

/// Parses every complete frame at the start of `bytes`; returns how many bytes they used.
fn parse_all<F>(bytes: &[u8], max_data: usize, emit: &mut F) -> Result<usize, RelpFrameError>
where
    F: FnMut(RelpFrame<'_>),
{
    let mut used = 0;
    while let Some((frame, len)) = parse_one(&bytes[used..], max_data)? {
        emit(frame);
        used += len;
    }
    Ok(used)
}

/// The frame at the start of `bytes` and its length, `None` if it is not complete yet.
fn parse_one(
    bytes: &[u8],
    max_data: usize,
) -> Result<Option<(RelpFrame<'_>, usize)>, RelpFrameError> {
    let near = || String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into_owned();
    // TXNR SP
    let Some((txnr, mut at)) =
        digits(bytes, 0).map_err(|()| RelpFrameError::Txnr { near: near() })?
    else {
        return Ok(None);
    };
    let txnr = u32::try_from(txnr).map_err(|_| RelpFrameError::Txnr { near: near() })?;
    match bytes.get(at) {
        None => return Ok(None),
        Some(b' ') => at += 1,
        Some(_) => return Err(RelpFrameError::Txnr { near: near() }),
    }
    // COMMAND SP
    let start = at;
    while at < bytes.len() && bytes[at].is_ascii_alphabetic() {
        at += 1;
        if at - start > MAX_COMMAND {
            return Err(RelpFrameError::Command { near: near() });
        }
    }
    let command = &bytes[start..at];
    match bytes.get(at) {
        None => return Ok(None),
        Some(b' ') if !command.is_empty() => at += 1,
        Some(_) => return Err(RelpFrameError::Command { near: near() }),
    }
    // DATALEN, then SP DATA LF, or LF alone when it is 0
    let Some((len, after)) =
        digits(bytes, at).map_err(|()| RelpFrameError::DataLen { near: near() })?
    else {
        return Ok(None);
    };
    at = after;
    let len = usize::try_from(len).map_err(|_| RelpFrameError::DataLen { near: near() })?;
    if len > max_data {
        return Err(RelpFrameError::TooLarge { len, max: max_data });
    }
    let frame = |data| RelpFrame {
        txnr,
        command,
        data,
    };
    match bytes.get(at) {
        None => return Ok(None),
        Some(b'\n') if len == 0 => return Ok(Some((frame(&[]), at + 1))),
        // Some senders write "0 " before the LF of an empty frame.
        Some(b' ') if len == 0 => {
            return match bytes.get(at + 1) {
                None => Ok(None),
                Some(b'\n') => Ok(Some((frame(&[]), at + 2))),
                Some(_) => Err(RelpFrameError::Trailer { txnr, len }),
            }
        }
        Some(b' ') => at += 1,
        Some(_) => return Err(RelpFrameError::DataLen { near: near() }),
    }
    let Some(data) = bytes.get(at..at + len) else {
        return Ok(None);
    };
    match bytes.get(at + len) {
        None => Ok(None),
        Some(b'\n') => Ok(Some((frame(data), at + len + 1))),
        Some(_) => Err(RelpFrameError::Trailer { txnr, len }),
    }
}

/// The number at `bytes[at..]` and the index after it: `Ok(None)` if the input ends inside
/// it, `Err` if there is no digit or more than [`MAX_DIGITS`].
fn digits(bytes: &[u8], at: usize) -> Result<Option<(u64, usize)>, ()> {
    let mut value = 0u64;
    let mut i = at;
    while let Some(&b) = bytes.get(i) {
        if !b.is_ascii_digit() {
            break;
        }
        if i - at == MAX_DIGITS {
            return Err(());
        }
        value = value * 10 + u64::from(b - b'0');
        i += 1;
    }
    if i == bytes.len() {
        return Ok(None);
    }
    if i == at {
        return Err(());
    }
    Ok(Some((value, i)))
}

/// Appends `TXNR rsp DATALEN DATA LF` with `code SP text` (text cut to RELP's 80 octets) and
/// `extra` lines (the offers of an `open` answer).
pub(crate) fn write_rsp(out: &mut Vec<u8>, txnr: u32, code: u16, text: &str, extra: &str) {
    let mut text_len = text.len().min(MAX_RSP_TEXT - 4);
    while !text.is_char_boundary(text_len) {
        text_len -= 1;
    }
    let text = &text[..text_len];
    let mut data = format!("{code} {text}");
    if !extra.is_empty() {
        data.push('\n');
        data.push_str(extra);
    }
    out.extend_from_slice(format!("{txnr} rsp {} ", data.len()).as_bytes());
    out.extend_from_slice(data.as_bytes());
    out.push(b'\n');
}

/// The frame a server sends before it closes the session: `0 serverclose 0 LF`.
pub(crate) const SERVERCLOSE: &[u8] = b"0 serverclose 0\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in one read and in reads of every split; returns (txnr, command, data)
    /// of each frame and the error, if any.
    type Parsed = (Vec<(u32, String, String)>, Option<RelpFrameError>);

    fn parse(reads: &[&[u8]], max: usize) -> Parsed {
        let mut parser = RelpParser::new(max);
        let mut frames = Vec::new();
        for read in reads {
            let r = parser.push(read, |f| {
                frames.push((
                    f.txnr,
                    String::from_utf8_lossy(f.command).into_owned(),
                    String::from_utf8_lossy(f.data).into_owned(),
                ))
            });
            if let Err(e) = r {
                return (frames, Some(e));
            }
        }
        (frames, None)
    }

    fn f(txnr: u32, cmd: &str, data: &str) -> (u32, String, String) {
        (txnr, cmd.to_owned(), data.to_owned())
    }

    #[test]
    fn frames_table() {
        let offers = "relp_version=0\nrelp_software=librelp,1.11.0,https://librelp.adiscon.com\ncommands=syslog";
        let open = format!("1 open {} {offers}\n", offers.len());
        let cases: Vec<(&str, Parsed)> = vec![
            (&open, (vec![f(1, "open", offers)], None)),
            (
                "2 syslog 5 <13>a\n3 syslog 3 b c\n",
                (vec![f(2, "syslog", "<13>a"), f(3, "syslog", "b c")], None),
            ),
            ("4 close 0\n", (vec![f(4, "close", "")], None)),
            ("4 close 0 \n", (vec![f(4, "close", "")], None)),
            ("5 syslog 3 a\nb\n", (vec![f(5, "syslog", "a\nb")], None)),
            ("6 syslog 2 ab", (vec![], None)), // incomplete: waits
            ("7 sys", (vec![], None)),
            (
                "x open 0\n",
                (
                    vec![],
                    Some(RelpFrameError::Txnr {
                        near: "x open 0\n".into(),
                    }),
                ),
            ),
            (
                "1234567890 open 0\n",
                (
                    vec![],
                    Some(RelpFrameError::Txnr {
                        near: "1234567890 open 0\n".into(),
                    }),
                ),
            ),
            (
                "1 op3n 0\n",
                (
                    vec![],
                    Some(RelpFrameError::Command {
                        near: "1 op3n 0\n".into(),
                    }),
                ),
            ),
            (
                "1  0\n",
                (
                    vec![],
                    Some(RelpFrameError::Command {
                        near: "1  0\n".into(),
                    }),
                ),
            ),
            (
                "1 syslog x\n",
                (
                    vec![],
                    Some(RelpFrameError::DataLen {
                        near: "1 syslog x\n".into(),
                    }),
                ),
            ),
            (
                "1 syslog 3xabc\n",
                (
                    vec![],
                    Some(RelpFrameError::DataLen {
                        near: "1 syslog 3xabc\n".into(),
                    }),
                ),
            ),
            (
                "1 syslog 3 abcd\n",
                (vec![], Some(RelpFrameError::Trailer { txnr: 1, len: 3 })),
            ),
            (
                "1 syslog 101 ",
                (
                    vec![],
                    Some(RelpFrameError::TooLarge { len: 101, max: 100 }),
                ),
            ),
            (
                "1 syslog 1 a\nGET / HTTP/1.1\r\n",
                (
                    vec![f(1, "syslog", "a")],
                    Some(RelpFrameError::Txnr {
                        near: "GET / HTTP/1.1\r\n".into(),
                    }),
                ),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(&[input.as_bytes()], 100), expected, "{input:?}");
            // Every split into two reads gives the same frames (errors may differ in `near`).
            for cut in 0..=input.len() {
                let (a, b) = input.as_bytes().split_at(cut);
                let (frames, error) = parse(&[a, b], 100);
                assert_eq!(frames, expected.0, "{input:?} cut at {cut}");
                assert_eq!(
                    error.is_some(),
                    expected.1.is_some(),
                    "{input:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn a_partial_frame_is_held_and_bounded() {
        let mut parser = RelpParser::new(10);
        parser
            .push(b"1 syslog 10 abc", |_| panic!("no frame yet"))
            .unwrap();
        assert_eq!(parser.buffered(), 15);
        let mut got = Vec::new();
        parser
            .push(b"defghij\n2 close 0\n", |f| got.push(f.data.to_vec()))
            .unwrap();
        assert_eq!(got, vec![b"abcdefghij".to_vec(), Vec::new()]);
        assert_eq!(parser.buffered(), 0);
    }

    #[test]
    fn responses_are_framed_and_their_text_is_cut_to_80_octets() {
        let mut out = Vec::new();
        write_rsp(&mut out, 7, 200, "OK", "");
        write_rsp(&mut out, 1, 200, "OK", "relp_version=0\ncommands=syslog");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "7 rsp 6 200 OK\n1 rsp 37 200 OK\nrelp_version=0\ncommands=syslog\n"
        );
        let mut out = Vec::new();
        write_rsp(&mut out, 9, 500, &"é".repeat(100), "");
        let (frames, error) = parse(&[&out], 1000);
        assert_eq!(error, None);
        assert_eq!(frames[0].1, "rsp");
        assert!(frames[0].2.len() <= 80, "{}", frames[0].2.len());
    }
}
