//! RFC 3164 rows: the RFC's examples, Linux/BSD daemons, rsyslog, Cisco, Juniper, F5, and
//! invalid lines. The table's clock is 2026-11-15 12:00 UTC, so years are inferred from it.

use super::{bad, v3164, Case};
use crate::syslog::Format;
use crate::{Facility as F, Severity as S};

pub(super) fn cases() -> Vec<Case> {
    let mut cases = rfc_and_unix();
    cases.extend(devices());
    cases.extend(invalid());
    cases
}

fn rfc_and_unix() -> Vec<Case> {
    vec![
        // RFC 3164 section 5.4, examples 1 to 4.
        v3164("rfc3164 example 1", "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8")
            .pri(F::Auth, S::Crit)
            .ts("2026-10-11T22:14:15Z")
            .host("mymachine")
            .app("su")
            .msg("'su root' failed for lonvick on /dev/pts/8"),
        v3164("rfc3164 example 2: no tag", "<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!")
            .pri(F::User, S::Notice)
            .ts("2026-02-05T17:32:18Z")
            .host("10.0.0.99")
            .msg("Use the BFG!"),
        v3164(
            "rfc3164 example 3: a zone and year after the time end the header",
            "<165>Aug 24 05:34:00 CST 1987 mymachine myproc[10]: %% It's time to make the do-nuts.",
        )
        .pri(F::Local4, S::Notice)
        .ts("2026-08-24T05:34:00Z")
        .host("CST")
        .msg("1987 mymachine myproc[10]: %% It's time to make the do-nuts."),
        v3164(
            "rfc3164 example 4: year first",
            "<0>1990 Oct 22 10:52:01 TZ-6 scapegoat.dmz.example.org 10.1.2.3 sched[0]: That's All Folks!",
        )
        .pri(F::Kern, S::Emerg)
        .ts("1990-10-22T10:52:01Z")
        .host("TZ-6")
        .msg("scapegoat.dmz.example.org 10.1.2.3 sched[0]: That's All Folks!"),
        // Day forms and year inference.
        v3164("zero-padded day", "<13>Feb 05 17:32:18 h app: m")
            .pri(F::User, S::Notice)
            .ts("2026-02-05T17:32:18Z")
            .host("h")
            .app("app")
            .msg("m"),
        v3164("single-digit day with one space", "<13>Feb 5 17:32:18 h app: m")
            .pri(F::User, S::Notice)
            .ts("2026-02-05T17:32:18Z")
            .host("h")
            .app("app")
            .msg("m"),
        v3164("single-digit hour", "<13>Feb 5 7:32:18 h app: m")
            .pri(F::User, S::Notice)
            .ts("2026-02-05T07:32:18Z")
            .host("h")
            .app("app")
            .msg("m"),
        v3164("lower-case month", "<13>oct 11 22:14:15 h app: m")
            .pri(F::User, S::Notice)
            .ts("2026-10-11T22:14:15Z")
            .host("h")
            .app("app")
            .msg("m"),
        v3164("upper-case month", "<13>OCT 11 22:14:15 h app: m")
            .pri(F::User, S::Notice)
            .ts("2026-10-11T22:14:15Z")
            .host("h")
            .app("app")
            .msg("m"),
        v3164("December seen in November is last year", "<13>Dec 31 23:59:59 h app: m")
            .pri(F::User, S::Notice)
            .ts("2025-12-31T23:59:59Z")
            .host("h")
            .app("app")
            .msg("m"),
        v3164("a date under a month ahead is this year", "<13>Dec 10 08:00:00 h app: m")
            .pri(F::User, S::Notice)
            .ts("2026-12-10T08:00:00Z")
            .host("h")
            .app("app")
            .msg("m"),
        v3164("February 29 goes back to the last leap year", "<13>Feb 29 12:00:00 h app: m")
            .pri(F::User, S::Notice)
            .ts("2024-02-29T12:00:00Z")
            .host("h")
            .app("app")
            .msg("m"),
        v3164("milliseconds after the time", "<13>Nov 15 11:00:00.123 h app: m")
            .pri(F::User, S::Notice)
            .ts("2026-11-15T11:00:00.123Z")
            .host("h")
            .app("app")
            .msg("m"),
        // Tags.
        v3164("tag with pid", "<38>Nov 15 11:59:00 web01 sshd[1234]: Accepted publickey for alice from 192.0.2.7 port 50022 ssh2")
            .pri(F::Auth, S::Info)
            .ts("2026-11-15T11:59:00Z")
            .host("web01")
            .app("sshd")
            .procid("1234")
            .msg("Accepted publickey for alice from 192.0.2.7 port 50022 ssh2"),
        v3164("tag with a slash", "<22>Nov 15 11:59:00 mx1 postfix/smtpd[4242]: connect from unknown[192.0.2.9]")
            .pri(F::Mail, S::Info)
            .ts("2026-11-15T11:59:00Z")
            .host("mx1")
            .app("postfix/smtpd")
            .procid("4242")
            .msg("connect from unknown[192.0.2.9]"),
        v3164("tag with hyphens", "<38>Nov 15 11:59:00 web01 systemd-logind[612]: New session 3 of user alice.")
            .pri(F::Auth, S::Info)
            .ts("2026-11-15T11:59:00Z")
            .host("web01")
            .app("systemd-logind")
            .procid("612")
            .msg("New session 3 of user alice."),
        v3164("kernel line from a Ubiquiti router", "<4>Jan 26 05:59:54 ubnt kernel: [WAN_LOCAL-default-D]IN=eth0 OUT= SRC=135.148.25.121 PROTO=TCP SPT=46146 DPT=4433")
            .pri(F::Kern, S::Warning)
            .ts("2026-01-26T05:59:54Z")
            .host("ubnt")
            .app("kernel")
            .msg("[WAN_LOCAL-default-D]IN=eth0 OUT= SRC=135.148.25.121 PROTO=TCP SPT=46146 DPT=4433"),
        v3164("tag with parentheses", "<86>Nov 15 11:59:00 h sshd(pam_unix)[99]: session opened")
            .pri(F::Authpriv, S::Info)
            .ts("2026-11-15T11:59:00Z")
            .host("h")
            .app("sshd(pam_unix)")
            .procid("99")
            .msg("session opened"),
        v3164("no hostname before the tag (haproxy)", "<133>Jan 13 16:33:35 haproxy[73411]: Proxy sticky-servers started.")
            .pri(F::Local0, S::Notice)
            .ts("2026-01-13T16:33:35Z")
            .app("haproxy")
            .procid("73411")
            .msg("Proxy sticky-servers started."),
        v3164("no tag: hostname then text", "<13>Nov 15 11:00:00 host last message repeated 3 times")
            .pri(F::User, S::Notice)
            .ts("2026-11-15T11:00:00Z")
            .host("host")
            .msg("last message repeated 3 times"),
        v3164("a hostname ending in a colon is read as the tag", "<34>Oct 11 22:14:15 mymachine: a message")
            .pri(F::Auth, S::Crit)
            .ts("2026-10-11T22:14:15Z")
            .app("mymachine")
            .msg("a message"),
        v3164("empty tag without hostname", "<34>Oct 11 22:14:15 : a message")
            .pri(F::Auth, S::Crit)
            .ts("2026-10-11T22:14:15Z")
            .msg("a message"),
        v3164("empty tag after the hostname", "<34>Oct 11 22:14:15 mymachine : a message")
            .pri(F::Auth, S::Crit)
            .ts("2026-10-11T22:14:15Z")
            .host("mymachine")
            .msg("a message"),
        v3164("tag with an empty pid is text", "<13>Nov 15 11:00:00 h app[]: m")
            .pri(F::User, S::Notice)
            .ts("2026-11-15T11:00:00Z")
            .host("h")
            .msg("app[]: m"),
        v3164("tag longer than 48 characters is text", "<13>Nov 15 11:00:00 h aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: m")
            .pri(F::User, S::Notice)
            .ts("2026-11-15T11:00:00Z")
            .host("h")
            .msg("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: m"),
        v3164("tag glued to the text", "<13>Feb 13 20:07:26 74794bfb6795 root[8539]:syslog message")
            .pri(F::User, S::Notice)
            .ts("2026-02-13T20:07:26Z")
            .host("74794bfb6795")
            .app("root")
            .procid("8539")
            .msg("syslog message"),
        v3164("space after PRI; a word without colon is text", "<134> Feb 28 14:07:19 myhostname sshd - - - this is my message")
            .pri(F::Local0, S::Info)
            .ts("2026-02-28T14:07:19Z")
            .host("myhostname")
            .msg("sshd - - - this is my message"),
        v3164("IPv6 hostname", "<13>Nov 15 11:00:00 2001:db8::1 app: m")
            .pri(F::User, S::Notice)
            .ts("2026-11-15T11:00:00Z")
            .host("2001:db8::1")
            .app("app")
            .msg("m"),
        v3164("nginx access log", r#"<190>Dec 28 16:49:07 plertrood-thinkpad-x220 nginx: 127.0.0.1 - - [28/Dec/2019:16:49:07 +0000] "GET / HTTP/1.1" 304 0"#)
            .pri(F::Local7, S::Info)
            .ts("2025-12-28T16:49:07Z")
            .host("plertrood-thinkpad-x220")
            .app("nginx")
            .msg(r#"127.0.0.1 - - [28/Dec/2019:16:49:07 +0000] "GET / HTTP/1.1" 304 0"#),
        v3164("rsyslogd start with extra spaces", r#"<46>Jan  5 15:33:03 plertrood-ThinkPad-X220 rsyslogd:  [origin software="rsyslogd" swVersion="8.32.0"] start"#)
            .pri(F::Syslog, S::Info)
            .ts("2026-01-05T15:33:03Z")
            .host("plertrood-ThinkPad-X220")
            .app("rsyslogd")
            .msg(r#"[origin software="rsyslogd" swVersion="8.32.0"] start"#),
        v3164("non-ASCII first word is not a hostname", "<46>Jan 5 10:01:00 Übergröße außerplanmäßig")
            .pri(F::Syslog, S::Info)
            .ts("2026-01-05T10:01:00Z")
            .msg("Übergröße außerplanmäßig"),
        v3164("Windows event via NXLog", "<14>Nov 15 11:00:00 WIN-SRV01 Microsoft-Windows-Security-Auditing[4]: An account was successfully logged on.")
            .pri(F::User, S::Info)
            .ts("2026-11-15T11:00:00Z")
            .host("WIN-SRV01")
            .app("Microsoft-Windows-Security-Auditing")
            .procid("4")
            .msg("An account was successfully logged on."),
        v3164("pfSense filterlog without hostname", "<134>Nov 15 11:00:00 filterlog[12345]: 5,,,1000000103,igb0,match,block,in,4")
            .pri(F::Local0, S::Info)
            .ts("2026-11-15T11:00:00Z")
            .app("filterlog")
            .procid("12345")
            .msg("5,,,1000000103,igb0,match,block,in,4"),
        // No timestamp: only a tag is looked for.
        v3164("no timestamp, tag with pid", "<13>myapp[99]: started")
            .pri(F::User, S::Notice)
            .app("myapp")
            .procid("99")
            .msg("started"),
        v3164("no timestamp, no tag", "<13>hello world")
            .pri(F::User, S::Notice)
            .msg("hello world"),
        v3164("no timestamp: a month-like word is text", "<13>May 5 people came")
            .pri(F::User, S::Notice)
            .msg("May 5 people came"),
        v3164("only PRI", "<13>").pri(F::User, S::Notice),
        v3164("PRI with a leading zero is forgiven", "<013>hello")
            .pri(F::User, S::Notice)
            .msg("hello"),
        v3164("timestamp and hostname only", "<13>Nov 15 11:00:00 host")
            .pri(F::User, S::Notice)
            .ts("2026-11-15T11:00:00Z")
            .host("host"),
        v3164("BSD LF terminator is dropped", "<13>Nov 15 11:00:00 h app: m\n")
            .pri(F::User, S::Notice)
            .ts("2026-11-15T11:00:00Z")
            .host("h")
            .app("app")
            .msg("m"),
        Case::new("invalid UTF-8 text is decoded lossily", b"<13>Nov 15 11:00:00 h app: caf\xE9", Format::Rfc3164)
            .pri(F::User, S::Notice)
            .ts("2026-11-15T11:00:00Z")
            .host("h")
            .app("app")
            .msg("caf\u{FFFD}"),
        // rsyslog's RFC 3339 timestamp in BSD framing (RSYSLOG_ForwardFormat).
        v3164("rsyslog forward format", r#"<190>2019-02-13T21:53:30.605850+00:00 74794bfb6795 liblogging-stdlog:  [origin software="rsyslogd"] start"#)
            .pri(F::Local7, S::Info)
            .ts("2019-02-13T21:53:30.60585Z")
            .host("74794bfb6795")
            .app("liblogging-stdlog")
            .msg(r#"[origin software="rsyslogd"] start"#),
        v3164("RFC 3339 with an offset and nanoseconds", "<30>2026-11-15T12:00:00.123456789+01:00 web01 app[1]: m")
            .pri(F::Daemon, S::Info)
            .ts("2026-11-15T12:00:00.123456789+01:00")
            .host("web01")
            .app("app")
            .procid("1")
            .msg("m"),
        v3164("forced RFC 3164 on an RFC 5424 line", "<34>1 2003-10-11T22:14:15.003Z mymachine su - ID47 - hi")
            .input(Format::Rfc3164)
            .pri(F::Auth, S::Crit)
            .msg("1 2003-10-11T22:14:15.003Z mymachine su - ID47 - hi"),
    ]
}

fn devices() -> Vec<Case> {
    vec![
        // Cisco IOS / IOS-XE.
        v3164("Cisco IOS, clock not set", "<189>123: *Mar  1 00:00:00.123: %SYS-5-CONFIG_I: Configured from console by console")
            .pri(F::Local7, S::Notice)
            .ts("2026-03-01T00:00:00.123Z")
            .msgid("SYS-5-CONFIG_I")
            .msg("%SYS-5-CONFIG_I: Configured from console by console"),
        v3164("Cisco IOS with UTC", "<189>45: Mar  1 12:34:56.789 UTC: %LINEPROTO-5-UPDOWN: Line protocol on Interface GigabitEthernet0/1, changed state to up")
            .pri(F::Local7, S::Notice)
            .ts("2026-03-01T12:34:56.789Z")
            .msgid("LINEPROTO-5-UPDOWN")
            .msg("%LINEPROTO-5-UPDOWN: Line protocol on Interface GigabitEthernet0/1, changed state to up"),
        v3164("Cisco IOS with service sequence-numbers", "<187>24: 000023: *Mar  1 00:01:02: %LINK-3-UPDOWN: Interface FastEthernet0/0, changed state to up")
            .pri(F::Local7, S::Err)
            .ts("2026-03-01T00:01:02Z")
            .msgid("LINK-3-UPDOWN")
            .msg("%LINK-3-UPDOWN: Interface FastEthernet0/0, changed state to up"),
        v3164("Cisco IOS with origin-id hostname", "<189>58: router1: *Mar  1 00:00:00.123: %SYS-5-CONFIG_I: Configured from console by vty0 (10.0.0.5)")
            .pri(F::Local7, S::Notice)
            .ts("2026-03-01T00:00:00.123Z")
            .host("router1")
            .msgid("SYS-5-CONFIG_I")
            .msg("%SYS-5-CONFIG_I: Configured from console by vty0 (10.0.0.5)"),
        v3164("Cisco IOS with hostname and sequence number", "<189>58: router1: 000042: Nov 15 11:00:00.001 UTC: %SYS-5-RESTART: System restarted")
            .pri(F::Local7, S::Notice)
            .ts("2026-11-15T11:00:00.001Z")
            .host("router1")
            .msgid("SYS-5-RESTART")
            .msg("%SYS-5-RESTART: System restarted"),
        v3164("Cisco IOS, clock synced by NTP lost", "<187>12: .Mar  1 00:00:05.000: %SYS-3-CPUHOG: Task is running for (2000)msecs")
            .pri(F::Local7, S::Err)
            .ts("2026-03-01T00:00:05Z")
            .msgid("SYS-3-CPUHOG")
            .msg("%SYS-3-CPUHOG: Task is running for (2000)msecs"),
        v3164("Cisco IOS-XE with year and a named zone", "<189>99: Mar  1 2026 00:00:00.123 CET: %SEC_LOGIN-5-LOGIN_SUCCESS: Login Success [user: admin] [Source: 10.0.0.5]")
            .pri(F::Local7, S::Notice)
            .ts("2026-03-01T00:00:00.123Z")
            .msgid("SEC_LOGIN-5-LOGIN_SUCCESS")
            .msg("%SEC_LOGIN-5-LOGIN_SUCCESS: Login Success [user: admin] [Source: 10.0.0.5]"),
        v3164("Cisco NX-OS", "<189>: 2024 Jan  5 12:00:00 UTC: %ETHPORT-5-IF_UP: Interface Ethernet1/1 is up in mode access")
            .pri(F::Local7, S::Notice)
            .ts("2024-01-05T12:00:00Z")
            .msgid("ETHPORT-5-IF_UP")
            .msg("%ETHPORT-5-IF_UP: Interface Ethernet1/1 is up in mode access"),
        v3164("Cisco counter without a timestamp is text", "<13>5: app: hello")
            .pri(F::User, S::Notice)
            .app("5")
            .msg("app: hello"),
        // Cisco ASA.
        v3164("Cisco ASA without hostname", "<166>Jan 05 2024 12:00:00: %ASA-6-302013: Built outbound TCP connection 1 for outside:192.0.2.1/443 (192.0.2.1/443) to inside:10.0.0.2/51234 (10.0.0.2/51234)")
            .pri(F::Local4, S::Info)
            .ts("2024-01-05T12:00:00Z")
            .msgid("ASA-6-302013")
            .msg("%ASA-6-302013: Built outbound TCP connection 1 for outside:192.0.2.1/443 (192.0.2.1/443) to inside:10.0.0.2/51234 (10.0.0.2/51234)"),
        v3164("Cisco ASA with hostname", "<166>Jan 05 2024 12:00:00 fw01 : %ASA-6-302014: Teardown TCP connection 1 for outside:192.0.2.1/443 duration 0:00:01 bytes 4096 TCP FINs")
            .pri(F::Local4, S::Info)
            .ts("2024-01-05T12:00:00Z")
            .host("fw01")
            .msgid("ASA-6-302014")
            .msg("%ASA-6-302014: Teardown TCP connection 1 for outside:192.0.2.1/443 duration 0:00:01 bytes 4096 TCP FINs"),
        v3164("Cisco ASA without timestamp", "<166>%ASA-6-305011: Built dynamic TCP translation from inside:10.0.0.2/51234 to outside:192.0.2.1/51234")
            .pri(F::Local4, S::Info)
            .msgid("ASA-6-305011")
            .msg("%ASA-6-305011: Built dynamic TCP translation from inside:10.0.0.2/51234 to outside:192.0.2.1/51234"),
        // Juniper Junos.
        v3164("Junos with hostname", "<28>Mar 18 10:35:46 router1 mib2d[1504]: SNMP_TRAP_LINK_DOWN: ifIndex 602, ifAdminStatus up(1), ifOperStatus down(2), ifName ge-0/0/1")
            .pri(F::Daemon, S::Warning)
            .ts("2026-03-18T10:35:46Z")
            .host("router1")
            .app("mib2d")
            .procid("1504")
            .msg("SNMP_TRAP_LINK_DOWN: ifIndex 602, ifAdminStatus up(1), ifOperStatus down(2), ifName ge-0/0/1"),
        v3164("Junos without hostname", "<30>Mar 18 10:35:46  mgd[3046]: UI_COMMIT: User 'admin' requested 'commit' operation")
            .pri(F::Daemon, S::Info)
            .ts("2026-03-18T10:35:46Z")
            .app("mgd")
            .procid("3046")
            .msg("UI_COMMIT: User 'admin' requested 'commit' operation"),
        v3164("Junos kernel tag with a slash", "<28>Mar 18 10:35:46 router1 /kernel: ae0: link down")
            .pri(F::Daemon, S::Warning)
            .ts("2026-03-18T10:35:46Z")
            .host("router1")
            .app("/kernel")
            .msg("ae0: link down"),
        v3164("Junos time-format year millisecond", "<28>Mar 18 2025 10:35:46.123 router1 rpd[1402]: BGP_PREFIX_THRESH_EXCEEDED: 192.0.2.1 (External AS 64500)")
            .pri(F::Daemon, S::Warning)
            .ts("2025-03-18T10:35:46.123Z")
            .host("router1")
            .app("rpd")
            .procid("1402")
            .msg("BGP_PREFIX_THRESH_EXCEEDED: 192.0.2.1 (External AS 64500)"),
        // F5 BIG-IP.
        v3164("F5 mcpd with a severity word", "<133>Mar 18 10:35:46 bigip1 notice mcpd[5423]: 01070638:5: Pool /Common/pool_web member /Common/10.0.0.5:80 monitor status down.")
            .pri(F::Local0, S::Notice)
            .ts("2026-03-18T10:35:46Z")
            .host("bigip1")
            .app("mcpd")
            .procid("5423")
            .msg("01070638:5: Pool /Common/pool_web member /Common/10.0.0.5:80 monitor status down."),
        v3164("F5 tmm iRule log", "<134>Mar 18 10:35:46 bigip1.example.com info tmm1[12345]: Rule /Common/log_irule <HTTP_REQUEST>: client 192.0.2.10")
            .pri(F::Local0, S::Info)
            .ts("2026-03-18T10:35:46Z")
            .host("bigip1.example.com")
            .app("tmm1")
            .procid("12345")
            .msg("Rule /Common/log_irule <HTTP_REQUEST>: client 192.0.2.10"),
        v3164("F5 err without pid", "<131>Mar 18 10:35:46 bigip1 err httpd: pam_unix(httpd:auth): authentication failure")
            .pri(F::Local0, S::Err)
            .ts("2026-03-18T10:35:46Z")
            .host("bigip1")
            .app("httpd")
            .msg("pam_unix(httpd:auth): authentication failure"),
        v3164("severity word not followed by a tag is text", "<134>Mar 18 10:35:46 bigip1 info something happened")
            .pri(F::Local0, S::Info)
            .ts("2026-03-18T10:35:46Z")
            .host("bigip1")
            .msg("info something happened"),
    ]
}

fn invalid() -> Vec<Case> {
    vec![
        bad(
            "day 32",
            b"<13>Oct 32 10:00:00 host app: m",
            "rfc3164: invalid TIMESTAMP at byte 4",
        ),
        bad(
            "BSD February 30",
            b"<13>Feb 30 10:00:00 host app: m",
            "rfc3164: invalid TIMESTAMP at byte 4",
        ),
        bad(
            "day 0",
            b"<13>Feb 0 10:00:00 host app: m",
            "rfc3164: invalid TIMESTAMP at byte 4",
        ),
        bad(
            "hour 25",
            b"<13>Oct 11 25:00:00 host app: m",
            "rfc3164: invalid TIMESTAMP at byte 4",
        ),
        bad(
            "minute 61",
            b"<13>Oct 11 10:61:00 host app: m",
            "rfc3164: invalid TIMESTAMP at byte 4",
        ),
        bad(
            "RFC 3339 month 13",
            b"<13>2024-13-01T00:00:00Z host app: m",
            "rfc3164: invalid TIMESTAMP at byte 4",
        ),
        bad(
            "RFC 3339 without offset",
            b"<13>2024-01-01T00:00:00 host app: m",
            "rfc3164: invalid TIMESTAMP at byte 4",
        ),
        bad(
            "NX-OS year with a bad day",
            b"<189>: 2024 Jan 32 12:00:00 UTC: %ETHPORT-5-IF_UP: up",
            "rfc3164: invalid TIMESTAMP at byte 7",
        ),
        bad(
            "Cisco with a bad date",
            b"<189>1: *Mar 32 00:00:00: %SYS-5-CONFIG_I: x",
            "rfc3164: invalid TIMESTAMP at byte 9",
        ),
        bad(
            "ASA year outside the storable range",
            b"<166>Jan 05 1500 12:00:00: %ASA-6-302013: x",
            "rfc3164: TIMESTAMP outside the years 1678 to 2261 at byte 5",
        ),
        v3164(
            "forced RFC 3164 without PRI",
            "Oct 11 22:14:15 mymachine su: hi",
        )
        .input(Format::Rfc3164)
        .pri(F::User, S::Notice)
        .ts("2026-10-11T22:14:15Z")
        .host("mymachine")
        .app("su")
        .msg("hi"),
        bad(
            "forced RFC 3164 with PRI 200",
            b"<200>Oct 11 22:14:15 mymachine su: hi",
            "rfc3164: invalid PRI (expected <0> to <191>) at byte 1",
        )
        .input(Format::Rfc3164),
        bad(
            "forced RFC 3164 on an empty line",
            b"\n",
            "rfc3164: empty message at byte 0",
        )
        .input(Format::Rfc3164),
        // RFC 3164 section 4.3.3: user.notice, and the rest parsed as usual.
        v3164("BSD line without PRI", "Oct 11 22:14:15 mymachine su: hi")
            .pri(F::User, S::Notice)
            .ts("2026-10-11T22:14:15Z")
            .host("mymachine")
            .app("su")
            .msg("hi"),
        v3164(
            "a tag glued to its message",
            "<13>Oct 11 22:14:15 mymachine su:hi there",
        )
        .pri(F::User, S::Notice)
        .ts("2026-10-11T22:14:15Z")
        .host("mymachine")
        .app("su")
        .msg("hi there"),
        v3164(
            "a tag with a pid glued to its message",
            "<13>Oct 11 22:14:15 mymachine sshd[42]:Accepted key",
        )
        .pri(F::User, S::Notice)
        .ts("2026-10-11T22:14:15Z")
        .host("mymachine")
        .app("sshd")
        .procid("42")
        .msg("Accepted key"),
        v3164(
            "a tag with a pid and no colon",
            "<13>Oct 11 22:14:15 mymachine sshd[42] Accepted key",
        )
        .pri(F::User, S::Notice)
        .ts("2026-10-11T22:14:15Z")
        .host("mymachine")
        .app("sshd")
        .procid("42")
        .msg("Accepted key"),
        v3164(
            "upper-case month name",
            "<13>OCT 11 22:14:15 mymachine su: hi",
        )
        .pri(F::User, S::Notice)
        .ts("2026-10-11T22:14:15Z")
        .host("mymachine")
        .app("su")
        .msg("hi"),
        v3164(
            "a clock time in a message is no tag",
            "<13>at 10:00:00 the job ran",
        )
        .pri(F::User, S::Notice)
        .msg("at 10:00:00 the job ran"),
        v3164("a URL is no tag", "<13>http://example.com/x is down")
            .pri(F::User, S::Notice)
            .msg("http://example.com/x is down"),
        bad(
            "PRI not closed before text",
            b"<13 hello",
            "syslog: invalid PRI (expected <0> to <191>) at byte 3",
        ),
        bad(
            "negative PRI",
            b"<-1>hello",
            "syslog: invalid PRI (expected <0> to <191>) at byte 1",
        ),
    ]
}
