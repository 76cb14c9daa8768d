//! The JSON a publisher sends, validated into [`EventDraft`]s.
//!
//! A body is one JSON object, a JSON array of objects, or NDJSON (one object per line). Known keys
//! (`id`, `timestamp`, `host`, `app`, `procid`, `msgid`, `facility`, `severity`, `message`,
//! `structured_data`, `fields`) fill the event's fields; any other key is kept in `fields`.
//! Validation is all-or-nothing: one bad event rejects the batch, with an error naming it.

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::{Event, Facility, Severity, Source, StructuredData};

/// Longest idempotency key accepted, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// Why a publish body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// Syntax or shape is wrong; the message says where.
    #[error("{0}")]
    Invalid(String),
    /// One event is larger than the limit.
    #[error("{0}")]
    EventTooLarge(String),
    /// More events than one batch may hold.
    #[error("{0}")]
    TooManyEvents(String),
}

/// Limits applied while parsing.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest single event, in bytes of JSON.
    pub max_event_bytes: usize,
    /// Most events in one request.
    pub max_batch_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: 1024 * 1024,
            max_batch_len: 100_000,
        }
    }
}

/// An event as published, before the node stamps tenant, id and arrival time on it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventDraft {
    /// The publisher's idempotency key.
    pub id: Option<String>,
    /// When it happened.
    pub timestamp: Option<OffsetDateTime>,
    /// See [`Event::host`].
    pub host: Option<String>,
    /// See [`Event::app`].
    pub app: Option<String>,
    /// See [`Event::procid`].
    pub procid: Option<String>,
    /// See [`Event::msgid`].
    pub msgid: Option<String>,
    /// See [`Event::facility`].
    pub facility: Option<Facility>,
    /// See [`Event::severity`].
    pub severity: Option<Severity>,
    /// See [`Event::message`].
    pub message: String,
    /// See [`Event::structured_data`].
    pub structured_data: StructuredData,
    /// See [`Event::fields`].
    pub fields: Map<String, Value>,
}

impl EventDraft {
    /// Completes the draft into an event. `generated_id` is used when the publisher gave none.
    pub fn into_event(
        self,
        tenant: &str,
        received_at: OffsetDateTime,
        source: Source,
        generated_id: impl FnOnce() -> String,
    ) -> Event {
        let id_from_publisher = self.id.is_some();
        Event {
            id: self.id.unwrap_or_else(generated_id),
            id_from_publisher,
            tenant: tenant.to_owned(),
            received_at,
            timestamp: self.timestamp.unwrap_or(received_at),
            host: self.host,
            app: self.app,
            procid: self.procid,
            msgid: self.msgid,
            facility: self.facility,
            severity: self.severity,
            message: self.message,
            structured_data: self.structured_data,
            fields: self.fields,
            source,
        }
    }
}

/// Whether `id` may be a publisher's event id (idempotency key): 1 to [`MAX_ID_BYTES`] bytes.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES
}

/// Parses a JSON object or a JSON array of objects.
pub fn parse_json(body: &[u8], limits: Limits) -> Result<Vec<EventDraft>, PublishError> {
    let first = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .ok_or_else(|| {
            PublishError::Invalid("empty body: expected a JSON object or array".into())
        })?;
    if *first == b'[' {
        let items: Vec<&RawValue> =
            serde_json::from_slice(body).map_err(|e| json_error(&e, None))?;
        if items.len() > limits.max_batch_len {
            return Err(too_many(items.len(), limits));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, raw)| {
                let at = format!("event {}", i + 1);
                check_size(raw.get().len(), &at, limits)?;
                let value: Value =
                    serde_json::from_str(raw.get()).map_err(|e| json_error(&e, None))?;
                draft_from_value(value).map_err(|m| PublishError::Invalid(format!("{at}: {m}")))
            })
            .collect()
    } else {
        check_size(body.len(), "event 1", limits)?;
        let value: Value = serde_json::from_slice(body).map_err(|e| json_error(&e, None))?;
        Ok(vec![draft_from_value(value).map_err(|m| {
            PublishError::Invalid(format!("event 1: {m}"))
        })?])
    }
}

/// Parses NDJSON: one JSON object per line; blank lines are skipped.
pub fn parse_ndjson(body: &[u8], limits: Limits) -> Result<Vec<EventDraft>, PublishError> {
    let mut drafts = Vec::new();
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let at = format!("line {}", i + 1);
        check_size(line.len(), &at, limits)?;
        if drafts.len() == limits.max_batch_len {
            return Err(too_many(drafts.len() + 1, limits));
        }
        let value: Value = serde_json::from_slice(line).map_err(|e| json_error(&e, Some(i + 1)))?;
        drafts.push(
            draft_from_value(value).map_err(|m| PublishError::Invalid(format!("{at}: {m}")))?,
        );
    }
    if drafts.is_empty() {
        return Err(PublishError::Invalid(
            "empty body: expected NDJSON, one JSON object per line".into(),
        ));
    }
    Ok(drafts)
}

fn check_size(len: usize, at: &str, limits: Limits) -> Result<(), PublishError> {
    if len > limits.max_event_bytes {
        return Err(PublishError::EventTooLarge(format!(
            "{at} is {len} bytes; the limit is {} bytes per event",
            limits.max_event_bytes
        )));
    }
    Ok(())
}

fn too_many(n: usize, limits: Limits) -> PublishError {
    PublishError::TooManyEvents(format!(
        "{n} events in one request; the limit is {} (split the batch)",
        limits.max_batch_len
    ))
}

fn json_error(e: &serde_json::Error, ndjson_line: Option<usize>) -> PublishError {
    let line = ndjson_line.unwrap_or(e.line());
    PublishError::Invalid(format!(
        "malformed JSON at line {line} column {}: {e}",
        e.column()
    ))
}

fn draft_from_value(value: Value) -> Result<EventDraft, String> {
    let Value::Object(map) = value else {
        return Err(format!("expected a JSON object, found {}", kind(&value)));
    };
    let mut draft = EventDraft::default();
    for (key, value) in map {
        match key.as_str() {
            "id" => {
                let id = string(&key, value)?;
                if !is_valid_id(&id) {
                    return Err(format!("id: must be 1 to {MAX_ID_BYTES} bytes"));
                }
                draft.id = Some(id);
            }
            "timestamp" => draft.timestamp = Some(timestamp(value)?),
            "host" => draft.host = Some(string(&key, value)?),
            "app" => draft.app = Some(string(&key, value)?),
            "procid" => draft.procid = Some(string(&key, value)?),
            "msgid" => draft.msgid = Some(string(&key, value)?),
            "message" => draft.message = string(&key, value)?,
            "severity" => draft.severity = Some(keyword(value, "severity", Severity::from_code)?),
            "facility" => draft.facility = Some(keyword(value, "facility", Facility::from_code)?),
            "structured_data" => draft.structured_data = structured_data(value)?,
            "fields" => match value {
                Value::Object(fields) => draft.fields.extend(fields),
                other => {
                    return Err(format!(
                        "fields: expected an object, found {}",
                        kind(&other)
                    ))
                }
            },
            _ => {
                draft.fields.insert(key, value);
            }
        }
    }
    Ok(draft)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string(key: &str, v: Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(format!("{key}: expected a string, found {}", kind(&other))),
    }
}

fn timestamp(v: Value) -> Result<OffsetDateTime, String> {
    let s = string("timestamp", v)?;
    let t = OffsetDateTime::parse(&s, &Rfc3339)
        .map_err(|e| format!("timestamp: {s:?} is not an RFC 3339 date-time ({e})"))?;
    // The wire format keeps nanoseconds in an i64: years 1678 to 2261.
    if !(1678..=2261).contains(&t.year()) {
        return Err(format!(
            "timestamp: {s:?} is outside the years 1678 to 2261"
        ));
    }
    Ok(t.to_offset(time::UtcOffset::UTC))
}

fn keyword<T: std::str::FromStr<Err = String>>(
    v: Value,
    name: &str,
    from_code: fn(u8) -> Option<T>,
) -> Result<T, String> {
    match v {
        Value::String(s) => s.parse().map_err(|e| format!("{name}: {e}")),
        Value::Number(n) => n
            .as_u64()
            .and_then(|c| u8::try_from(c).ok())
            .and_then(from_code)
            .ok_or_else(|| format!("{name}: unknown code {n}")),
        other => Err(format!(
            "{name}: expected a keyword, found {}",
            kind(&other)
        )),
    }
}

fn structured_data(v: Value) -> Result<StructuredData, String> {
    let Value::Object(elements) = v else {
        return Err(format!(
            "structured_data: expected an object, found {}",
            kind(&v)
        ));
    };
    let mut sd = StructuredData::new();
    for (sd_id, params) in elements {
        let Value::Object(params) = params else {
            return Err(format!(
                "structured_data.{sd_id}: expected an object of strings"
            ));
        };
        let mut out = std::collections::BTreeMap::new();
        for (name, value) in params {
            let value = string(&format!("structured_data.{sd_id}.{name}"), value)?;
            out.insert(name, value);
        }
        sd.insert(sd_id, out);
    }
    Ok(sd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(body: &str) -> String {
        match parse_json(body.as_bytes(), Limits::default()) {
            Err(PublishError::Invalid(m)) => m,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn object_array_and_ndjson_parse() {
        let one = parse_json(
            br#"{"message":"a","severity":"err","facility":4}"#,
            Limits::default(),
        )
        .unwrap();
        assert_eq!(one[0].severity, Some(Severity::Err));
        assert_eq!(one[0].facility, Some(Facility::Auth));
        let many = parse_json(
            br#"[{"message":"a"},{"message":"b","user":"bob"}]"#,
            Limits::default(),
        )
        .unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(many[1].fields["user"], "bob");
        let nd = parse_ndjson(
            b"{\"message\":\"a\"}\n\n{\"message\":\"b\"}\r\n",
            Limits::default(),
        )
        .unwrap();
        assert_eq!(nd.len(), 2);
    }

    #[test]
    fn timestamps_are_normalized_to_utc() {
        let d = parse_json(
            br#"{"timestamp":"2026-01-02T03:04:05.123456+02:00"}"#,
            Limits::default(),
        )
        .unwrap();
        let t = d[0].timestamp.unwrap();
        assert_eq!(t.offset(), time::UtcOffset::UTC);
        assert_eq!(t.hour(), 1);
        assert_eq!(t.microsecond(), 123456);
    }

    #[test]
    fn errors_name_the_problem_and_the_place() {
        for (body, needle) in [
            ("{\"message\": ", "line 1 column"),
            (
                "[{\"message\":\"a\"}, 3]",
                "event 2: expected a JSON object, found a number",
            ),
            ("{\"timestamp\":\"yesterday\"}", "not an RFC 3339"),
            (
                "{\"timestamp\":\"9999-01-01T00:00:00Z\"}",
                "outside the years",
            ),
            ("{\"severity\":\"loud\"}", "unknown severity"),
            ("{\"facility\":99}", "facility: unknown code 99"),
            ("{\"message\":5}", "message: expected a string"),
            ("{\"id\":\"\"}", "id: must be"),
            (
                "{\"structured_data\":{\"a\":{\"b\":1}}}",
                "structured_data.a.b",
            ),
            ("   ", "empty body"),
        ] {
            let m = invalid(body);
            assert!(m.contains(needle), "{body}: {m}");
        }
        let nd = parse_ndjson(b"{\"message\":\"a\"}\n{oops}\n", Limits::default()).unwrap_err();
        assert!(nd.to_string().contains("line 2"), "{nd}");
    }

    #[test]
    fn limits_are_enforced() {
        let limits = Limits {
            max_event_bytes: 20,
            max_batch_len: 2,
        };
        let big = format!("{{\"message\":\"{}\"}}", "x".repeat(30));
        assert!(matches!(
            parse_json(big.as_bytes(), limits),
            Err(PublishError::EventTooLarge(_))
        ));
        assert!(matches!(
            parse_json(format!("[{big}]").as_bytes(), limits),
            Err(PublishError::EventTooLarge(_))
        ));
        assert!(matches!(
            parse_json(b"[{},{},{}]", limits),
            Err(PublishError::TooManyEvents(_))
        ));
        assert!(matches!(
            parse_ndjson(b"{}\n{}\n{}\n", limits),
            Err(PublishError::TooManyEvents(_))
        ));
    }
}
