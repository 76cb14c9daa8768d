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
        Value::from(serde_json::Value::Object(event.fields.clone())),
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

/// The event a program left in `value`, starting from `original`: what the program may not
/// change (`id`, `tenant`, `received_at`, `source`) comes from `original`.
pub fn from_value(value: Value, original: &Event) -> Result<Event, String> {
    let Value::Object(object) = value else {
        return Err(format!(
            "the program left `.` as {}, not an object",
            kind_name(&value)
        ));
    };
    let mut event = Event {
        host: None,
        app: None,
        procid: None,
        msgid: None,
        facility: None,
        severity: None,
        message: String::new(),
        structured_data: StructuredData::new(),
        fields: serde_json::Map::new(),
        ..original.clone()
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
            "fields" => match json(value)? {
                serde_json::Value::Object(fields) => event.fields = fields,
                serde_json::Value::Null => {}
                other => {
                    return Err(format!(
                        ".fields must be an object, not {}",
                        json_kind(&other)
                    ))
                }
            },
            _ => extra.push((key.to_string(), json(value)?)),
        }
    }
    // Keys that are not event fields go to `fields`, after the program's own `.fields`.
    event.fields.extend(extra);
    Ok(event)
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
        Value::Timestamp(t) => Ok(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        Value::Object(_) | Value::Array(_) => serde_json::to_string(&json(value)?)
            .map_err(|e| format!("cannot write a value as JSON: {e}")),
        other => Ok(other.to_string_lossy().into_owned()),
    }
}

fn json(value: Value) -> Result<serde_json::Value, String> {
    let kind = kind_name(&value);
    value
        .try_into()
        .map_err(|e| format!("a {kind} cannot be stored as JSON: {e}"))
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

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
        serde_json::Value::Null => "null",
    }
}
