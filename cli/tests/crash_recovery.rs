//! Acceptance 2: SIGKILL right after an acknowledged publish loses nothing and duplicates nothing;
//! and the same holds across a loop of at least 20 kills during continuous publishing.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    distinct, ids, ndjson, poll_until, post_events, Node, Rng, TestDir, SEARCHABLE_TIMEOUT,
};
use serde_json::{json, Value};

/// Every acked id is present, nothing occurs twice, and nothing unknown appears.
fn check_exactly_once(node: &Node, token: &str, acked: &HashSet<String>, sent: &HashSet<String>) {
    // Wait until every acknowledged event is searchable (the index catches up from the log).
    let mut missing = acked.len();
    let caught_up = poll_until(SEARCHABLE_TIMEOUT, || {
        let all = node.try_search_all(token, "*", 10_000).ok()?;
        let found: HashSet<String> = ids(&all).into_iter().collect();
        missing = acked.difference(&found).count();
        (missing == 0).then_some(())
    });
    assert!(
        caught_up.is_some(),
        "{missing} of {} acknowledged events are not searchable after restart",
        acked.len()
    );
    // search_all checks that paging yields exactly `total` events; distinct() that none repeats.
    let all = node.search_all(token, "*", 10_000);
    let found = distinct(&ids(&all));
    assert_eq!(found.len() as u64, node.total(token, "*"));
    let unknown: Vec<&String> = found.difference(sent).take(10).collect();
    assert!(unknown.is_empty(), "events nobody sent: {unknown:?}");
    // Spot-check single ids through the id field: exactly one hit each.
    for id in acked.iter().take(20) {
        assert_eq!(node.total(token, &format!("id:\"{id}\"")), 1, "id {id}");
    }
}

#[test]
fn sigkill_right_after_ack_loses_and_duplicates_nothing() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &[]);
    let token = node.creds.default.clone();

    let mut acked = HashSet::new();
    for b in 0..10 {
        let batch: Vec<Value> = (0..50)
            .map(|i| json!({"id": format!("a{b}-{i}"), "message": format!("acked before the kill {b} {i}"), "host": "h1"}))
            .collect();
        if b % 2 == 0 {
            node.publish_json(&token, &Value::Array(batch.clone()));
        } else {
            node.publish_ndjson(&token, &batch);
        }
        acked.extend(ids(&batch));
    }
    // The last batch's ack is the last thing that happens before the kill: nothing waits for
    // the index commit.
    node.sigkill();

    let (node, failures) = Node::start_with_retry(&dir, &[], 10);
    assert!(
        failures.is_empty(),
        "restart after SIGKILL needed retries: {failures:?}"
    );
    let token = node.creds.default.clone();
    check_exactly_once(&node, &token, &acked, &acked);

    // A client that retries the whole lot after the crash (it never saw some acks) must not
    // create duplicates: the ids are idempotency keys, also across a restart.
    let retry: Vec<Value> = acked
        .iter()
        .map(|id| json!({"id": id, "message": format!("retried {id}"), "host": "h2"}))
        .collect();
    for chunk in retry.chunks(100) {
        node.publish_ndjson(&token, chunk);
    }
    node.wait_total(&token, "host:h2", acked.len() as u64);
    assert_eq!(
        node.total(&token, "host:h1"),
        0,
        "old versions must be replaced"
    );
    check_exactly_once(&node, &token, &acked, &acked);

    // And once more after another kill, now with nothing recently published. The retries may
    // have been searchable only from the unindexed tail before the kill; a restarted node
    // makes what its indexes lack searchable from the log before it serves searches.
    node.sigkill();
    let node = Node::start(&dir, &[]);
    assert_eq!(
        node.total(&token, "host:h2"),
        acked.len() as u64,
        "the retries, at once after the restart"
    );
    assert_eq!(
        node.total(&token, "host:h1"),
        0,
        "old versions stay replaced"
    );
    check_exactly_once(&node, &token, &acked, &acked);
}

const KILLS: usize = 25;
const BATCH: usize = 20;

#[derive(Default)]
struct PublisherLog {
    /// Ids of acknowledged batches.
    acked: HashSet<String>,
    /// Every id ever sent (acked or not).
    sent: HashSet<String>,
    acked_batches: usize,
    /// Requests that failed at the transport (node killed or restarting).
    transport_errors: usize,
    /// Non-200 answers by status.
    statuses: BTreeMap<u16, usize>,
    /// Batches acked per node incarnation (index = generation).
    acks_per_generation: BTreeMap<usize, usize>,
}

#[test]
fn kill_loop_during_continuous_publishing() {
    let started = Instant::now();
    let mut rng = Rng::from_env_or_clock();
    let dir = TestDir::new();
    let node = Node::start(&dir, &[]);
    let token = node.creds.default.clone();

    // (base URL, generation) of the node currently running.
    let current = Arc::new(Mutex::new((node.base.clone(), 0usize)));
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(PublisherLog::default()));

    let publisher = {
        let (current, stop, log, token) =
            (current.clone(), stop.clone(), log.clone(), token.clone());
        std::thread::spawn(move || {
            let http = common::client(Duration::from_secs(10));
            let mut batch_no = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let batch: Vec<Value> = (0..BATCH)
                    .map(|i| json!({"id": format!("k{batch_no}-{i}"), "message": format!("kill loop batch {batch_no} event {i}")}))
                    .collect();
                let body = ndjson(&batch);
                log.lock().unwrap().sent.extend(ids(&batch));
                // Retry the same batch (same ids) until it is acknowledged, as a client that
                // lost its ack would: a batch committed before the kill must not duplicate.
                while !stop.load(Ordering::SeqCst) {
                    let (base, generation) = current.lock().unwrap().clone();
                    match post_events(
                        &http,
                        &base,
                        Some(&token),
                        Some("application/x-ndjson"),
                        body.clone(),
                    ) {
                        Ok(r) if r.status == 200 => {
                            let mut log = log.lock().unwrap();
                            log.acked.extend(ids(&batch));
                            log.acked_batches += 1;
                            *log.acks_per_generation.entry(generation).or_default() += 1;
                            break;
                        }
                        Ok(r) => {
                            *log.lock().unwrap().statuses.entry(r.status).or_default() += 1;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(_) => {
                            log.lock().unwrap().transport_errors += 1;
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
                batch_no += 1;
            }
        })
    };

    let mut node = Some(node);
    let mut start_failures = Vec::new();
    for generation in 1..=KILLS {
        // Let it publish for a random while, then SIGKILL it mid-stream.
        // Every fifth kill lands right after the ready line, while the indexes catch up.
        let up_for = if generation % 5 == 0 {
            0
        } else {
            rng.range(20, 600)
        };
        std::thread::sleep(Duration::from_millis(up_for));
        node.take().unwrap().sigkill();
        let (n, failures) = Node::start_with_retry(&dir, &[], 10);
        start_failures.extend(failures);
        *current.lock().unwrap() = (n.base.clone(), generation);
        node = Some(n);
    }
    let node = node.unwrap();
    // Let the publisher get a few acks from the last incarnation, then stop it.
    let progressed = poll_until(Duration::from_secs(20), || {
        let log = log.lock().unwrap();
        (log.acks_per_generation.get(&KILLS).copied().unwrap_or(0) >= 3).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    publisher.join().expect("publisher thread panicked");
    let log = Arc::try_unwrap(log).ok().unwrap().into_inner().unwrap();
    eprintln!(
        "kill loop: {KILLS} kills, {} batches acked ({} events), {} ids sent, {} transport errors, non-200 answers {:?}, acks per generation {:?}, {} start retries, {:?}",
        log.acked_batches,
        log.acked.len(),
        log.sent.len(),
        log.transport_errors,
        log.statuses,
        log.acks_per_generation,
        start_failures.len(),
        started.elapsed()
    );
    assert!(
        progressed.is_some(),
        "the publisher made no progress against the last node"
    );
    assert!(
        start_failures.is_empty(),
        "restarts after SIGKILL needed retries ({}): {start_failures:#?}",
        start_failures.len()
    );
    // 4xx answers would mean the node refused a valid batch (e.g. lost the tenant's token).
    let client_errors: Vec<_> = log
        .statuses
        .keys()
        .filter(|s| (400..500).contains(*s))
        .collect();
    assert!(
        client_errors.is_empty(),
        "valid batches refused: {:?}",
        log.statuses
    );
    let generations_with_acks = log.acks_per_generation.len();
    assert!(
        generations_with_acks > KILLS / 2,
        "too few incarnations got any publish acknowledged ({generations_with_acks}): the kills did not happen during publishing"
    );

    check_exactly_once(&node, &token, &log.acked, &log.sent);
}

#[test]
fn sigkill_during_first_start_leaves_usable_credentials() {
    // Kill the very first start at different moments of its bootstrap (writing credentials.json,
    // proposing the default tenant and the admin token); the next start must finish the job so
    // that the tokens in credentials.json work.
    let mut outcomes = Vec::new();
    for step in 0..16u64 {
        let dir = TestDir::new();
        let was_ready = Node::spawn_and_kill_after(&dir, Duration::from_millis(step * 6));
        let had_credentials = dir.data_dir().join("credentials.json").exists();
        outcomes.push((step * 6, had_credentials, was_ready));
        let (node, failures) = Node::start_with_retry(&dir, &[], 5);
        assert!(
            failures.is_empty(),
            "start after a crashed first start: {failures:?}"
        );
        let tenants = node.get("/v1/tenants", Some(&node.creds.admin));
        assert_eq!(
            tenants.status,
            200,
            "admin token after kill at {} ms: {tenants:?}",
            step * 6
        );
        assert_eq!(tenants.body["tenants"], json!(["default"]));
        let token = node.creds.default.clone();
        node.publish_json(
            &token,
            &json!({"id": "after-crashed-bootstrap", "message": "ok"}),
        );
        node.wait_total(&token, "*", 1);
    }
    eprintln!("(kill after ms, credentials.json existed, ready line printed): {outcomes:?}");
}
