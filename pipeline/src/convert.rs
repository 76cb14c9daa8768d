//! The event as a VRL program sees it, and back.
//!
//! `.` is the event as the search API shows it: `message`, `host`, `app`, `procid`, `msgid`,
//! `facility`, `severity`, `timestamp`, `structured_data`, `fields`, and the read-only `id`,
//! `tenant`, `received_at` and `source`. Timestamps are VRL timestamps, so
//! `.timestamp = parse_timestamp!(...)` works. A key a program sets that is not an event field
//! lands under `fields`, as it does in a publish.

use chrono::{DateTime, Utc};
use meniscus_event::{Event, Facility, Severity, StructuredData};
use time::OffsetDateTime;
use vrl::value::{KeyString, ObjectMap, Value};

/// The event as a VRL object.
pub fn to_value(event: &Event) -> Value {
    let mut object = ObjectMap::new();
    let mut put = |key: &str, value: Value| {
        object.insert(KeyString::from(key), value);
    };
    put("id", Value::from(event.id.as_str()));
    put("tenant", Value::from(event.tenant.as_str()));
    put(
        "received_at",
        Value::Timestamp(to_chrono(event.received_at)),
    );
    put("timestamp", Value::Timestamp(to_chrono(event.timestamp)));
    for (key, value) in [
        ("host", &event.host),
        ("app", &event.app),
        ("procid", &event.procid),
        ("msgid", &event.msgid),
    ] {
        if let Some(value) = value {
            put(key, Value::from(value.as_str()));
        }
    }
    if let Some(facility) = event.facility {
        put("facility", Value::from(facility.keyword()));
    }
    if let Some(severity) = event.severity {
        put("severity", Value::from(severity.keyword()));
    }
    put("message", Value::from(event.message.as_str()));
    if !event.structured_data.is_empty() {
        let sd = event
            .structured_data
            .iter()
            .map(|(id, params)| {
                let params = params
                    .iter()
                    .map(|(k, v)| (KeyString::from(k.as_str()), Value::from(v.as_str())))
                    .collect::<ObjectMap>();
                (KeyString::from(id.as_str()), Value::Object(params))
            })
            .collect::<ObjectMap>();
        put("structured_data", Value::Object(sd));
    }
    put(
        "fields",
        Value::Object(
            event
                .fields
                .iter()
                .map(|(k, v)| (KeyString::from(k.as_str()), from_json(v)))
                .collect(),
        ),
    );
    let mut source = ObjectMap::new();
    source.insert(
        "transport".into(),
        Value::from(event.source.transport.as_str()),
    );
    if let Some(peer) = &event.source.peer {
        source.insert("peer".into(), Value::from(peer.as_str()));
    }
    put("source", Value::Object(source));
    Value::Object(object)
}

/// The event a program left in `value`, built on `original`: what the program may not change
/// (`id`, `tenant`, `received_at`, `source`) is taken from it, leaving it a husk. When `value`
/// cannot be an event, `original` is left untouched, to be stored as it came.
pub fn from_value(value: Value, original: &mut Event) -> Result<Event, String> {
    let mut event = shaped(value, original)?;
    event.id = std::mem::take(&mut original.id);
    event.tenant = std::mem::take(&mut original.tenant);
    event.source = std::mem::take(&mut original.source);
    Ok(event)
}

/// Everything of the event but what [`from_value`] moves over from the original.
fn shaped(value: Value, original: &Event) -> Result<Event, String> {
    let Value::Object(object) = value else {
        return Err(format!(
            "the program left `.` as {}, not an object",
            kind_name(&value)
        ));
    };
    let mut event = Event {
        id: String::new(),
        tenant: String::new(),
        received_at: original.received_at,
        timestamp: original.timestamp,
        host: None,
        app: None,
        procid: None,
        msgid: None,
        facility: None,
        severity: None,
        message: String::new(),
        structured_data: StructuredData::new(),
        fields: serde_json::Map::new(),
        source: Default::default(),
        id_from_publisher: original.id_from_publisher,
    };
    let mut extra = Vec::new();
    for (key, value) in object {
        match key.as_str() {
            "id" | "tenant" | "received_at" | "source" => {}
            "timestamp" => event.timestamp = timestamp(value)?,
            "host" => event.host = optional_string("host", value)?,
            "app" => event.app = optional_string("app", value)?,
            "procid" => event.procid = optional_string("procid", value)?,
            "msgid" => event.msgid = optional_string("msgid", value)?,
            "facility" => event.facility = keyword::<Facility>("facility", value)?,
            "severity" => event.severity = keyword::<Severity>("severity", value)?,
            "message" => {
                event.message = match value {
                    Value::Null => String::new(),
                    other => string_of(other)?,
                }
            }
            "structured_data" => event.structured_data = structured_data(value)?,
            "fields" => match value {
                Value::Object(fields) => {
                    event.fields = fields
                        .into_iter()
                        .map(|(k, v)| (String::from(k), to_json(v)))
                        .collect()
                }
                Value::Null => {}
                other => {
                    return Err(format!(
                        ".fields must be an object, not {}",
                        kind_name(&other)
                    ))
                }
            },
            _ => extra.push((String::from(key), to_json(value))),
        }
    }
    // Keys that are not event fields go to `fields`, after the program's own `.fields`.
    event.fields.extend(extra);
    Ok(event)
}

/// A JSON value as VRL's, read in place (no copy of the JSON first).
fn from_json(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            // JSON has no NaN, so every float is kept.
            None if n.is_f64() => Value::from_f64_or_zero(n.as_f64().unwrap_or_default()),
            // Beyond i64 (a large u64): as text, as VRL's own conversion does.
            None => Value::from(n.to_string()),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(from_json).collect()),
        serde_json::Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (KeyString::from(k.as_str()), from_json(v)))
                .collect(),
        ),
    }
}

/// A VRL value as JSON, as VRL writes it: bytes as (lossy) UTF-8, timestamps in RFC 3339,
/// infinite floats as null. Recursive: callers bound the depth first (`run::check_size`).
fn to_json(value: Value) -> serde_json::Value {
    match value {
        Value::Bytes(bytes) => serde_json::Value::String(text_of_bytes(bytes)),
        Value::String(s) => serde_json::Value::String(s.to_string()),
        Value::Regex(regex) => serde_json::Value::String(regex.as_str().to_owned()),
        Value::Integer(i) => i.into(),
        Value::Float(f) => f.into_inner().into(),
        Value::Boolean(b) => b.into(),
        Value::Timestamp(t) => rfc3339(&t).into(),
        Value::Object(map) => serde_json::Value::Object(
            map.into_iter()
                .map(|(k, v)| (String::from(k), to_json(v)))
                .collect(),
        ),
        Value::Array(items) => serde_json::Value::Array(items.into_iter().map(to_json).collect()),
        Value::Null => serde_json::Value::Null,
    }
}

/// A timestamp as VRL writes it.
fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Bytes as text, without a copy when they are UTF-8 and not shared.
fn text_of_bytes(bytes: bytes::Bytes) -> String {
    match String::from_utf8(Vec::from(bytes)) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

pub(crate) fn to_chrono(t: OffsetDateTime) -> DateTime<Utc> {
    let nanos = i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX);
    DateTime::from_timestamp_nanos(nanos)
}

fn from_chrono(t: DateTime<Utc>) -> Result<OffsetDateTime, String> {
    let nanos = t
        .timestamp_nanos_opt()
        .ok_or_else(|| format!(".timestamp {t} is out of range"))?;
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .map_err(|e| format!(".timestamp {t}: {e}"))
}

fn timestamp(value: Value) -> Result<OffsetDateTime, String> {
    match value {
        Value::Timestamp(t) => from_chrono(t),
        Value::Bytes(_) | Value::String(_) => {
            let text = string_of(value)?;
            let t = DateTime::parse_from_rfc3339(&text)
                .map_err(|e| format!(".timestamp {text:?} is not an RFC 3339 time: {e}"))?;
            from_chrono(t.with_timezone(&Utc))
        }
        Value::Integer(seconds) => OffsetDateTime::from_unix_timestamp(seconds)
            .map_err(|e| format!(".timestamp {seconds}: {e}")),
        other => Err(format!(
            ".timestamp must be a timestamp, an RFC 3339 string or Unix seconds, not {}",
            kind_name(&other)
        )),
    }
}

fn optional_string(name: &str, value: Value) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Object(_) | Value::Array(_) => Err(format!(
            ".{name} must be a string, not {}",
            kind_name(&value)
        )),
        other => Ok(Some(string_of(other)?)),
    }
}

fn keyword<T: std::str::FromStr<Err = String>>(
    name: &str,
    value: Value,
) -> Result<Option<T>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Integer(code) => code
            .to_string()
            .parse()
            .map(Some)
            .map_err(|e| format!(".{name}: {e}")),
        Value::Bytes(_) | Value::String(_) => {
            let text = string_of(value)?;
            text.parse().map(Some).map_err(|e| format!(".{name}: {e}"))
        }
        other => Err(format!(
            ".{name} must be a keyword or a code, not {}",
            kind_name(&other)
        )),
    }
}

fn structured_data(value: Value) -> Result<StructuredData, String> {
    let Value::Object(elements) = value else {
        return match value {
            Value::Null => Ok(StructuredData::new()),
            other => Err(format!(
                ".structured_data must be an object of objects, not {}",
                kind_name(&other)
            )),
        };
    };
    let mut sd = StructuredData::new();
    for (id, params) in elements {
        let Value::Object(params) = params else {
            return Err(format!(
                ".structured_data.{id} must be an object, not {}",
                kind_name(&params)
            ));
        };
        let params = params
            .into_iter()
            .map(|(k, v)| Ok((k.to_string(), string_of(v)?)))
            .collect::<Result<_, String>>()?;
        sd.insert(id.to_string(), params);
    }
    Ok(sd)
}

/// A scalar as text: strings as they are, numbers and booleans as written, timestamps in
/// RFC 3339.
fn string_of(value: Value) -> Result<String, String> {
    match value {
        Value::Timestamp(t) => Ok(rfc3339(&t)),
        Value::Bytes(bytes) => Ok(text_of_bytes(bytes)),
        Value::Object(_) | Value::Array(_) => serde_json::to_string(&to_json(value))
            .map_err(|e| format!("cannot write a value as JSON: {e}")),
        other => Ok(other.to_string_lossy().into_owned()),
    }
}

fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::Bytes(_) | Value::String(_) => "a string",
        Value::Regex(_) => "a regex",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Timestamp(_) => "a timestamp",
        Value::Object(_) => "an object",
        Value::Array(_) => "an array",
        Value::Null => "null",
    }
}
