//! Parse throughput of 200-byte RFC 5424 and RFC 3164 lines: our strict parser side by side with
//! `syslog_loose` (the lenient parser Vector uses) on the same inputs, both auto-detecting.
//!
//! `cargo bench -p meniscus-event --bench syslog_parse`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use meniscus_event::syslog::{self, Format};
use syslog_loose::Variant;
use time::macros::datetime;

const LINE_LEN: usize = 200;
const LINES: usize = 1024;

/// Pads `head` with message text to exactly `LINE_LEN` bytes.
fn pad(mut head: String) -> String {
    const TEXT: &str = " lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod \
                        tempor incididunt ut labore et dolore magna aliqua ut enim ad minim veniam \
                        quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo";
    let need = LINE_LEN.saturating_sub(head.len());
    head.push_str(&TEXT[..need]);
    assert_eq!(head.len(), LINE_LEN, "{head}");
    head
}

fn rfc5424_lines() -> Vec<String> {
    (0..LINES)
        .map(|i| {
            pad(format!(
                "<165>1 2026-11-15T11:{:02}:{:02}.{:06}Z host{i}.example.com app{} {} ID47 \
                 [exampleSDID@32473 iut=\"{}\" eventSource=\"Application\" eventID=\"1011\"] msg {i}",
                i % 60,
                (i * 7) % 60,
                i * 977 % 1_000_000,
                i % 13,
                1000 + i,
                i % 10,
            ))
        })
        .collect()
}

fn rfc3164_lines() -> Vec<String> {
    (0..LINES)
        .map(|i| {
            pad(format!(
                "<38>Nov {:2} {:02}:{:02}:{:02} host{i} sshd[{}]: Accepted publickey for user{} \
                 from 192.0.2.{} port {} ssh2",
                1 + i % 14,
                i % 24,
                i % 60,
                (i * 7) % 60,
                1000 + i,
                i % 97,
                i % 250,
                40000 + i,
            ))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let now = datetime!(2026-11-15 12:00 UTC);
    for (name, lines) in [("rfc5424", rfc5424_lines()), ("rfc3164", rfc3164_lines())] {
        // Both parsers must really parse these lines, not fall back to "whole line is the message".
        for line in &lines {
            let ours = syslog::parse(line.as_bytes(), Format::Auto, now);
            assert!(ours.parse_error.is_none() && ours.host.is_some(), "{line}");
            let theirs = syslog_loose::parse_message_with_year(line, |_| 2026, Variant::Either);
            assert_eq!(theirs.hostname, ours.host, "{line}");
            assert_eq!(theirs.appname, ours.app, "{line}");
        }
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(lines.len() as u64));
        group.bench_function("meniscus", |b| {
            b.iter(|| {
                for line in &lines {
                    black_box(syslog::parse(black_box(line.as_bytes()), Format::Auto, now));
                }
            })
        });
        group.bench_function("meniscus+into_draft", |b| {
            b.iter(|| {
                for line in &lines {
                    black_box(
                        syslog::parse(black_box(line.as_bytes()), Format::Auto, now).into_draft(),
                    );
                }
            })
        });
        group.bench_function("syslog_loose", |b| {
            b.iter(|| {
                for line in &lines {
                    black_box(syslog_loose::parse_message_with_year(
                        black_box(line),
                        |_| 2026,
                        Variant::Either,
                    ));
                }
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
