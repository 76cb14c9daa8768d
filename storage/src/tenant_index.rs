//! One tenant's tantivy index: its event store and search index.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use meniscus_event::{wire, Event};
use tantivy::indexer::UserOperation;
use tantivy::{DateTime, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::schema::{self, Fields, SOURCE_RECORD};
use crate::tail::{SharedBatch, View, Visible};
use crate::{Error, Result};

/// Bits of `seq` that hold an event's position within its Raft entry.
pub(crate) const SEQ_POSITION_BITS: u32 = 20;

/// A tenant's index, shared by its writer and its searches.
pub struct TenantIndex {
    tenant: String,
    index: Index,
    reader: IndexReader,
    /// The committed index searches see, and the tail of applied events above it.
    visible: Arc<Mutex<Visible>>,
    pub(crate) fields: Fields,
}

impl TenantIndex {
    /// Opens the index in `dir`, creating it (and `dir`) when absent.
    pub fn open_or_create(dir: &Path, tenant: &str) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        crate::checkpoint::manage_segment_files(dir)?;
        let (schema, _) = schema::build();
        let directory = tantivy::directory::MmapDirectory::open(dir)
            .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
        let index = Index::open_or_create(directory, schema)?;
        let fields = Fields::from_schema(&index.schema())?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let committed = raft_index_of_payload(index.load_metas()?.payload.as_deref())?;
        let visible = Visible::new(reader.searcher(), committed);
        Ok(TenantIndex {
            tenant: tenant.to_owned(),
            index,
            reader,
            visible: Arc::new(Mutex::new(visible)),
            fields,
        })
    }

    /// Makes a commit written into the directory by someone else (a copy of the leader's
    /// index) visible to searches. Returns its Raft index.
    pub fn reload(&self) -> Result<u64> {
        self.reader.reload()?;
        let committed = self.committed_raft_index()?;
        lock(&self.visible).indexed(self.reader.searcher(), committed);
        Ok(committed)
    }

    /// The Raft index up to which every event of this tenant that this index holds is visible
    /// to searches.
    pub fn searchable_up_to(&self) -> u64 {
        lock(&self.visible).indexed_up_to
    }

    /// The Raft index up to which every event of this tenant is visible to a search that can
    /// scan the tail of unindexed events (see [`TenantIndex::can_scan`]).
    pub fn visible_up_to(&self) -> u64 {
        lock(&self.visible).visible_up_to()
    }

    /// Makes the tenant's events of the applied entry at `raft_index` searchable before they
    /// are indexed. `previous` is the tenant's previous entry in the log, or a point after it
    /// (see `tail`). Entries come in log order.
    pub fn push_unindexed(&self, raft_index: u64, previous: u64, batch: SharedBatch) {
        lock(&self.visible).push(raft_index, previous, batch);
    }

    /// The index and tail one search works on.
    pub(crate) fn view(&self) -> View {
        lock(&self.visible).view()
    }

    /// The tenant's name.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The last Raft index whose events this index has durably committed (0 when none).
    pub fn committed_raft_index(&self) -> Result<u64> {
        raft_index_of_payload(self.index.load_metas()?.payload.as_deref())
    }

    /// A writer. Only one may exist per index at a time (tantivy holds a lock file).
    pub fn writer(&self, memory_budget_bytes: usize, threads: usize) -> Result<TenantWriter> {
        let writer = self
            .index
            .writer_with_num_threads(threads.max(1), memory_budget_bytes)?;
        // A reopened tantivy writer (0.27) gives its first operation the opstamp of the last
        // commit. A delete with that stamp counts as already applied to segments whose deletes
        // were written at that commit, and a merge starting before our next commit then drops
        // it for good: a replaced event survives beside its retry. An empty batch uses up that
        // stamp, so every operation of this writer comes strictly after the commit.
        writer.run(Vec::<UserOperation>::new())?;
        Ok(TenantWriter {
            writer,
            reader: self.reader.clone(),
            visible: self.visible.clone(),
            fields: self.fields,
            indexed_up_to: self.committed_raft_index()?,
            pending: false,
        })
    }

    pub(crate) fn index(&self) -> &Index {
        &self.index
    }
}

/// Adds events to a tenant's index and commits them with the Raft index they came from.
pub struct TenantWriter {
    writer: IndexWriter,
    reader: IndexReader,
    visible: Arc<Mutex<Visible>>,
    fields: Fields,
    indexed_up_to: u64,
    pending: bool,
}

impl TenantWriter {
    /// The highest Raft index added (committed or not).
    pub fn indexed_up_to(&self) -> u64 {
        self.indexed_up_to
    }

    /// Whether events were added since the last commit.
    pub fn has_pending(&self) -> bool {
        self.pending
    }

    /// Adds the events of the Raft entry at `raft_index`. Entries at or below what this index
    /// already holds are skipped, so replaying the log after a restart indexes nothing twice.
    /// Returns how many events were added.
    pub fn add_entry(&mut self, raft_index: u64, events: &[Event]) -> Result<usize> {
        if raft_index <= self.indexed_up_to {
            return Ok(0);
        }
        for (position, event) in events.iter().enumerate() {
            self.add_event(raft_index, position, event, &wire::encode_record(event))?;
        }
        self.indexed_up_to = raft_index;
        self.pending = true;
        Ok(events.len())
    }

    /// As [`TenantWriter::add_entry`], for the entry's encoded event batch: each event's own
    /// record bytes are stored as they came, not encoded again.
    pub fn add_encoded_entry(&mut self, raft_index: u64, batch: &[u8]) -> Result<usize> {
        if raft_index <= self.indexed_up_to {
            return Ok(0);
        }
        let events =
            wire::decode_batch_records(batch).map_err(|e| Error::Corrupt(e.to_string()))?;
        for (position, (event, record)) in events.iter().enumerate() {
            self.add_event(raft_index, position, event, record)?;
        }
        self.indexed_up_to = raft_index;
        self.pending = true;
        Ok(events.len())
    }

    fn add_event(
        &mut self,
        raft_index: u64,
        position: usize,
        event: &Event,
        record: &[u8],
    ) -> Result<()> {
        if event.id_from_publisher {
            // A publisher's retry of an acknowledged event replaces it: idempotent by id.
            self.writer
                .delete_term(Term::from_field_text(self.fields.id, &event.id));
        }
        let seq = (raft_index << SEQ_POSITION_BITS) | position as u64;
        self.writer
            .add_document(to_document(&self.fields, event, seq, record)?)?;
        Ok(())
    }

    /// Records that every entry up to `raft_index` has been seen even if none was this tenant's,
    /// so the next commit's payload moves forward and the log below it can be compacted.
    pub fn mark_seen(&mut self, raft_index: u64) {
        if raft_index > self.indexed_up_to {
            self.indexed_up_to = raft_index;
            self.pending = true;
        }
    }

    /// Durably commits everything added, with the Raft index in the commit payload, and makes it
    /// searchable. Returns the committed Raft index.
    pub fn commit(&mut self) -> Result<u64> {
        if !self.pending {
            return Ok(self.indexed_up_to);
        }
        let mut prepared = self.writer.prepare_commit()?;
        prepared.set_payload(&self.indexed_up_to.to_string());
        prepared.commit()?;
        self.reader.reload()?;
        lock(&self.visible).indexed(self.reader.searcher(), self.indexed_up_to);
        self.pending = false;
        Ok(self.indexed_up_to)
    }
}

/// The Raft index a commit payload records (0 for a commit without one).
pub(crate) fn raft_index_of_payload(payload: Option<&str>) -> Result<u64> {
    match payload {
        None => Ok(0),
        Some(p) => p
            .parse()
            .map_err(|_| Error::Corrupt(format!("index commit payload {p:?} is not a Raft index"))),
    }
}

fn lock(visible: &Mutex<Visible>) -> MutexGuard<'_, Visible> {
    visible.lock().expect("tenant index view lock poisoned")
}

fn micros(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

fn to_document(f: &Fields, e: &Event, seq: u64, record: &[u8]) -> Result<TantivyDocument> {
    let mut doc = TantivyDocument::default();
    // Only a publisher's id is indexed: it is what a retry replaces and what a user searches
    // for. A generated id is a unique random term per event, and indexing it (term dictionary,
    // postings, and again at every merge) took about a fifth of ingest CPU.
    if e.id_from_publisher {
        doc.add_text(f.id, &e.id);
    }
    doc.add_text(f.message, &e.message);
    let optional = [
        (f.host, &e.host),
        (f.app, &e.app),
        (f.procid, &e.procid),
        (f.msgid, &e.msgid),
    ];
    for (field, value) in optional {
        if let Some(v) = value {
            doc.add_text(field, v);
        }
    }
    if let Some(s) = e.severity {
        doc.add_text(f.severity, s.keyword());
    }
    if let Some(fac) = e.facility {
        doc.add_text(f.facility, fac.keyword());
    }
    doc.add_text(f.transport, &e.source.transport);
    doc.add_date(
        f.timestamp,
        DateTime::from_timestamp_micros(micros(e.timestamp)),
    );
    doc.add_date(
        f.received_at,
        DateTime::from_timestamp_micros(micros(e.received_at)),
    );
    if !e.structured_data.is_empty() {
        let sd =
            serde_json::to_value(&e.structured_data).map_err(|e| Error::Corrupt(e.to_string()))?;
        if let serde_json::Value::Object(map) = sd {
            doc.add_object(
                f.structured_data,
                map.into_iter().map(|(k, v)| (k, v.into())).collect(),
            );
        }
    }
    if !e.fields.is_empty() {
        doc.add_object(
            f.fields,
            e.fields
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect(),
        );
    }
    doc.add_i64(f.ts_us, micros(e.timestamp));
    doc.add_u64(f.seq, seq);
    let mut source = Vec::with_capacity(1 + record.len());
    source.push(SOURCE_RECORD);
    source.extend_from_slice(record);
    doc.add_bytes(f.source, &source);
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use meniscus_event::{Event, Source};
    use tantivy::collector::Count;
    use tantivy::indexer::NoMergePolicy;
    use tantivy::query::TermQuery;
    use tantivy::schema::IndexRecordOption;

    use super::*;

    fn event(id: &str) -> Event {
        let t = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        Event {
            id: id.to_owned(),
            tenant: "acme".into(),
            received_at: t,
            timestamp: t,
            host: None,
            app: None,
            procid: None,
            msgid: None,
            facility: None,
            severity: None,
            message: format!("event {id}"),
            structured_data: Default::default(),
            fields: Default::default(),
            source: Source::default(),
            id_from_publisher: true,
        }
    }

    fn copies(index: &TenantIndex, id: &str) -> usize {
        let reader = index.index().reader().unwrap();
        let term = Term::from_field_text(index.fields.id, id);
        reader
            .searcher()
            .search(&TermQuery::new(term, IndexRecordOption::Basic), &Count)
            .unwrap()
    }

    /// Found by the chaos harness (power losses, a batch retried with the same ids): a reopened
    /// tantivy writer hands its first operation the opstamp of the last commit. When that
    /// operation is a retry's delete-by-id and a merge of committed segments starts before the
    /// next commit, the merge treats the delete as already applied to segments whose deletes
    /// were last written at that commit, yet moves past it on the others: the replaced event
    /// survived beside its retry.
    #[test]
    fn a_retry_replayed_first_after_reopening_replaces_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let index = TenantIndex::open_or_create(dir.path(), "acme").unwrap();
        let f = index.fields;
        // Before the crash: eight committed segments (enough for the default merge policy).
        // The largest (merged first) has no deletes; the next holds the original event and, in
        // the last commit, loses another event to a delete, so its deletes are stamped with that
        // commit's opstamp.
        {
            let mut w: IndexWriter = index
                .index()
                .writer_with_num_threads(1, 15_000_000)
                .unwrap();
            w.set_merge_policy(Box::new(NoMergePolicy));
            let segments: Vec<Vec<String>> = [
                vec![
                    "big-0".to_owned(),
                    "big-1".to_owned(),
                    "big-2".to_owned(),
                    "big-3".to_owned(),
                ],
                vec![
                    "original".to_owned(),
                    "doomed".to_owned(),
                    "kept".to_owned(),
                ],
            ]
            .into_iter()
            .chain((0..6).map(|i| vec![format!("other-{i}")]))
            .collect();
            for (entry, ids) in segments.iter().enumerate() {
                for (position, id) in ids.iter().enumerate() {
                    let seq = ((entry as u64 + 1) << SEQ_POSITION_BITS) | position as u64;
                    let e = event(id);
                    w.add_document(to_document(&f, &e, seq, &wire::encode_record(&e)).unwrap())
                        .unwrap();
                }
                w.commit().unwrap();
            }
            w.delete_term(Term::from_field_text(f.id, "doomed"));
            let mut prepared = w.prepare_commit().unwrap();
            prepared.set_payload("8");
            prepared.commit().unwrap();
        }
        assert_eq!(copies(&index, "original"), 1);
        assert_eq!(index.index().searchable_segment_ids().unwrap().len(), 8);

        // After the restart the retry is the first entry replayed.
        let mut writer = index.writer(15_000_000, 1).unwrap();
        assert_eq!(writer.indexed_up_to(), 8);
        writer.add_entry(9, &[event("original")]).unwrap();
        writer.commit().unwrap();
        // The merge the commit started lands on its own time: wait for it.
        let deadline = Instant::now() + Duration::from_secs(20);
        while index.index().searchable_segment_ids().unwrap().len() > 3 {
            assert!(
                Instant::now() < deadline,
                "the committed segments were never merged"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            copies(&index, "original"),
            1,
            "the retry must replace the original"
        );
        assert_eq!(copies(&index, "doomed"), 0);
        assert_eq!(copies(&index, "kept"), 1);
        assert_eq!(copies(&index, "big-2"), 1);
        assert_eq!(copies(&index, "other-5"), 1);
    }
}
