//! The prost encoding of events, used in the Raft log and in node-to-node frames.
//!
//! Field tags are a stable contract: never reuse or renumber one.

use std::collections::BTreeMap;

use prost::Message;
use time::OffsetDateTime;

use crate::{Error, Event, Facility, Result, Severity, Source};

/// One event on the wire.
#[derive(Clone, PartialEq, Message)]
pub struct EventRecord {
    /// See [`Event::id`].
    #[prost(string, tag = "1")]
    pub id: String,
    /// See [`Event::tenant`].
    #[prost(string, tag = "2")]
    pub tenant: String,
    /// Unix time in nanoseconds.
    #[prost(int64, tag = "3")]
    pub received_at_nanos: i64,
    /// Unix time in nanoseconds.
    #[prost(int64, tag = "4")]
    pub timestamp_nanos: i64,
    /// See [`Event::host`].
    #[prost(string, optional, tag = "5")]
    pub host: Option<String>,
    /// See [`Event::app`].
    #[prost(string, optional, tag = "6")]
    pub app: Option<String>,
    /// See [`Event::procid`].
    #[prost(string, optional, tag = "7")]
    pub procid: Option<String>,
    /// See [`Event::msgid`].
    #[prost(string, optional, tag = "8")]
    pub msgid: Option<String>,
    /// Facility code.
    #[prost(uint32, optional, tag = "9")]
    pub facility: Option<u32>,
    /// Severity code.
    #[prost(uint32, optional, tag = "10")]
    pub severity: Option<u32>,
    /// See [`Event::message`].
    #[prost(string, tag = "11")]
    pub message: String,
    /// See [`Event::structured_data`].
    #[prost(btree_map = "string, message", tag = "12")]
    pub structured_data: BTreeMap<String, SdParams>,
    /// [`Event::fields`] as a JSON object; empty when there are none.
    #[prost(bytes = "vec", tag = "13")]
    pub fields_json: Vec<u8>,
    /// See [`Source::transport`].
    #[prost(string, tag = "14")]
    pub source_transport: String,
    /// See [`Source::peer`].
    #[prost(string, optional, tag = "15")]
    pub source_peer: Option<String>,
    /// See [`Event::id_from_publisher`].
    #[prost(bool, tag = "16")]
    pub id_from_publisher: bool,
}

/// The params of one structured-data element.
#[derive(Clone, PartialEq, Message)]
pub struct SdParams {
    /// Param name -> value.
    #[prost(btree_map = "string, string", tag = "1")]
    pub params: BTreeMap<String, String>,
}

/// A batch of events of one tenant, as one Raft entry carries it.
#[derive(Clone, PartialEq, Message)]
pub struct EventBatch {
    /// The events, in the order they were published.
    #[prost(message, repeated, tag = "1")]
    pub events: Vec<EventRecord>,
}

fn nanos(t: OffsetDateTime) -> i64 {
    // i64 nanoseconds cover 1677..2262; clamp rather than wrap for absurd dates.
    t.unix_timestamp_nanos()
        .clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

fn from_nanos(n: i64, field: &'static str) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(n as i128).map_err(|e| Error::InvalidField {
        field,
        message: e.to_string(),
    })
}

impl From<&Event> for EventRecord {
    fn from(e: &Event) -> Self {
        EventRecord {
            id: e.id.clone(),
            tenant: e.tenant.clone(),
            received_at_nanos: nanos(e.received_at),
            timestamp_nanos: nanos(e.timestamp),
            host: e.host.clone(),
            app: e.app.clone(),
            procid: e.procid.clone(),
            msgid: e.msgid.clone(),
            facility: e.facility.map(|f| f.code() as u32),
            severity: e.severity.map(|s| s.code() as u32),
            message: e.message.clone(),
            structured_data: e
                .structured_data
                .iter()
                .map(|(k, v)| (k.clone(), SdParams { params: v.clone() }))
                .collect(),
            fields_json: if e.fields.is_empty() {
                Vec::new()
            } else {
                serde_json::to_vec(&e.fields).expect("a JSON map always serializes")
            },
            source_transport: e.source.transport.clone(),
            source_peer: e.source.peer.clone(),
            id_from_publisher: e.id_from_publisher,
        }
    }
}

impl TryFrom<EventRecord> for Event {
    type Error = Error;

    fn try_from(r: EventRecord) -> Result<Self> {
        let code = |c: Option<u32>, field| -> Result<Option<u8>> {
            c.map(|c| {
                u8::try_from(c).map_err(|_| Error::InvalidField {
                    field,
                    message: format!("code {c} out of range"),
                })
            })
            .transpose()
        };
        let facility = code(r.facility, "facility")?
            .map(|c| {
                Facility::from_code(c).ok_or(Error::InvalidField {
                    field: "facility",
                    message: format!("unknown code {c}"),
                })
            })
            .transpose()?;
        let severity = code(r.severity, "severity")?
            .map(|c| {
                Severity::from_code(c).ok_or(Error::InvalidField {
                    field: "severity",
                    message: format!("unknown code {c}"),
                })
            })
            .transpose()?;
        let fields = if r.fields_json.is_empty() {
            serde_json::Map::new()
        } else {
            serde_json::from_slice(&r.fields_json).map_err(|e| Error::InvalidField {
                field: "fields",
                message: e.to_string(),
            })?
        };
        Ok(Event {
            id: r.id,
            tenant: r.tenant,
            received_at: from_nanos(r.received_at_nanos, "received_at")?,
            timestamp: from_nanos(r.timestamp_nanos, "timestamp")?,
            host: r.host,
            app: r.app,
            procid: r.procid,
            msgid: r.msgid,
            facility,
            severity,
            message: r.message,
            structured_data: r
                .structured_data
                .into_iter()
                .map(|(k, v)| (k, v.params))
                .collect(),
            fields,
            source: Source {
                transport: r.source_transport,
                peer: r.source_peer,
            },
            id_from_publisher: r.id_from_publisher,
        })
    }
}

/// Encodes events as one [`EventBatch`].
pub fn encode_batch(events: &[Event]) -> Vec<u8> {
    EventBatch {
        events: events.iter().map(EventRecord::from).collect(),
    }
    .encode_to_vec()
}

/// Decodes an [`EventBatch`] made by [`encode_batch`], keeping beside each event the bytes
/// of its own [`EventRecord`] (what [`decode_record`] reads back), so a store can keep them
/// without encoding the event again.
pub fn decode_batch_records(bytes: &[u8]) -> Result<Vec<(Event, &[u8])>> {
    let mut out = Vec::new();
    for_each_record(bytes, |record| {
        out.push((decode_record(record)?, record));
        Ok(())
    })?;
    Ok(out)
}

/// An event's fields as they lie in its encoded [`EventRecord`], borrowed, without structured
/// data and fields: what a search scanning unindexed events reads, at a fraction of the cost of
/// decoding them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// See [`Event::id`].
    pub id: &'a str,
    /// The event's timestamp, Unix nanoseconds.
    pub timestamp_nanos: i64,
    /// See [`Event::host`].
    pub host: Option<&'a str>,
    /// See [`Event::app`].
    pub app: Option<&'a str>,
    /// See [`Event::procid`].
    pub procid: Option<&'a str>,
    /// See [`Event::msgid`].
    pub msgid: Option<&'a str>,
    /// See [`Event::facility`].
    pub facility: Option<Facility>,
    /// See [`Event::severity`].
    pub severity: Option<Severity>,
    /// See [`Event::message`].
    pub message: &'a str,
    /// See [`Source::transport`].
    pub transport: &'a str,
    /// See [`Event::id_from_publisher`].
    pub id_from_publisher: bool,
}

/// A [`RecordView`] of each event in an [`EventBatch`].
pub fn batch_views(bytes: &[u8]) -> Result<Vec<RecordView<'_>>> {
    use prost::encoding::{decode_key, decode_varint, skip_field, DecodeContext, WireType};

    fn text<'a>(record: &mut &'a [u8], field: &'static str) -> Result<&'a str> {
        let len = usize::try_from(decode_varint(record)?).unwrap_or(usize::MAX);
        if len > record.len() {
            return Err(Error::InvalidField {
                field,
                message: format!("{len} bytes run past the record"),
            });
        }
        let (bytes, rest) = record.split_at(len);
        *record = rest;
        std::str::from_utf8(bytes).map_err(|e| Error::InvalidField {
            field,
            message: e.to_string(),
        })
    }
    fn code<T>(
        record: &mut &[u8],
        field: &'static str,
        of: impl Fn(u8) -> Option<T>,
    ) -> Result<Option<T>> {
        let c = decode_varint(record)?;
        let known = u8::try_from(c).ok().and_then(of);
        known.map(Some).ok_or(Error::InvalidField {
            field,
            message: format!("unknown code {c}"),
        })
    }

    let mut out = Vec::new();
    for_each_record(bytes, |mut record| {
        // proto3 leaves zeros, empty strings and `false` out.
        let mut view = RecordView::default();
        while !record.is_empty() {
            let (tag, wire_type) = decode_key(&mut record)?;
            match (tag, wire_type) {
                (1, WireType::LengthDelimited) => view.id = text(&mut record, "id")?,
                (4, WireType::Varint) => view.timestamp_nanos = decode_varint(&mut record)? as i64,
                (5, WireType::LengthDelimited) => view.host = Some(text(&mut record, "host")?),
                (6, WireType::LengthDelimited) => view.app = Some(text(&mut record, "app")?),
                (7, WireType::LengthDelimited) => view.procid = Some(text(&mut record, "procid")?),
                (8, WireType::LengthDelimited) => view.msgid = Some(text(&mut record, "msgid")?),
                (9, WireType::Varint) => {
                    view.facility = code(&mut record, "facility", Facility::from_code)?
                }
                (10, WireType::Varint) => {
                    view.severity = code(&mut record, "severity", Severity::from_code)?
                }
                (11, WireType::LengthDelimited) => view.message = text(&mut record, "message")?,
                (14, WireType::LengthDelimited) => {
                    view.transport = text(&mut record, "source_transport")?
                }
                (16, WireType::Varint) => view.id_from_publisher = decode_varint(&mut record)? != 0,
                _ => skip_field(wire_type, tag, &mut record, DecodeContext::default())?,
            }
        }
        out.push(view);
        Ok(())
    })?;
    Ok(out)
}

/// Calls `f` with the bytes of each [`EventRecord`] of an [`EventBatch`].
fn for_each_record<'a>(bytes: &'a [u8], mut f: impl FnMut(&'a [u8]) -> Result<()>) -> Result<()> {
    use prost::encoding::{decode_key, decode_varint, skip_field, DecodeContext, WireType};

    let mut buf = bytes;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        if tag != 1 || wire_type != WireType::LengthDelimited {
            skip_field(wire_type, tag, &mut buf, DecodeContext::default())?;
            continue;
        }
        let len = usize::try_from(decode_varint(&mut buf)?).unwrap_or(usize::MAX);
        if len > buf.len() {
            return Err(Error::InvalidField {
                field: "events",
                message: format!("a record of {len} bytes runs past the batch"),
            });
        }
        let (record, rest) = buf.split_at(len);
        buf = rest;
        f(record)?;
    }
    Ok(())
}

/// Encodes one event as an [`EventRecord`].
pub fn encode_record(event: &Event) -> Vec<u8> {
    EventRecord::from(event).encode_to_vec()
}

/// Decodes one [`EventRecord`] (from [`encode_record`] or [`decode_batch_records`]).
pub fn decode_record(bytes: &[u8]) -> Result<Event> {
    Event::try_from(EventRecord::decode(bytes)?)
}

/// Decodes an [`EventBatch`] made by [`encode_batch`].
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<Event>> {
    EventBatch::decode(bytes)?
        .events
        .into_iter()
        .map(Event::try_from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_event() -> impl Strategy<Value = Event> {
        (
            "[a-z0-9-]{1,20}",
            any::<i32>(),
            proptest::option::of("[a-z.]{1,10}"),
            proptest::option::of(0u8..24),
            proptest::option::of(0u8..8),
            ".{0,64}",
            proptest::collection::btree_map(
                "[a-z@0-9]{1,8}",
                proptest::collection::btree_map("[a-z]{1,5}", ".{0,8}", 0..3),
                0..3,
            ),
            proptest::collection::btree_map("[a-z]{1,6}", any::<i64>(), 0..4),
        )
            .prop_map(|(id, secs, host, fac, sev, message, sd, fields)| Event {
                id,
                tenant: "acme".into(),
                received_at: OffsetDateTime::from_unix_timestamp(secs as i64).unwrap(),
                timestamp: OffsetDateTime::from_unix_timestamp(secs as i64 / 2).unwrap()
                    + time::Duration::microseconds(7),
                host,
                app: Some("app".into()),
                procid: None,
                msgid: Some("ID47".into()),
                facility: fac.and_then(Facility::from_code),
                severity: sev.and_then(Severity::from_code),
                message,
                structured_data: sd,
                fields: fields
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::from(v)))
                    .collect(),
                source: Source {
                    transport: "http".into(),
                    peer: Some("127.0.0.1:5000".into()),
                },
                id_from_publisher: secs % 2 == 0,
            })
    }

    proptest! {
        #[test]
        fn batches_round_trip(events in proptest::collection::vec(arb_event(), 0..8)) {
            let bytes = encode_batch(&events);
            prop_assert_eq!(decode_batch(&bytes).unwrap(), events);
        }

        #[test]
        fn views_match_the_decoded_events(events in proptest::collection::vec(arb_event(), 0..8)) {
            let batch = encode_batch(&events);
            let views = batch_views(&batch).unwrap();
            prop_assert_eq!(views.len(), events.len());
            for (view, e) in views.iter().zip(&events) {
                let expected = RecordView {
                    id: &e.id,
                    timestamp_nanos: e.timestamp.unix_timestamp_nanos() as i64,
                    host: e.host.as_deref(),
                    app: e.app.as_deref(),
                    procid: e.procid.as_deref(),
                    msgid: e.msgid.as_deref(),
                    facility: e.facility,
                    severity: e.severity,
                    message: &e.message,
                    transport: &e.source.transport,
                    id_from_publisher: e.id_from_publisher,
                };
                prop_assert_eq!(view, &expected);
            }
            if !batch.is_empty() {
                prop_assert!(batch_views(&batch[..batch.len() - 1]).is_err());
            }
        }

        #[test]
        fn batch_records_are_each_events_own_encoding(
            events in proptest::collection::vec(arb_event(), 0..8)
        ) {
            let bytes = encode_batch(&events);
            let records = decode_batch_records(&bytes).unwrap();
            prop_assert_eq!(records.len(), events.len());
            for ((decoded, record), event) in records.iter().zip(&events) {
                prop_assert_eq!(decoded, event);
                let own = encode_record(event);
                prop_assert_eq!(*record, own.as_slice());
                prop_assert_eq!(&decode_record(record).unwrap(), event);
            }
        }
    }

    #[test]
    fn a_record_running_past_its_batch_is_an_error() {
        let mut bytes = encode_batch(&[]);
        bytes.extend_from_slice(&[0x0a, 0x20, 0x01]);
        assert!(decode_batch_records(&bytes).is_err());
    }

    #[test]
    fn unknown_severity_code_is_an_error_not_a_panic() {
        let rec = EventRecord {
            severity: Some(9),
            ..Default::default()
        };
        let bytes = EventBatch { events: vec![rec] }.encode_to_vec();
        let err = decode_batch(&bytes).unwrap_err().to_string();
        assert!(err.contains("severity"), "{err}");
    }
}
