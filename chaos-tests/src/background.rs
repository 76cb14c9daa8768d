//! Work the runner does in the background while faults go on: creating a tenant, rotating a
//! token, searching every replica.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::Client;
use crate::workload::{Endpoints, TenantLoad, Tokens, Workload, WorkloadOptions};
use crate::Error;

/// The tenant created while faults go on, and the publisher writing to it from then on.
pub(crate) enum LateTenant {
    Created {
        tenant: TenantLoad,
        workload: Workload,
    },
    Failed(String),
}

/// The name of the tenant created during the faults.
pub(crate) const LATE_TENANT: &str = "created-during-faults";

impl LateTenant {
    /// Creates the tenant through any node, retrying for up to a minute. A retry answered 409
    /// means an earlier attempt was committed but its answer lost: a new token is issued then.
    pub(crate) fn create(
        client: &Client,
        nodes: &Endpoints,
        admin: &str,
        options: &WorkloadOptions,
    ) -> LateTenant {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        for attempt in 0.. {
            if Instant::now() > deadline {
                return LateTenant::Failed(format!("not acknowledged within 60 s: {last}"));
            }
            let url = &nodes.url(attempt);
            let created =
                client.post_json(url, "/v1/tenants", admin, &json!({"name": LATE_TENANT}));
            let created = match created {
                Err(Error::Status { status: 409, .. }) => client.post_json(
                    url,
                    &format!("/v1/tenants/{LATE_TENANT}/tokens"),
                    admin,
                    &json!({"grace_seconds": 0}),
                ),
                other => other,
            };
            match created.map(|body| body["token"].as_str().map(str::to_owned)) {
                Ok(Some(token)) => {
                    let tenant = TenantLoad {
                        name: LATE_TENANT.into(),
                        token,
                    };
                    let workload = Workload::start_with(
                        client,
                        nodes.clone(),
                        std::slice::from_ref(&tenant),
                        options,
                    );
                    return LateTenant::Created { tenant, workload };
                }
                Ok(None) => last = "an answer without a token".into(),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        unreachable!("the loop returns")
    }
}

/// How long a rotated-out token keeps working.
pub(crate) const ROTATION_GRACE: Duration = Duration::from_secs(2);

/// A token rotation that was acknowledged.
pub(crate) struct Rotated {
    pub(crate) tenant: String,
    pub(crate) old: String,
    pub(crate) new: String,
    /// When the rotation was acknowledged (the grace period started before).
    pub(crate) at: Instant,
}

/// A token rotation made while faults go on.
pub(crate) enum Rotation {
    Done(Rotated),
    Failed(String),
}

impl Rotation {
    /// Rotates `tenant`'s token through any node, retrying for up to a minute, and switches
    /// its publishers to the new token. (A retry after a lost answer rotates again: the token
    /// issued by the first attempt is then rotated out too, unseen.)
    pub(crate) fn run(
        client: &Client,
        nodes: &Endpoints,
        admin: &str,
        tenant: &TenantLoad,
        tokens: &Tokens,
    ) -> Rotation {
        let deadline = Instant::now() + Duration::from_secs(60);
        let path = format!("/v1/tenants/{}/tokens", tenant.name);
        let body = json!({"grace_seconds": ROTATION_GRACE.as_secs()});
        let mut last = String::new();
        for attempt in 0.. {
            if Instant::now() > deadline {
                return Rotation::Failed(format!("not acknowledged within 60 s: {last}"));
            }
            let url = &nodes.url(attempt);
            match client.post_json(url, &path, admin, &body) {
                Ok(answer) => match answer["token"].as_str() {
                    Some(token) => {
                        tokens.set(&tenant.name, token);
                        return Rotation::Done(Rotated {
                            tenant: tenant.name.clone(),
                            old: tenant.token.clone(),
                            new: token.to_owned(),
                            at: Instant::now(),
                        });
                    }
                    None => last = format!("an answer without a token: {answer}"),
                },
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        unreachable!("the loop returns")
    }
}

/// A thread searching each node's replica in turn while faults go on; counts answers.
pub(crate) struct Searcher {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: JoinHandle<()>,
}

impl Searcher {
    pub(crate) fn start(
        client: &Client,
        nodes: Endpoints,
        tenants: &[TenantLoad],
        tokens: Tokens,
    ) -> Searcher {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let names: Vec<String> = tenants.iter().map(|t| t.name.clone()).collect();
        let (client, flag, ok, bad) = (
            client.clone(),
            stop.clone(),
            answered.clone(),
            failed.clone(),
        );
        let thread = std::thread::spawn(move || {
            let mut i = 0usize;
            while !flag.load(Ordering::Relaxed) {
                let url = &nodes.url(i);
                let token = tokens.get(&names[i % names.len()]).unwrap_or_default();
                match client.total(url, &token, "chaos") {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => bad.fetch_add(1, Ordering::Relaxed),
                };
                i += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        Searcher {
            stop,
            answered,
            failed,
            thread,
        }
    }

    /// Stops; (answered, failed).
    pub(crate) fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        (
            self.answered.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}
