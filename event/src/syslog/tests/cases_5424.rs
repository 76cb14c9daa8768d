//! RFC 5424 rows: the RFC's own examples, section 6 edge cases, real senders, and invalid lines.

use super::{bad, leak, v5424, Case};
use crate::syslog::Format;
use crate::{Facility as F, Severity as S};

const EX3_SD: super::SdWant = &[(
    "exampleSDID@32473",
    &[
        ("iut", "3"),
        ("eventSource", "Application"),
        ("eventID", "1011"),
    ],
)];

const EX4_SD: super::SdWant = &[EX3_SD[0], ("examplePriority@32473", &[("class", "high")])];

pub(super) fn cases() -> Vec<Case> {
    let mut cases = valid();
    cases.extend(invalid());
    cases
}

fn valid() -> Vec<Case> {
    let long_host = "h".repeat(255);
    let long_app = "a".repeat(48);
    let long_procid = "p".repeat(128);
    let long_msgid = "m".repeat(32);
    let max_fields = leak(format!(
        "<14>1 - {long_host} {long_app} {long_procid} {long_msgid} - x"
    ));
    let long_sd_id = leak(format!("<14>1 - - - - - [{}]", "i".repeat(32)));
    vec![
        // VERSION is 1 to 3 digits (RFC 5424 section 6.2.2): versions after 1 share its layout.
        v5424("VERSION 2", "<34>2 - h a - - - m")
            .pri(F::Auth, S::Crit)
            .host("h")
            .app("a")
            .msg("m"),
        v5424("VERSION 123", "<34>123 - h a - - - m")
            .pri(F::Auth, S::Crit)
            .host("h")
            .app("a")
            .msg("m"),
        // RFC 5424 section 6.5, examples 1 to 4.
        Case::new(
            "rfc5424 example 1: no structured data, BOM",
            b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8",
            Format::Rfc5424,
        )
        .pri(F::Auth, S::Crit)
        .ts("2003-10-11T22:14:15.003Z")
        .host("mymachine.example.com")
        .app("su")
        .msgid("ID47")
        .msg("'su root' failed for lonvick on /dev/pts/8"),
        v5424(
            "rfc5424 example 2: offset and microseconds",
            "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
        )
        .pri(F::Local4, S::Notice)
        .ts("2003-08-24T05:14:15.000003-07:00")
        .host("192.0.2.1")
        .app("myproc")
        .procid("8710")
        .msg("%% It's time to make the do-nuts."),
        Case::new(
            "rfc5424 example 3: structured data and message",
            b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] \xEF\xBB\xBFAn application event log entry...",
            Format::Rfc5424,
        )
        .pri(F::Local4, S::Notice)
        .ts("2003-10-11T22:14:15.003Z")
        .host("mymachine.example.com")
        .app("evntslog")
        .msgid("ID47")
        .sd(EX3_SD)
        .msg("An application event log entry..."),
        v5424(
            "rfc5424 example 4: two elements, no message",
            r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]"#,
        )
        .pri(F::Local4, S::Notice)
        .ts("2003-10-11T22:14:15.003Z")
        .host("mymachine.example.com")
        .app("evntslog")
        .msgid("ID47")
        .sd(EX4_SD),
        // Section 6 edge cases.
        v5424("every field NILVALUE, no message", "<14>1 - - - - - -").pri(F::User, S::Info),
        v5424("every field NILVALUE with a message", "<14>1 - - - - - - hello world")
            .pri(F::User, S::Info)
            .msg("hello world"),
        v5424("PRI 0 is kern.emerg", "<0>1 - - - - - - x").pri(F::Kern, S::Emerg).msg("x"),
        v5424("PRI 191 is local7.debug", "<191>1 - - - - - - x")
            .pri(F::Local7, S::Debug)
            .msg("x"),
        v5424("PRI of one digit", "<7>1 - - - - - - x").pri(F::Kern, S::Debug).msg("x"),
        v5424("timestamp without fraction", "<14>1 2026-11-15T11:00:00Z - - - - -")
            .pri(F::User, S::Info)
            .ts("2026-11-15T11:00:00Z"),
        v5424("one fraction digit", "<14>1 2026-11-15T11:00:00.5Z - - - - -")
            .pri(F::User, S::Info)
            .ts("2026-11-15T11:00:00.5Z"),
        v5424("six fraction digits", "<14>1 2026-11-15T11:00:00.123456Z - - - - -")
            .pri(F::User, S::Info)
            .ts("2026-11-15T11:00:00.123456Z"),
        v5424("positive half-hour offset", "<14>1 2026-11-15T16:30:00+05:30 - - - - -")
            .pri(F::User, S::Info)
            .ts("2026-11-15T16:30:00+05:30"),
        v5424("offset -00:00", "<14>1 2026-11-15T11:00:00-00:00 - - - - -")
            .pri(F::User, S::Info)
            .ts("2026-11-15T11:00:00Z"),
        v5424("offset +23:59", "<14>1 2026-11-15T11:00:00+23:59 - - - - -")
            .pri(F::User, S::Info)
            .ts("2026-11-15T11:00:00+23:59"),
        v5424("leap day", "<14>1 2024-02-29T23:59:59Z - - - - -")
            .pri(F::User, S::Info)
            .ts("2024-02-29T23:59:59Z"),
        v5424("unix epoch", "<14>1 1970-01-01T00:00:00Z - - - - -")
            .pri(F::User, S::Info)
            .ts("1970-01-01T00:00:00Z"),
        Case::new("fields at their maximum lengths", max_fields.as_bytes(), Format::Rfc5424)
            .pri(F::User, S::Info)
            .host(leak(long_host))
            .app(leak(long_app))
            .procid(leak(long_procid))
            .msgid(leak(long_msgid))
            .msg("x"),
        Case::new("SD-ID of 32 characters", long_sd_id.as_bytes(), Format::Rfc5424)
            .pri(F::User, S::Info)
            .sd(&[("iiiiiiiiiiiiiiiiiiiiiiiiiiiiiiii", &[])]),
        v5424(
            "escaped quote, backslash and bracket",
            r#"<14>1 - - - - - [x@1 q="a\"b" b="c\\d" k="e\]f"] m"#,
        )
        .pri(F::User, S::Info)
        .sd(&[("x@1", &[("q", "a\"b"), ("b", "c\\d"), ("k", "e]f")])])
        .msg("m"),
        v5424(
            "backslash before another character is kept",
            r#"<14>1 - - - - - [x@1 path="C:\temp\new"]"#,
        )
        .pri(F::User, S::Info)
        .sd(&[("x@1", &[("path", "C:\\temp\\new")])]),
        v5424("trailing escaped backslash", r#"<14>1 - - - - - [x@1 a="\\"]"#)
            .pri(F::User, S::Info)
            .sd(&[("x@1", &[("a", "\\")])]),
        v5424("empty value", r#"<14>1 - - - - - [x@1 a=""]"#)
            .pri(F::User, S::Info)
            .sd(&[("x@1", &[("a", "")])]),
        v5424(
            "value with spaces and equals signs",
            r#"<14>1 - - - - - [x@1 q="a = b c"]"#,
        )
        .pri(F::User, S::Info)
        .sd(&[("x@1", &[("q", "a = b c")])]),
        v5424("element without params", "<14>1 - - - - - [x@1] m")
            .pri(F::User, S::Info)
            .sd(&[("x@1", &[])])
            .msg("m"),
        v5424(
            "IANA timeQuality and origin with a repeated param",
            r#"<14>1 - - - - - [timeQuality tzKnown="1" isSynced="1"][origin ip="192.0.2.1" ip="192.0.2.129"]"#,
        )
        .pri(F::User, S::Info)
        .sd(&[
            ("timeQuality", &[("tzKnown", "1"), ("isSynced", "1")]),
            ("origin", &[("ip", "192.0.2.1"), ("ip", "192.0.2.129")]),
        ]),
        v5424("UTF-8 value", r#"<14>1 - - - - - [x@1 name="Übergröße ✓"]"#)
            .pri(F::User, S::Info)
            .sd(&[("x@1", &[("name", "Übergröße ✓")])]),
        v5424("BOM-less UTF-8 message", "<14>1 - - - - - - Grüße")
            .pri(F::User, S::Info)
            .msg("Grüße"),
        Case::new(
            "invalid UTF-8 message is decoded lossily",
            b"<14>1 - - - - - - caf\xE9",
            Format::Rfc5424,
        )
        .pri(F::User, S::Info)
        .msg("caf\u{FFFD}"),
        v5424("spaces in the message are kept", "<14>1 - - - - - -  two  spaces ")
            .pri(F::User, S::Info)
            .msg(" two  spaces "),
        v5424("message that looks like SD after NILVALUE", "<14>1 - - - - - - [not sd]")
            .pri(F::User, S::Info)
            .msg("[not sd]"),
        v5424("trailing space after SD means an empty message", "<14>1 - - - - - - ")
            .pri(F::User, S::Info),
        v5424("LF terminator is dropped", "<14>1 - - - - - - hello\n")
            .pri(F::User, S::Info)
            .msg("hello"),
        v5424("CRLF terminator is dropped", "<14>1 - - - - - - hello\r\n")
            .pri(F::User, S::Info)
            .msg("hello"),
        v5424("NUL terminator is dropped", "<14>1 - - - - - - hello\0")
            .pri(F::User, S::Info)
            .msg("hello"),
        v5424("IPv4-mapped IPv6 hostname", "<34>1 2003-10-11T22:14:15.003Z ::FFFF:129.144.52.38 su - ID47 - bananas")
            .pri(F::Auth, S::Crit)
            .ts("2003-10-11T22:14:15.003Z")
            .host("::FFFF:129.144.52.38")
            .app("su")
            .msgid("ID47")
            .msg("bananas"),
        v5424("forced RFC 5424", "<14>1 - h - - - - x")
            .input(Format::Rfc5424)
            .pri(F::User, S::Info)
            .host("h")
            .msg("x"),
        // Real senders.
        v5424(
            "util-linux logger --rfc5424",
            r#"<13>1 2026-11-15T11:59:59.123456+00:00 myhost alice - - [timeQuality tzKnown="1" isSynced="1" syncAccuracy="123000"] hello"#,
        )
        .pri(F::User, S::Notice)
        .ts("2026-11-15T11:59:59.123456Z")
        .host("myhost")
        .app("alice")
        .sd(&[(
            "timeQuality",
            &[("tzKnown", "1"), ("isSynced", "1"), ("syncAccuracy", "123000")],
        )])
        .msg("hello"),
        v5424(
            "rsyslog RSYSLOG_SyslogProtocol23Format",
            "<30>1 2026-11-15T12:00:01.000042+01:00 web01 nginx 4242 - - GET /index.html 200",
        )
        .pri(F::Daemon, S::Info)
        .ts("2026-11-15T12:00:01.000042+01:00")
        .host("web01")
        .app("nginx")
        .procid("4242")
        .msg("GET /index.html 200"),
        v5424(
            "Juniper structured-data format",
            r#"<165>1 2024-03-18T10:35:46.123Z router1 mgd 3046 UI_COMMIT [junos@2636.1.1.1.2.18 username="admin" comment="none"] User 'admin' requested 'commit' operation"#,
        )
        .pri(F::Local4, S::Notice)
        .ts("2024-03-18T10:35:46.123Z")
        .host("router1")
        .app("mgd")
        .procid("3046")
        .msgid("UI_COMMIT")
        .sd(&[("junos@2636.1.1.1.2.18", &[("username", "admin"), ("comment", "none")])])
        .msg("User 'admin' requested 'commit' operation"),
        v5424(
            "Juniper MX with a colon in APP-NAME",
            "<28>1 2020-05-22T14:59:09.250-03:00 OX-XXX-MX204 OX-XXX-CONTEUDO:rpd 6589 - - bgp_listen_accept: %DAEMON-4: Connection attempt",
        )
        .pri(F::Daemon, S::Warning)
        .ts("2020-05-22T14:59:09.250-03:00")
        .host("OX-XXX-MX204")
        .app("OX-XXX-CONTEUDO:rpd")
        .procid("6589")
        .msg("bgp_listen_accept: %DAEMON-4: Connection attempt"),
        v5424(
            "F5 BIG-IP RFC 5424",
            r#"<131>1 2025-05-09T09:56:18.906539+02:00 bigip1.example.com tmm 1234 01230456:1: [F5@12276 hostname="bigip1.example.com" errdefs_msgno="01230456:1:"] RST sent from 192.0.2.1:443"#,
        )
        .pri(F::Local0, S::Err)
        .ts("2025-05-09T09:56:18.906539+02:00")
        .host("bigip1.example.com")
        .app("tmm")
        .procid("1234")
        .msgid("01230456:1:")
        .sd(&[(
            "F5@12276",
            &[("hostname", "bigip1.example.com"), ("errdefs_msgno", "01230456:1:")],
        )])
        .msg("RST sent from 192.0.2.1:443"),
        v5424(
            "Meniscus tenant token element",
            r#"<13>1 2026-11-15T11:00:00Z web01 app 1 - [meniscus tenant="acme" token="s3cret"] hi"#,
        )
        .pri(F::User, S::Notice)
        .ts("2026-11-15T11:00:00Z")
        .host("web01")
        .app("app")
        .procid("1")
        .sd(&[("meniscus", &[("tenant", "acme"), ("token", "s3cret")])])
        .msg("hi"),
        v5424("Serial debugger with NIL timestamp", "<14>1 - 10.0.4.87 Serial-Debugger - - - Serializer started!")
            .pri(F::User, S::Info)
            .host("10.0.4.87")
            .app("Serial-Debugger")
            .msg("Serializer started!"),
    ]
}

fn invalid() -> Vec<Case> {
    let host_256 = leak(format!("<14>1 - {} - - - -", "h".repeat(256)));
    let app_49 = leak(format!("<14>1 - - {} - - -", "a".repeat(49)));
    let procid_129 = leak(format!("<14>1 - - - {} - -", "p".repeat(129)));
    let msgid_33 = leak(format!("<14>1 - - - - {} -", "m".repeat(33)));
    let sd_id_33 = leak(format!("<14>1 - - - - - [{}]", "i".repeat(33)));
    vec![
        bad("empty line", b"", "syslog: empty message at byte 0"),
        bad(
            "only a line feed",
            b"\r\n",
            "syslog: empty message at byte 0",
        ),
        // RFC 3164 section 4.3.3: without PRI a message is user.notice, all of it content.
        Case::new("no PRI", b"hello world", Format::Rfc3164)
            .pri(F::User, S::Notice)
            .msg("hello world"),
        Case::new("binary garbage", b"\xFF\xFE\x00garbage", Format::Rfc3164)
            .pri(F::User, S::Notice)
            .msg("\u{FFFD}\u{FFFD}\u{0}garbage"),
        bad(
            "PRI above 191",
            b"<192>1 - - - - - -",
            "syslog: invalid PRI (expected <0> to <191>) at byte 1",
        ),
        bad(
            "PRI of four digits",
            b"<1234>1 - - - - - -",
            "syslog: invalid PRI (expected <0> to <191>) at byte 4",
        ),
        bad(
            "empty PRI",
            b"<>1 - - - - - -",
            "syslog: invalid PRI (expected <0> to <191>) at byte 1",
        ),
        bad(
            "unterminated PRI",
            b"<34",
            "syslog: invalid PRI (expected <0> to <191>) at byte 3",
        ),
        bad(
            "PRI with a leading zero",
            b"<034>1 - - - - - -",
            "rfc5424: invalid PRI (expected <0> to <191>) at byte 1",
        ),
        bad(
            "forced RFC 5424 on a BSD line",
            b"<34>Oct 11 22:14:15 mymachine su: hi",
            "rfc5424: invalid VERSION (expected 1 to 3 digits, not starting with 0) at byte 4",
        )
        .input(Format::Rfc5424),
        bad(
            "VERSION of four digits",
            b"<34>1000 - - - - - -",
            "rfc5424: invalid VERSION (expected 1 to 3 digits, not starting with 0) at byte 4",
        )
        .input(Format::Rfc5424),
        bad(
            "VERSION with a leading zero",
            b"<34>01 - - - - - -",
            "rfc5424: invalid VERSION (expected 1 to 3 digits, not starting with 0) at byte 4",
        )
        .input(Format::Rfc5424),
        bad(
            "unescaped ']' in a PARAM-VALUE",
            b"<34>1 - - - - - [x a=\"1]\"] m",
            "rfc5424: invalid STRUCTURED-DATA: unescaped ']' in PARAM-VALUE at byte 23",
        ),
        bad(
            "minute 99",
            b"<34>1 2026-01-01T10:99:00Z h a - - -",
            "rfc5424: invalid TIMESTAMP at byte 6",
        ),
        bad(
            "offset -24:00",
            b"<34>1 2026-01-01T10:00:00-24:00 h a - - -",
            "rfc5424: invalid TIMESTAMP at byte 6",
        ),
        bad(
            "31 September",
            b"<34>1 2026-09-31T10:00:00Z h a - - -",
            "rfc5424: invalid TIMESTAMP at byte 6",
        ),
        bad(
            "29 February 2018",
            b"<34>1 2018-02-29T10:00:00Z h a - - -",
            "rfc5424: invalid TIMESTAMP at byte 6",
        ),
        bad(
            "lower-case T",
            b"<34>1 2003-10-11t22:14:15.003Z h a - - -",
            "rfc5424: invalid TIMESTAMP at byte 6",
        ),
        bad(
            "lower-case Z",
            b"<34>1 2003-10-11T22:14:15.003z h a - - -",
            "rfc5424: invalid TIMESTAMP at byte 6",
        ),
        bad(
            "seven fraction digits",
            b"<34>1 2003-10-11T22:14:15.0000003Z h a - - -",
            "rfc5424: invalid TIMESTAMP at byte 6",
        ),
        bad(
            "no time offset",
            b"<34>1 2003-10-11T22:14:15 h a - - -",
            "rfc5424: invalid TIMESTAMP at byte 6",
        ),
        bad(
            "February 30",
            b"<34>1 2003-02-30T22:14:15Z h a - - -",
            "rfc5424: invalid TIMESTAMP at byte 6",
        ),
        bad(
            "leap second",
            b"<34>1 2016-12-31T23:59:60Z h a - - -",
            "rfc5424: invalid TIMESTAMP at byte 6",
        ),
        bad(
            "year outside the storable range",
            b"<34>1 9999-12-31T23:59:59Z h a - - -",
            "rfc5424: TIMESTAMP outside the years 1678 to 2261 at byte 6",
        ),
        bad(
            "HOSTNAME of 256 characters",
            host_256.as_bytes(),
            "rfc5424: HOSTNAME longer than 255 characters at byte 263",
        ),
        bad(
            "APP-NAME of 49 characters",
            app_49.as_bytes(),
            "rfc5424: APP-NAME longer than 48 characters at byte 58",
        ),
        bad(
            "PROCID of 129 characters",
            procid_129.as_bytes(),
            "rfc5424: PROCID longer than 128 characters at byte 140",
        ),
        bad(
            "MSGID of 33 characters",
            msgid_33.as_bytes(),
            "rfc5424: MSGID longer than 32 characters at byte 46",
        ),
        bad(
            "non-ASCII HOSTNAME",
            "<14>1 - hé a - - -".as_bytes(),
            "rfc5424: invalid HOSTNAME at byte 9",
        ),
        bad(
            "two spaces before HOSTNAME",
            b"<14>1 -  h a - - -",
            "rfc5424: invalid HOSTNAME at byte 8",
        ),
        bad(
            "header cut after APP-NAME",
            b"<14>1 - h a",
            "rfc5424: expected a space before PROCID at byte 11",
        ),
        bad(
            "no STRUCTURED-DATA",
            b"<14>1 - h a - -",
            "rfc5424: expected a space before STRUCTURED-DATA at byte 15",
        ),
        bad(
            "empty STRUCTURED-DATA",
            b"<14>1 - h a - - ",
            "rfc5424: invalid STRUCTURED-DATA: expected '-' or '[' at byte 16",
        ),
        bad(
            "SD-ELEMENT not closed",
            br#"<14>1 - - - - - [x@1 a="b""#,
            "rfc5424: invalid STRUCTURED-DATA: unterminated element at byte 26",
        ),
        bad(
            "PARAM-VALUE not closed",
            br#"<14>1 - - - - - [x@1 a="b"#,
            "rfc5424: invalid STRUCTURED-DATA: unterminated PARAM-VALUE at byte 25",
        ),
        bad(
            "escaped closing quote",
            br#"<14>1 - - - - - [x@1 a="b\"]"#,
            "rfc5424: invalid STRUCTURED-DATA: unescaped ']' in PARAM-VALUE at byte 27",
        ),
        bad(
            "unquoted PARAM-VALUE",
            br#"<14>1 - - - - - [x@1 a=b]"#,
            "rfc5424: invalid STRUCTURED-DATA: expected '\"' at byte 23",
        ),
        bad(
            "PARAM-NAME without a value",
            br#"<14>1 - - - - - [x@1 a]"#,
            "rfc5424: invalid STRUCTURED-DATA: expected '=' at byte 22",
        ),
        bad(
            "empty SD-ID",
            br#"<14>1 - - - - - []"#,
            "rfc5424: invalid SD-ID at byte 17",
        ),
        bad(
            "SD-ID of 33 characters",
            sd_id_33.as_bytes(),
            "rfc5424: SD-ID longer than 32 characters at byte 49",
        ),
        bad(
            "two spaces between params",
            br#"<14>1 - - - - - [x@1  a="b"]"#,
            "rfc5424: invalid PARAM-NAME at byte 21",
        ),
        bad(
            "quote in an SD-ID",
            br#"<14>1 - - - - - [x"y]"#,
            "rfc5424: invalid STRUCTURED-DATA: expected ' ' or ']' at byte 18",
        ),
        bad(
            "duplicate SD-ID",
            br#"<14>1 - - - - - [a x="1"][a y="2"] m"#,
            "rfc5424: duplicate SD-ID at byte 16",
        ),
        bad(
            "message glued to SD",
            br#"<14>1 - - - - - [x@1 a="b"]msg"#,
            "rfc5424: invalid STRUCTURED-DATA: expected a space or '[' at byte 27",
        ),
        bad(
            "message glued to NILVALUE SD",
            b"<14>1 - - - - - -msg",
            "rfc5424: invalid STRUCTURED-DATA: expected a space or '[' at byte 17",
        ),
        bad(
            "PARAM-VALUE not UTF-8",
            b"<14>1 - - - - - [x@1 a=\"\xC3\x28\"]",
            "rfc5424: invalid PARAM-VALUE at byte 24",
        ),
    ]
}
