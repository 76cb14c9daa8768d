//! RFC 6587 framing of syslog over a TCP byte stream.
//!
//! Each frame is detected on its own: a frame that starts with a non-zero digit followed by
//! digits and a space is octet-counted (`MSG-LEN SP SYSLOG-MSG`); anything else runs to the next
//! LF (a CR before it is dropped), so one stream may mix both. Empty lines between frames are
//! skipped.
//!
//! A [`Framer`] holds at most `max_frame + 1` bytes of a partial frame, however the stream is
//! split into reads. A frame over the limit is reported once as a [`FrameError`] and skipped —
//! exactly `MSG-LEN` bytes for an octet-counted frame, up to the next LF otherwise — and framing
//! goes on with the next frame, so one bad frame never costs the connection.
//!
//! ```
//! use meniscus_event::framing::{Framer, Framing};
//!
//! let mut framer = Framer::new(1024);
//! let mut frames = Vec::new();
//! for read in [&b"11 <13>hello a"[..], b"<13>hi\r\n<13>unfinished"] {
//!     framer.push(read, |f| frames.push(f.map(|f| (f.framing, f.data.to_vec()))));
//! }
//! framer.finish(|f| frames.push(f.map(|f| (f.framing, f.data.to_vec()))));
//! assert_eq!(frames, vec![
//!     Ok((Framing::OctetCounting, b"<13>hello a".to_vec())),
//!     Ok((Framing::LineFeed, b"<13>hi".to_vec())),
//!     Ok((Framing::LineFeed, b"<13>unfinished".to_vec())),
//! ]);
//! ```

use memchr::memchr;

/// How a frame was delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// `MSG-LEN SP SYSLOG-MSG` (RFC 6587 section 3.4.1).
    OctetCounting,
    /// Terminated by LF or CRLF (RFC 6587 section 3.4.2, non-transparent framing).
    LineFeed,
}

/// One syslog message cut from the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The message, without length prefix or line terminator.
    pub data: &'a [u8],
    /// How it was delimited.
    pub framing: Framing,
}

/// A frame that could not be delivered. The framer has already recovered from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// An octet-counted frame longer than the limit; its bytes are skipped.
    #[error("octet-counted frame of {len} bytes exceeds the limit of {max} bytes; skipping it")]
    CountTooLarge {
        /// The announced MSG-LEN.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// A line longer than the limit; the rest of it up to the next LF is skipped.
    #[error("line longer than the limit of {max} bytes; skipping to the next LF")]
    LineTooLong {
        /// The limit.
        max: usize,
    },
    /// The stream ended inside an octet-counted frame.
    #[error("stream ended {missing} bytes short of an octet-counted frame of {len} bytes")]
    Truncated {
        /// The announced MSG-LEN.
        len: usize,
        /// How many bytes did not arrive.
        missing: usize,
    },
}

/// Most MSG-LEN digits accepted: enough for any frame this side of 10 GB.
const MAX_LEN_DIGITS: u8 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At a frame boundary, nothing buffered.
    Start,
    /// Reading MSG-LEN: its value so far and how many digits it had.
    Count { len: u64, digits: u8 },
    /// Collecting an octet-counted frame into `buf`; `remaining` bytes to go.
    Counted { remaining: usize },
    /// Collecting a line into `buf`.
    Line,
    /// Skipping the rest of an oversized octet-counted frame.
    SkipCount { remaining: u64 },
    /// Skipping the rest of an oversized line.
    SkipLine,
}

/// Cuts a byte stream into syslog frames. One per connection.
#[derive(Debug, Clone)]
pub struct Framer {
    max_frame: usize,
    state: State,
    buf: Vec<u8>,
}

impl Framer {
    /// A framer that delivers frames of at most `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Framer {
            max_frame,
            state: State::Start,
            buf: Vec::new(),
        }
    }

    /// The frame size limit.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Bytes of a partial frame held until more of the stream arrives (at most `max_frame + 1`).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feeds the next bytes of the stream and calls `emit` for every frame (or frame error) they
    /// complete, in stream order. Frames that lie wholly inside `input` are not copied.
    pub fn push<F>(&mut self, mut input: &[u8], mut emit: F)
    where
        F: FnMut(Result<Frame<'_>, FrameError>),
    {
        while let Some(&first) = input.first() {
            match self.state {
                State::Start => match first {
                    b'1'..=b'9' => self.state = State::Count { len: 0, digits: 0 },
                    b'\n' => input = &input[1..],
                    _ => self.state = State::Line,
                },
                State::Count { len, digits } => {
                    if first.is_ascii_digit() && digits < MAX_LEN_DIGITS {
                        input = &input[1..];
                        self.state = State::Count {
                            len: len * 10 + u64::from(first - b'0'),
                            digits: digits + 1,
                        };
                    } else if first == b' ' {
                        input = &input[1..];
                        match usize::try_from(len) {
                            Ok(len) if len <= self.max_frame => {
                                self.state = State::Counted { remaining: len };
                            }
                            _ => {
                                emit(Err(FrameError::CountTooLarge {
                                    len,
                                    max: self.max_frame,
                                }));
                                self.state = State::SkipCount { remaining: len };
                            }
                        }
                    } else {
                        // Not a MSG-LEN after all: the digits begin a line. They start with a
                        // non-zero digit, so printing the number gives them back.
                        self.buf.extend_from_slice(len.to_string().as_bytes());
                        self.state = State::Line;
                    }
                }
                State::Counted { remaining } => {
                    let n = remaining.min(input.len());
                    let (data, rest) = input.split_at(n);
                    input = rest;
                    if n == remaining {
                        self.state = State::Start;
                        let data = if self.buf.is_empty() {
                            data
                        } else {
                            self.buf.extend_from_slice(data);
                            &self.buf
                        };
                        emit(Ok(Frame {
                            data,
                            framing: Framing::OctetCounting,
                        }));
                        self.buf.clear();
                    } else {
                        self.buf.extend_from_slice(data);
                        self.state = State::Counted {
                            remaining: remaining - n,
                        };
                    }
                }
                State::Line => match memchr(b'\n', input) {
                    Some(i) => {
                        let (line, rest) = (&input[..i], &input[i + 1..]);
                        input = rest;
                        self.state = State::Start;
                        // One byte over the limit may be a CR that is about to be dropped.
                        let fits = self.buf.len() + line.len() <= self.max_frame.saturating_add(1);
                        let data = if !fits {
                            &[][..]
                        } else if self.buf.is_empty() {
                            line
                        } else {
                            self.buf.extend_from_slice(line);
                            &self.buf
                        };
                        let data = data.strip_suffix(b"\r").unwrap_or(data);
                        if !fits || data.len() > self.max_frame {
                            emit(Err(FrameError::LineTooLong {
                                max: self.max_frame,
                            }));
                        } else if !data.is_empty() {
                            emit(Ok(Frame {
                                data,
                                framing: Framing::LineFeed,
                            }));
                        }
                        self.buf.clear();
                    }
                    None => {
                        if self.buf.len() + input.len() > self.max_frame.saturating_add(1) {
                            emit(Err(FrameError::LineTooLong {
                                max: self.max_frame,
                            }));
                            self.buf.clear();
                            self.state = State::SkipLine;
                        } else {
                            self.buf.extend_from_slice(input);
                        }
                        input = &[];
                    }
                },
                State::SkipCount { remaining } => {
                    let n = remaining.min(input.len() as u64);
                    // n <= input.len(), so it fits a usize.
                    input = &input[n as usize..];
                    self.state = if n == remaining {
                        State::Start
                    } else {
                        State::SkipCount {
                            remaining: remaining - n,
                        }
                    };
                }
                State::SkipLine => match memchr(b'\n', input) {
                    Some(i) => {
                        input = &input[i + 1..];
                        self.state = State::Start;
                    }
                    None => input = &[],
                },
            }
        }
    }

    /// Ends the stream: delivers a last line that had no LF, reports an octet-counted frame that
    /// was cut short, and resets the framer.
    pub fn finish<F>(&mut self, mut emit: F)
    where
        F: FnMut(Result<Frame<'_>, FrameError>),
    {
        if let State::Count { len, .. } = self.state {
            self.buf.extend_from_slice(len.to_string().as_bytes());
            self.state = State::Line;
        }
        match self.state {
            State::Count { .. } | State::Line => {
                let data = self.buf.strip_suffix(b"\r").unwrap_or(&self.buf);
                if data.len() > self.max_frame {
                    emit(Err(FrameError::LineTooLong {
                        max: self.max_frame,
                    }));
                } else if !data.is_empty() {
                    emit(Ok(Frame {
                        data,
                        framing: Framing::LineFeed,
                    }));
                }
            }
            State::Counted { remaining } => emit(Err(FrameError::Truncated {
                len: self.buf.len() + remaining,
                missing: remaining,
            })),
            State::Start | State::SkipCount { .. } | State::SkipLine => {}
        }
        self.buf.clear();
        self.state = State::Start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Out = Result<(Framing, Vec<u8>), FrameError>;

    fn own(f: Result<Frame<'_>, FrameError>) -> Out {
        f.map(|f| (f.framing, f.data.to_vec()))
    }

    /// Feeds `chunks` one after another, then ends the stream.
    fn run(max: usize, chunks: &[&[u8]]) -> Vec<Out> {
        let mut framer = Framer::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            framer.push(chunk, |f| out.push(own(f)));
            assert!(
                framer.buffered() <= max + 1,
                "buffered {}",
                framer.buffered()
            );
        }
        framer.finish(|f| out.push(own(f)));
        out
    }

    fn lf(s: &str) -> Out {
        Ok((Framing::LineFeed, s.as_bytes().to_vec()))
    }

    fn oc(s: &str) -> Out {
        Ok((Framing::OctetCounting, s.as_bytes().to_vec()))
    }

    #[test]
    fn framings_are_detected_per_frame() {
        let stream = b"<13>a\n5 <13>b<13>c\r\n\n\r\n11 <13>line\nx\n<13>d";
        assert_eq!(
            run(64, &[stream]),
            vec![
                lf("<13>a"),
                oc("<13>b"),
                lf("<13>c"),
                oc("<13>line\nx\n"),
                lf("<13>d"),
            ]
        );
    }

    #[test]
    fn digits_without_a_space_begin_a_line() {
        assert_eq!(
            run(
                64,
                &[b"123abc\n", b"0 zero\n", b"12345678901 eleven digits\n"]
            ),
            vec![lf("123abc"), lf("0 zero"), lf("12345678901 eleven digits")]
        );
    }

    #[test]
    fn a_frame_split_at_every_byte_is_the_same_frame() {
        let stream: &[u8] = b"11 <13>hello a<13>hi\r\n3 abc<13>tail";
        let want = run(64, &[stream]);
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(run(64, &[a, b]), want, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run(64, &bytes), want);
    }

    #[test]
    fn an_oversized_line_is_reported_once_and_skipped_to_the_next_lf() {
        let long = "x".repeat(100);
        let stream = format!("<13>ok\n{long}\n<13>after\n");
        for chunk in [1, 7, 50, 1000] {
            let chunks: Vec<&[u8]> = stream.as_bytes().chunks(chunk).collect();
            assert_eq!(
                run(10, &chunks),
                vec![
                    lf("<13>ok"),
                    Err(FrameError::LineTooLong { max: 10 }),
                    lf("<13>after")
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn the_limit_is_inclusive_and_a_cr_does_not_count() {
        assert_eq!(
            run(6, &[b"<13>ab\r\n<13>abc\n", b"<13>ab\r", b"\n"]),
            vec![
                lf("<13>ab"),
                Err(FrameError::LineTooLong { max: 6 }),
                lf("<13>ab")
            ]
        );
        assert_eq!(run(5, &[b"5 <13>a"]), vec![oc("<13>a")]);
    }

    #[test]
    fn an_oversized_counted_frame_is_skipped_exactly() {
        let stream = format!("5 <13>a200 {}5 <13>b", "y".repeat(200));
        for chunk in [1, 3, 64, 1000] {
            let chunks: Vec<&[u8]> = stream.as_bytes().chunks(chunk).collect();
            assert_eq!(
                run(16, &chunks),
                vec![
                    oc("<13>a"),
                    Err(FrameError::CountTooLarge { len: 200, max: 16 }),
                    oc("<13>b")
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn a_huge_count_is_refused_without_buffering() {
        let mut framer = Framer::new(1024);
        let mut out = Vec::new();
        framer.push(b"9999999999 ", |f| out.push(own(f)));
        assert_eq!(
            out,
            vec![Err(FrameError::CountTooLarge {
                len: 9_999_999_999,
                max: 1024
            })]
        );
        let chunk = vec![b'z'; 1 << 20];
        for _ in 0..16 {
            framer.push(&chunk, |f| out.push(own(f)));
            assert_eq!(framer.buffered(), 0);
        }
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_100_mb_line_holds_at_most_the_limit() {
        let mut framer = Framer::new(64 * 1024);
        let mut out = Vec::new();
        let chunk = vec![b'g'; 1 << 20];
        for _ in 0..100 {
            framer.push(&chunk, |f| out.push(own(f)));
            assert!(framer.buffered() <= 64 * 1024 + 1);
        }
        framer.push(b"\n<13>next\n", |f| out.push(own(f)));
        assert_eq!(
            out,
            vec![
                Err(FrameError::LineTooLong { max: 64 * 1024 }),
                lf("<13>next")
            ]
        );
    }

    #[test]
    fn end_of_stream_reports_a_cut_frame() {
        assert_eq!(
            run(64, &[b"10 <13>a", b"b"]),
            vec![Err(FrameError::Truncated {
                len: 10,
                missing: 4
            })]
        );
        assert_eq!(run(64, &[b"42"]), vec![lf("42")]);
        assert_eq!(run(64, &[b"<13>x\r"]), vec![lf("<13>x")]);
        assert_eq!(
            run(3, &[b"abcd"]),
            vec![Err(FrameError::LineTooLong { max: 3 })]
        );
        assert_eq!(run(64, &[b"\n\r\n"]), vec![]);
    }

    #[test]
    fn errors_read_clearly() {
        assert_eq!(
            FrameError::CountTooLarge { len: 200, max: 16 }.to_string(),
            "octet-counted frame of 200 bytes exceeds the limit of 16 bytes; skipping it"
        );
        assert_eq!(
            FrameError::LineTooLong { max: 10 }.to_string(),
            "line longer than the limit of 10 bytes; skipping to the next LF"
        );
    }

    /// A stream of well-formed frames and the frames it must yield.
    fn stream() -> impl Strategy<Value = (Vec<u8>, Vec<Out>)> {
        let frame = prop_oneof![
            // Octet-counted, any bytes (LF included), possibly over the limit of 48.
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(|data| {
                let mut bytes = format!("{} ", data.len()).into_bytes();
                if data.is_empty() {
                    // MSG-LEN 0 is not octet counting; send an empty line instead.
                    return (b"\n".to_vec(), None);
                }
                bytes.extend_from_slice(&data);
                let out = if data.len() > 48 {
                    Err(FrameError::CountTooLarge {
                        len: data.len() as u64,
                        max: 48,
                    })
                } else {
                    Ok((Framing::OctetCounting, data))
                };
                (bytes, Some(out))
            }),
            // A line starting with `<`, LF or CRLF terminated.
            ("<[^\n\r]{0,60}", any::<bool>()).prop_map(|(line, crlf)| {
                let mut bytes = line.clone().into_bytes();
                bytes.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
                let out = if line.len() > 48 {
                    Err(FrameError::LineTooLong { max: 48 })
                } else {
                    Ok((Framing::LineFeed, line.into_bytes()))
                };
                (bytes, Some(out))
            }),
        ];
        proptest::collection::vec(frame, 0..20).prop_map(|frames| {
            let mut bytes = Vec::new();
            let mut outs = Vec::new();
            for (b, o) in frames {
                bytes.extend_from_slice(&b);
                outs.extend(o);
            }
            (bytes, outs)
        })
    }

    fn chunked(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut from = 0;
        for c in cuts.into_iter().chain([bytes.len()]) {
            chunks.push(bytes[from..c].to_vec());
            from = c;
        }
        chunks
    }

    proptest! {
        #[test]
        fn well_formed_streams_yield_their_frames_however_split(
            (bytes, want) in stream(),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let chunks = chunked(&bytes, &cuts);
            let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(run(48, &refs), want);
        }

        #[test]
        fn any_stream_frames_the_same_however_split(
            bytes in proptest::collection::vec(
                prop_oneof![any::<u8>(), Just(b'\n'), Just(b' '), b'0'..=b'9'], 0..400),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
            max in 1usize..40,
        ) {
            let chunks = chunked(&bytes, &cuts);
            let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(run(max, &refs), run(max, &[&bytes]));
        }
    }
}
