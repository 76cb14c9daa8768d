//! The tantivy schema of a tenant index.

use crate::{Error, Result};

use tantivy::schema::{
    DateOptions, DateTimePrecision, Field, JsonObjectOptions, Schema, FAST, STORED, STRING, TEXT,
};

/// Every field of a tenant index, resolved once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fields {
    pub id: Field,
    pub message: Field,
    pub host: Field,
    pub app: Field,
    pub procid: Field,
    pub msgid: Field,
    pub severity: Field,
    pub facility: Field,
    pub transport: Field,
    pub timestamp: Field,
    pub received_at: Field,
    pub structured_data: Field,
    pub fields: Field,
    /// Timestamp in microseconds: the primary sort key.
    pub ts_us: Field,
    /// Raft index << 20 | position in batch: a unique, replica-independent tie breaker.
    pub seq: Field,
    /// The event as JSON, returned by search.
    pub source: Field,
}

/// First byte of a `_source` holding the event's wire record (an `EventRecord`, as the Raft
/// entry carried it: storing it costs a copy, where JSON cost a fifth of the indexing work).
/// Indexes written before hold the event's JSON, which starts with `{`.
pub(crate) const SOURCE_RECORD: u8 = 1;

/// The event as JSON, from a stored `_source` of either kind.
pub(crate) fn source_json(source: &[u8]) -> Result<String> {
    match source.split_first() {
        Some((&SOURCE_RECORD, record)) => {
            let event = meniscus_event::wire::decode_record(record)
                .map_err(|e| Error::Corrupt(format!("_source: {e}")))?;
            serde_json::to_string(&event).map_err(|e| Error::Corrupt(e.to_string()))
        }
        Some((b'{', _)) => String::from_utf8(source.to_vec())
            .map_err(|e| Error::Corrupt(format!("_source is not UTF-8: {e}"))),
        _ => Err(Error::Corrupt(
            "_source is neither a record nor JSON".into(),
        )),
    }
}

/// Names a user may use in queries, in the order the schema declares them.
pub(crate) const DEFAULT_QUERY_FIELDS: &[&str] = &["message"];

pub(crate) fn build() -> (Schema, Fields) {
    let mut b = Schema::builder();
    // Fast only, not indexed: range filters on fast fields never use the inverted index in
    // tantivy 0.27, and indexing three timestamps per event cost ~10% of ingest CPU.
    let date = DateOptions::default()
        .set_fast()
        .set_precision(DateTimePrecision::Microseconds);
    let json = JsonObjectOptions::from(TEXT).set_expand_dots_enabled();
    // `fields` are also fast, as Elasticsearch keeps doc values: numeric and date ranges on
    // `fields.*` (`fields.status:[400 TO 599]`, `fields.took_ms:>250`) need them, and
    // aggregations will. Text values go to the fast column as they are ("raw").
    let fast_json = json.clone().set_fast("raw");
    let fields = Fields {
        id: b.add_text_field("id", STRING),
        message: b.add_text_field("message", TEXT),
        host: b.add_text_field("host", STRING),
        app: b.add_text_field("app", STRING),
        procid: b.add_text_field("procid", STRING),
        msgid: b.add_text_field("msgid", STRING),
        severity: b.add_text_field("severity", STRING),
        facility: b.add_text_field("facility", STRING),
        transport: b.add_text_field("transport", STRING),
        timestamp: b.add_date_field("timestamp", date.clone()),
        received_at: b.add_date_field("received_at", date),
        structured_data: b.add_json_field("structured_data", json.clone()),
        fields: b.add_json_field("fields", fast_json),
        ts_us: b.add_i64_field("_ts_us", FAST),
        seq: b.add_u64_field("_seq", FAST),
        source: b.add_bytes_field("_source", STORED),
    };
    (b.build(), fields)
}

impl Fields {
    pub(crate) fn from_schema(schema: &Schema) -> tantivy::Result<Fields> {
        let f = |name: &str| schema.get_field(name);
        Ok(Fields {
            id: f("id")?,
            message: f("message")?,
            host: f("host")?,
            app: f("app")?,
            procid: f("procid")?,
            msgid: f("msgid")?,
            severity: f("severity")?,
            facility: f("facility")?,
            transport: f("transport")?,
            timestamp: f("timestamp")?,
            received_at: f("received_at")?,
            structured_data: f("structured_data")?,
            fields: f("fields")?,
            ts_us: f("_ts_us")?,
            seq: f("_seq")?,
            source: f("_source")?,
        })
    }
}
