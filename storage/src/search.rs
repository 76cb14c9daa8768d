//! Searching one tenant's index: query string, time range, newest first, cursor pagination.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use meniscus_event::wire;

use serde_json::value::RawValue;
use tantivy::collector::sort_key::NaturalComparator;
use tantivy::collector::{Count, SortKeyComputer, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, QueryParser, RangeQuery, TermSetQuery};
use tantivy::schema::Value;
use tantivy::{DocAddress, DocId, SegmentReader, TantivyDocument, Term};

use crate::scan::ScanQuery;
use crate::schema::{self, DEFAULT_QUERY_FIELDS};
use crate::tail::{self, TailEntry};
use crate::tenant_index::SEQ_POSITION_BITS;
use crate::{Error, Result, TenantIndex};

/// Most events one page may hold.
pub const MAX_LIMIT: usize = 10_000;

/// A search of one tenant's events.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SearchRequest {
    /// tantivy query syntax; empty or `*` matches everything.
    pub query: String,
    /// Inclusive lower bound on the event timestamp, Unix microseconds.
    pub from_us: Option<i64>,
    /// Exclusive upper bound on the event timestamp, Unix microseconds.
    pub to_us: Option<i64>,
    /// Page size, 1 to [`MAX_LIMIT`].
    pub limit: usize,
    /// The previous page's `next`.
    pub cursor: Option<String>,
}

/// One page of results, newest first.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct SearchResponse {
    /// How many events match the query and time range (all pages).
    pub total: u64,
    /// The events of this page, as JSON.
    pub hits: Vec<SearchHit>,
    /// The cursor for the next page, if there may be one.
    pub next: Option<String>,
}

/// One event as stored (JSON).
pub type SearchHit = Box<RawValue>;

/// Position in the newest-first order: (timestamp µs, seq).
type SortKey = (i64, u64);

fn encode_cursor(key: SortKey) -> String {
    format!("{}_{}", key.0, key.1)
}

fn decode_cursor(s: &str) -> Result<SortKey> {
    let bad = || {
        Error::InvalidCursor(format!(
            "{s:?} is not a cursor returned by a previous search"
        ))
    };
    let (ts, seq) = s.split_once('_').ok_or_else(bad)?;
    Ok((
        ts.parse().map_err(|_| bad())?,
        seq.parse().map_err(|_| bad())?,
    ))
}

/// Sorts newest first and drops everything at or after the cursor (those sort as `None`).
struct NewestFirst {
    before: Option<SortKey>,
}

impl SortKeyComputer for NewestFirst {
    type SortKey = Option<SortKey>;
    type Child = Box<dyn FnMut(DocId) -> Option<SortKey> + Send>;
    type Comparator = NaturalComparator;

    fn segment_sort_key_computer(&self, segment: &SegmentReader) -> tantivy::Result<Self::Child> {
        let ts = segment.fast_fields().i64("_ts_us")?.first_or_default_col(0);
        let seq = segment.fast_fields().u64("_seq")?.first_or_default_col(0);
        let before = self.before;
        Ok(Box::new(move |doc| {
            let key = (ts.get_val(doc), seq.get_val(doc));
            match before {
                Some(cursor) if key >= cursor => None,
                _ => Some(key),
            }
        }))
    }
}

impl TenantIndex {
    /// Runs a search against the last committed state of the index and, when the query can be
    /// scanned, the applied events not yet indexed (the tail).
    pub fn search(&self, req: &SearchRequest) -> Result<SearchResponse> {
        crate::query_limits::check(&req.query)?;
        let canonical;
        let req = match crate::query_terms::canonical(&req.query) {
            std::borrow::Cow::Borrowed(_) => req,
            std::borrow::Cow::Owned(query) => {
                canonical = SearchRequest {
                    query,
                    ..req.clone()
                };
                &canonical
            }
        };
        let limit = req.limit.clamp(1, MAX_LIMIT);
        let query = self.parse_query(req)?;
        let before = req.cursor.as_deref().map(decode_cursor).transpose()?;
        let view = self.view();
        let mut scan = match view.tail.is_empty() {
            true => None,
            false => self.scan_query(req),
        };
        let latest = match scan {
            Some(_) => latest_by_id(&view.tail)?,
            None => HashMap::new(),
        };
        let query = self.without_replaced(query, &latest);
        let collector = (
            Count,
            TopDocs::with_limit(limit).order_by(NewestFirst { before }),
        );
        let (indexed_total, indexed_top) = view
            .searcher
            .search(&*query, &collector)
            .map_err(|e| query_error(&req.query, e))?;
        let mut tail_total = 0;
        let mut tail_top = Vec::new();
        if let Some(scan) = &mut scan {
            let limits = (before, limit);
            (tail_total, tail_top) = scan_tail(&view.tail, scan, &latest, limits)?;
        }
        // Newest first across both: the index's hits and the tail's, each sorted already.
        let mut top: Vec<(SortKey, Hit)> = indexed_top
            .into_iter()
            .filter_map(|(key, address)| key.map(|key| (key, Hit::Indexed(address))))
            .chain(tail_top)
            .collect();
        top.sort_by_key(|(key, _)| Reverse(*key));
        top.truncate(limit);
        let mut hits = Vec::with_capacity(top.len());
        let mut last = None;
        let mut decoded = HashMap::new();
        for (key, hit) in top {
            let json = match hit {
                Hit::Indexed(address) => {
                    let doc: TantivyDocument = view.searcher.doc(address)?;
                    let source = doc
                        .get_first(self.fields.source)
                        .and_then(|v| v.as_bytes())
                        .ok_or_else(|| Error::Corrupt("indexed event has no _source".into()))?;
                    schema::source_json(source)?
                }
                Hit::Unindexed(entry, position) => {
                    // Hits come from few entries: decode each once.
                    let events = match decoded.entry(entry.raft_index) {
                        Entry::Occupied(e) => e.into_mut(),
                        Entry::Vacant(e) => {
                            e.insert(wire::decode_batch(entry.batch()).map_err(tail::corrupt)?)
                        }
                    };
                    let event = events.get(position).ok_or_else(|| {
                        Error::Corrupt(format!("no event {position} in a tail batch"))
                    })?;
                    serde_json::to_string(event).map_err(|e| Error::Corrupt(e.to_string()))?
                }
            };
            hits.push(RawValue::from_string(json).map_err(|e| Error::Corrupt(e.to_string()))?);
            last = Some(key);
        }
        let next = if hits.len() == limit {
            last.map(encode_cursor)
        } else {
            None
        };
        Ok(SearchResponse {
            total: indexed_total as u64 + tail_total,
            hits,
            next,
        })
    }

    /// Whether a search for `req` also sees the applied events not yet indexed (the tail); a
    /// query using parts of the language scanning does not support sees indexed events only.
    pub fn can_scan(&self, req: &SearchRequest) -> bool {
        self.scan_query(req).is_some()
    }

    /// `query` without the indexed events whose publisher ids come again in the tail: the
    /// later event replaces them, as indexing it will (a delete by id).
    fn without_replaced(&self, query: Box<dyn Query>, latest: &Latest) -> Box<dyn Query> {
        if latest.is_empty() {
            return query;
        }
        let ids = latest
            .keys()
            .map(|id| Term::from_field_text(self.fields.id, id));
        Box::new(BooleanQuery::new(vec![
            (Occur::Must, query),
            (Occur::MustNot, Box::new(TermSetQuery::new(ids))),
        ]))
    }

    fn scan_query(&self, req: &SearchRequest) -> Option<ScanQuery> {
        ScanQuery::compile(
            &req.query,
            req.from_us,
            req.to_us,
            self.index().tokenizers(),
        )
    }

    fn parse_query(&self, req: &SearchRequest) -> Result<Box<dyn Query>> {
        let text = req.query.trim();
        let base: Box<dyn Query> = if text.is_empty() || text == "*" {
            Box::new(AllQuery)
        } else {
            let defaults = DEFAULT_QUERY_FIELDS
                .iter()
                .map(|name| self.index().schema().get_field(name))
                .collect::<tantivy::Result<Vec<_>>>()?;
            let mut parser = QueryParser::for_index(self.index(), defaults);
            parser.set_conjunction_by_default();
            parser
                .parse_query(text)
                .map_err(|e| Error::InvalidQuery(format!("{text:?}: {e}")))?
        };
        if req.from_us.is_none() && req.to_us.is_none() {
            return Ok(base);
        }
        let term = |us| Term::from_field_i64(self.fields.ts_us, us);
        let lower = req
            .from_us
            .map_or(Bound::Unbounded, |us| Bound::Included(term(us)));
        let upper = req
            .to_us
            .map_or(Bound::Unbounded, |us| Bound::Excluded(term(us)));
        let range: Box<dyn Query> = Box::new(RangeQuery::new(lower, upper));
        Ok(Box::new(BooleanQuery::intersection(vec![base, range])))
    }
}

/// A search the index refused because of the query (a range on a field that has no fast
/// column, say) is the user's mistake: an invalid query, not an internal error.
fn query_error(query: &str, e: tantivy::TantivyError) -> Error {
    match e {
        tantivy::TantivyError::SchemaError(m) | tantivy::TantivyError::InvalidArgument(m) => {
            Error::InvalidQuery(format!("{query:?}: {m}"))
        }
        other => Error::Index(other),
    }
}

/// Where a hit's event is.
enum Hit {
    Indexed(DocAddress),
    /// An entry of the tail and the event's position in it.
    Unindexed(Arc<TailEntry>, usize),
}

/// Each publisher id of the tail and where its last event is (Raft index, position): that
/// event replaces every earlier one with the id.
type Latest<'a> = HashMap<&'a str, (u64, usize)>;

fn latest_by_id(tail: &[Arc<TailEntry>]) -> Result<Latest<'_>> {
    let mut latest = HashMap::new();
    for entry in tail {
        for (position, key) in entry.keys()?.iter().enumerate() {
            if let Some(id) = &key.publisher_id {
                latest.insert(id.as_str(), (entry.raft_index, position));
            }
        }
    }
    Ok(latest)
}

/// Counts the tail's matches and keeps the newest `limit` before the cursor, newest first.
fn scan_tail(
    tail: &[Arc<TailEntry>],
    scan: &mut ScanQuery,
    latest: &Latest,
    (before, limit): (Option<SortKey>, usize),
) -> Result<(u64, Vec<(SortKey, Hit)>)> {
    // A min-heap of the newest `limit` keys seen so far.
    let mut newest: BinaryHeap<Reverse<(SortKey, usize, usize)>> = BinaryHeap::new();
    let mut total = 0;
    for (entry_at, entry) in tail.iter().enumerate() {
        let keys = entry.keys()?;
        let views = match scan.matches_all() {
            true => None,
            false => Some(wire::batch_views(entry.batch()).map_err(tail::corrupt)?),
        };
        for (position, key) in keys.iter().enumerate() {
            let replaced = key
                .publisher_id
                .as_deref()
                .is_some_and(|id| latest.get(id) != Some(&(entry.raft_index, position)));
            if replaced || !scan.in_range(key.ts_us) {
                continue;
            }
            if let Some(views) = &views {
                let view = views
                    .get(position)
                    .ok_or_else(|| Error::Corrupt("a tail batch lost an event".into()))?;
                if !scan.matches(view) {
                    continue;
                }
            }
            // Every page counts every match, as the index's count does.
            total += 1;
            let sort_key = (
                key.ts_us,
                entry.raft_index << SEQ_POSITION_BITS | position as u64,
            );
            if before.is_some_and(|cursor| sort_key >= cursor) {
                continue;
            }
            if newest.len() < limit {
                newest.push(Reverse((sort_key, entry_at, position)));
            } else if newest
                .peek()
                .is_some_and(|Reverse(oldest)| oldest.0 < sort_key)
            {
                newest.pop();
                newest.push(Reverse((sort_key, entry_at, position)));
            }
        }
    }
    let top = newest
        .into_sorted_vec()
        .into_iter()
        .map(|Reverse((key, entry_at, position))| {
            (key, Hit::Unindexed(tail[entry_at].clone(), position))
        })
        .collect();
    Ok((total, top))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meniscus_event::{Event, Severity, Source};
    use time::OffsetDateTime;

    fn event(i: i64, message: &str, severity: Severity) -> Event {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000 + i).unwrap();
        Event {
            id: format!("e{i}"),
            tenant: "acme".into(),
            received_at: t,
            timestamp: t,
            host: Some(format!("web-{}", i % 3)),
            app: None,
            procid: None,
            msgid: None,
            facility: None,
            severity: Some(severity),
            message: message.into(),
            structured_data: Default::default(),
            fields: serde_json::json!({"user": format!("u{}", i % 2)})
                .as_object()
                .unwrap()
                .clone(),
            source: Source::default(),
            id_from_publisher: true,
        }
    }

    fn ids(resp: &SearchResponse) -> Vec<String> {
        resp.hits
            .iter()
            .map(|h| serde_json::from_str::<Event>(h.get()).unwrap().id)
            .collect()
    }

    #[test]
    fn queries_ranges_order_and_pages() {
        let dir = tempfile::tempdir().unwrap();
        let index = TenantIndex::open_or_create(dir.path(), "acme").unwrap();
        let mut w = index.writer(15_000_000, 1).unwrap();
        let events: Vec<Event> = (0..50)
            .map(|i| {
                event(
                    i,
                    if i % 5 == 0 {
                        "disk failure"
                    } else {
                        "all good"
                    },
                    Severity::Info,
                )
            })
            .collect();
        w.add_entry(1, &events[..25]).unwrap();
        w.add_entry(2, &events[25..]).unwrap();
        assert_eq!(w.commit().unwrap(), 2);
        assert_eq!(index.committed_raft_index().unwrap(), 2);

        let search = |query: &str, limit, cursor: Option<String>| {
            index
                .search(&SearchRequest {
                    query: query.into(),
                    limit,
                    cursor,
                    ..Default::default()
                })
                .unwrap()
        };
        let all = search("*", 100, None);
        assert_eq!(all.total, 50);
        assert_eq!(ids(&all)[..3], ["e49", "e48", "e47"]);
        assert!(all.next.is_none());

        let failures = search("message:failure", 100, None);
        assert_eq!(failures.total, 10);
        assert_eq!(search("failure", 100, None).total, 10);
        // i % 3 == 1 and i % 2 == 1: i = 1, 7, 13, ..., 49.
        assert_eq!(search("host:web-1 AND fields.user:u1", 100, None).total, 9);

        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = search("*", 7, cursor);
            seen.extend(ids(&page));
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
        let expected: Vec<String> = (0..50).rev().map(|i| format!("e{i}")).collect();
        assert_eq!(seen, expected);

        let ranged = index
            .search(&SearchRequest {
                query: "*".into(),
                from_us: Some((1_700_000_000 + 10) * 1_000_000),
                to_us: Some((1_700_000_000 + 20) * 1_000_000),
                limit: 100,
                cursor: None,
            })
            .unwrap();
        assert_eq!(ranged.total, 10);
        assert!(matches!(
            index.search(&SearchRequest {
                query: "message:(".into(),
                limit: 1,
                ..Default::default()
            }),
            Err(Error::InvalidQuery(_))
        ));
        assert!(matches!(
            index.search(&SearchRequest {
                query: "*".into(),
                limit: 1,
                cursor: Some("nope".into()),
                ..Default::default()
            }),
            Err(Error::InvalidCursor(_))
        ));
    }

    #[test]
    fn replays_and_publisher_retries_do_not_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let index = TenantIndex::open_or_create(dir.path(), "acme").unwrap();
        let mut w = index.writer(15_000_000, 1).unwrap();
        let batch = vec![event(1, "a", Severity::Err), event(2, "b", Severity::Err)];
        assert_eq!(w.add_entry(3, &batch).unwrap(), 2);
        assert_eq!(
            w.add_entry(3, &batch).unwrap(),
            0,
            "a replayed entry is skipped"
        );
        assert_eq!(
            w.add_entry(4, &batch[..1]).unwrap(),
            1,
            "a retry is a new entry"
        );
        w.commit().unwrap();
        drop(w);
        let total = |i: &TenantIndex| {
            i.search(&SearchRequest {
                query: "*".into(),
                limit: 10,
                ..Default::default()
            })
            .unwrap()
            .total
        };
        assert_eq!(total(&index), 2);
        let reopened = TenantIndex::open_or_create(dir.path(), "acme").unwrap();
        assert_eq!(reopened.committed_raft_index().unwrap(), 4);
        let mut w = reopened.writer(15_000_000, 1).unwrap();
        assert_eq!(w.add_entry(4, &batch).unwrap(), 0);
        assert_eq!(total(&reopened), 2);
    }

    #[test]
    fn only_publisher_ids_are_searchable() {
        let dir = tempfile::tempdir().unwrap();
        let index = TenantIndex::open_or_create(dir.path(), "acme").unwrap();
        let mut w = index.writer(15_000_000, 1).unwrap();
        let given = event(1, "a", Severity::Info);
        let mut generated = event(2, "b", Severity::Info);
        generated.id_from_publisher = false;
        w.add_entry(1, &[given, generated]).unwrap();
        w.commit().unwrap();
        let search = |query: &str| {
            index
                .search(&SearchRequest {
                    query: query.into(),
                    limit: 10,
                    ..Default::default()
                })
                .unwrap()
        };
        assert_eq!(ids(&search("id:e1")), ["e1"]);
        assert_eq!(search("id:e2").total, 0, "a generated id is not indexed");
        assert_eq!(
            ids(&search("b")),
            ["e2"],
            "but it is returned with its event"
        );
    }
}

#[cfg(test)]
mod source_tests {
    use meniscus_event::{wire, Event, Severity};
    use time::OffsetDateTime;

    use crate::schema::{source_json, SOURCE_RECORD};

    fn event() -> Event {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let mut e = Event {
            id: "e1".into(),
            tenant: "acme".into(),
            received_at: t,
            timestamp: t,
            host: Some("web-1".into()),
            app: Some("nginx".into()),
            procid: None,
            msgid: None,
            facility: None,
            severity: Some(Severity::Warning),
            message: "disk \"full\"".into(),
            structured_data: Default::default(),
            fields: serde_json::Map::new(),
            source: Default::default(),
            id_from_publisher: true,
        };
        e.fields.insert("user".into(), "u1".into());
        e
    }

    #[test]
    fn a_stored_record_reads_back_as_the_events_json() {
        let e = event();
        let mut source = vec![SOURCE_RECORD];
        source.extend_from_slice(&wire::encode_record(&e));
        assert_eq!(
            source_json(&source).unwrap(),
            serde_json::to_string(&e).unwrap()
        );
    }

    #[test]
    fn json_stored_by_earlier_versions_reads_back_unchanged() {
        let json = serde_json::to_string(&event()).unwrap();
        assert_eq!(source_json(json.as_bytes()).unwrap(), json);
    }

    #[test]
    fn anything_else_is_corrupt() {
        assert!(source_json(b"").is_err());
        assert!(source_json(&[SOURCE_RECORD, 0xff, 0xff]).is_err());
        assert!(source_json(b"\x07abc").is_err());
    }
}
