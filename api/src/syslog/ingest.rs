//! From frames to committed events: parsing, tenant resolution, batching, publishing.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meniscus_actors::{Error as NodeError, Node};
use meniscus_event::publish::{is_valid_id, MAX_ID_BYTES};
use meniscus_event::syslog::{self, MeniscusSd};
use meniscus_event::{Event, Source};
use meniscus_storage::Principal;
use time::OffsetDateTime;

use super::{Shutdown, SyslogConfig, SyslogStats};

/// First wait before retrying a refused publish; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A boxed future that may move between threads.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a listener's events go: the [`Node`], or a stand-in that tests can slow down or make
/// refuse.
pub(crate) trait Sink: Send + Sync {
    /// See [`Node::publish`].
    fn publish<'a>(
        &'a self,
        tenant: &'a str,
        events: &'a [Event],
    ) -> BoxFuture<'a, Result<u64, NodeError>>;

    /// See [`Node::authenticate_linearizable`].
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Option<Principal>, NodeError>>;
}

impl Sink for Node {
    fn publish<'a>(
        &'a self,
        tenant: &'a str,
        events: &'a [Event],
    ) -> BoxFuture<'a, Result<u64, NodeError>> {
        Box::pin(Node::publish(self, tenant, events))
    }

    fn authenticate<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Option<Principal>, NodeError>> {
        Box::pin(Node::authenticate_linearizable(self, token))
    }
}

/// What one listener shares with its connections.
pub(crate) struct Ingest {
    pub node: Arc<dyn Sink>,
    pub config: SyslogConfig,
    pub stats: Arc<SyslogStats>,
    /// `syslog-tcp`, `syslog-udp`, `syslog-tls` or `syslog-relp`: the events' `source.transport`.
    pub transport: &'static str,
}

impl Ingest {
    /// The shared state of a new listener whose events go to `node`.
    pub fn new(node: Arc<dyn Sink>, config: SyslogConfig, transport: &'static str) -> Arc<Self> {
        Arc::new(Ingest {
            node,
            config,
            stats: Arc::new(SyslogStats::new(transport)),
            transport,
        })
    }

    /// Where the messages of a sender at `peer` come from, with the listener's bound tenant.
    pub fn origin<'a>(&'a self, peer: &'a str) -> Origin<'a> {
        Origin {
            peer,
            tenant: self.config.tenant.as_deref(),
        }
    }
}

/// Where a message comes from: the sender, and the tenant of messages that name none.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin<'a> {
    /// The sender's address, as stored in `source.peer`.
    pub peer: &'a str,
    /// The listener's bound tenant, or the one a TLS client certificate names.
    pub tenant: Option<&'a str>,
}

/// What [`Batch::add`] did with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Added {
    /// Queued for publishing in the batch's group number `group`; see [`Ingest::publish`].
    Queued { group: usize },
    /// Refused for its credentials (counted and logged): it will never be stored.
    Refused(String),
}

/// What became of one tenant's group of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Committed: safe to acknowledge.
    Stored,
    /// Refused for good (its tenant does not exist): retrying cannot help.
    Refused(String),
    /// Not committed: ingest refused it for longer than the patience allowed.
    Dropped,
}

/// How long a batch may keep retrying a publish that ingest refuses.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Patience {
    /// Until it succeeds; once shutdown is requested, for the configured grace period more.
    UntilShutdown,
    /// For this long, then its events are dropped (and counted).
    For(Duration),
}

/// Whose events a group holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The listener's bound tenant, or the one a client certificate names.
    Tenant(String),
    /// The tenant this token belongs to (which must be `claimed` when that is given). It is
    /// looked up when the batch is published, after the node has applied every change
    /// acknowledged anywhere in the cluster, so a revoked token stores nothing from then on.
    Token {
        token: String,
        claimed: Option<String>,
    },
}

/// One owner's events in a batch.
struct Group {
    owner: Owner,
    events: Vec<Event>,
}

/// Events read but not yet published, grouped by owner in arrival order.
#[derive(Default)]
pub(crate) struct Batch {
    groups: Vec<Group>,
    events: usize,
    bytes: usize,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    pub fn len(&self) -> usize {
        self.events
    }

    /// Whether the batch should be published before more is read.
    pub fn is_full(&self, config: &SyslogConfig) -> bool {
        self.events >= config.max_batch_events || self.bytes >= config.max_batch_bytes
    }

    fn clear(&mut self) {
        self.groups.clear();
        self.events = 0;
        self.bytes = 0;
    }

    /// Parses one message and adds it under its owner, or counts and logs its refusal. A token
    /// is checked when the batch is published.
    pub fn add(
        &mut self,
        ingest: &Ingest,
        data: &[u8],
        origin: Origin<'_>,
        now: OffsetDateTime,
    ) -> Added {
        let peer = origin.peer;
        let parsed = syslog::parse(data, ingest.config.format, now);
        ingest.stats.received(parsed.parse_error.is_some());
        let mut draft = parsed.into_draft();
        let mut credentials = syslog::take_meniscus_sd(&mut draft.structured_data);
        redact_tokens(&mut draft.message);
        if let Some(id) = credentials.as_mut().and_then(|sd| sd.id.take()) {
            if !is_valid_id(&id) {
                let reason = format!("the meniscus id param must be 1 to {MAX_ID_BYTES} bytes");
                ingest.stats.rejected(1, peer, &reason);
                return Added::Refused(reason);
            }
            draft.id = Some(id);
        }
        let owner = match owner_of(origin.tenant, credentials) {
            Ok(owner) => owner,
            Err(reason) => {
                ingest.stats.rejected(1, peer, reason);
                return Added::Refused(reason.to_owned());
            }
        };
        let source = Source {
            transport: ingest.transport.to_owned(),
            peer: Some(peer.to_owned()),
        };
        // A token's tenant is filled in once the token is checked.
        let tenant = match &owner {
            Owner::Tenant(t) => t.as_str(),
            Owner::Token { .. } => "",
        };
        let event = draft.into_event(tenant, now, source, || uuid::Uuid::now_v7().to_string());
        self.events += 1;
        self.bytes += data.len();
        let group = match self.groups.iter().position(|g| g.owner == owner) {
            Some(i) => i,
            None => {
                self.groups.push(Group {
                    owner,
                    events: Vec::new(),
                });
                self.groups.len() - 1
            }
        };
        self.groups[group].events.push(event);
        Added::Queued { group }
    }
}

impl Ingest {
    /// Publishes every group of `batch` and empties it; returns what became of each group, by
    /// the group numbers [`Batch::add`] gave. A refused publish is retried with backoff for as
    /// long as `patience` allows; this is where TCP back-pressure comes from.
    pub async fn publish(
        &self,
        batch: &mut Batch,
        shutdown: &mut Shutdown,
        patience: Patience,
    ) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(batch.groups.len());
        for group in &mut batch.groups {
            outcomes.push(self.publish_group(group, shutdown, patience).await);
        }
        batch.clear();
        outcomes
    }

    async fn publish_group(
        &self,
        group: &mut Group,
        shutdown: &mut Shutdown,
        patience: Patience,
    ) -> Outcome {
        let n = group.events.len();
        let peer = group.events[0]
            .source
            .peer
            .clone()
            .unwrap_or_else(|| "-".into());
        let mut backoff = FIRST_BACKOFF;
        let mut deadline = match patience {
            Patience::For(d) => Some(Instant::now() + d),
            Patience::UntilShutdown => None,
        };
        loop {
            if deadline.is_none() && shutdown.is_requested() {
                deadline = Some(Instant::now() + self.config.shutdown_grace);
            }
            let error = match self.tenant_of(group).await {
                Ok(Ok(tenant)) => match self.node.publish(&tenant, &group.events).await {
                    Ok(_) => {
                        self.stats.stored(n);
                        return Outcome::Stored;
                    }
                    Err(NodeError::UnknownTenant(t)) => {
                        let reason = format!("tenant {t:?} does not exist");
                        self.stats.rejected(n, &peer, &reason);
                        return Outcome::Refused(reason);
                    }
                    Err(e) => e,
                },
                Ok(Err(reason)) => {
                    self.stats.rejected(n, &peer, &reason);
                    return Outcome::Refused(reason.into_owned());
                }
                // The token could not be checked now (no leader): retried like a publish.
                Err(e) => e,
            };
            if deadline.is_some_and(|d| Instant::now() + backoff > d) {
                self.stats.dropped(n, &error.to_string());
                return Outcome::Dropped;
            }
            self.stats.retry(&error, backoff);
            if deadline.is_none() {
                // Shutdown cuts the wait short: from then on the grace period counts.
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.requested() => {}
                }
            } else {
                tokio::time::sleep(backoff).await;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

impl Ingest {
    /// The tenant of a group's events (set on them once a token is checked), why it has none,
    /// or `Err` when the token cannot be checked now.
    async fn tenant_of(
        &self,
        group: &mut Group,
    ) -> Result<Result<String, Cow<'static, str>>, NodeError> {
        let (token, claimed) = match &group.owner {
            Owner::Tenant(tenant) => return Ok(Ok(tenant.clone())),
            Owner::Token { token, claimed } => (token, claimed),
        };
        let principal = self.node.authenticate(token).await?;
        let tenant = match tenant_for(principal, claimed.as_deref()) {
            Ok(tenant) => tenant,
            Err(reason) => return Ok(Err(reason)),
        };
        for event in &mut group.events {
            event.tenant.clone_from(&tenant);
        }
        Ok(Ok(tenant))
    }
}

/// Who owns a message, or why nobody does.
///
/// Without credentials (no `meniscus` element, or one with only an `id`): the listener's bound
/// tenant. With them: whoever the token belongs to, checked at publish time by [`tenant_for`].
pub(crate) fn owner_of(
    bound: Option<&str>,
    credentials: Option<MeniscusSd>,
) -> Result<Owner, &'static str> {
    let credentials = credentials.filter(|c| c.tenant.is_some() || c.token.is_some());
    let Some(credentials) = credentials else {
        return bound
            .map(|t| Owner::Tenant(t.to_owned()))
            .ok_or("no meniscus token in the message and no tenant bound to the listener");
    };
    let Some(token) = credentials.token else {
        return Err("the meniscus structured-data element has no token param");
    };
    Ok(Owner::Token {
        token,
        claimed: credentials.tenant,
    })
}

/// The tenant a token's principal may publish to: its own, which must be `claimed` when given.
pub(crate) fn tenant_for(
    principal: Option<Principal>,
    claimed: Option<&str>,
) -> Result<String, Cow<'static, str>> {
    match principal {
        Some(Principal::Tenant(owner)) => match claimed {
            Some(claimed) if claimed != owner => Err(Cow::Owned(format!(
                "the token does not belong to tenant {claimed:?}"
            ))),
            _ => Ok(owner),
        },
        Some(Principal::Admin) => Err(Cow::Borrowed(
            "the admin token speaks for no tenant; use a tenant token",
        )),
        None => Err(Cow::Borrowed("invalid, revoked or expired token")),
    }
}

/// Replaces the value of every `token=` in a message that mentions `meniscus` (in any case):
/// the text of a line whose structured data did not parse must not leak its token, quoted
/// (`token="..."`, up to the closing quote) or not (up to a space or `]`).
pub(crate) fn redact_tokens(message: &mut String) {
    const KEY: &str = "token=";
    // ASCII lowercasing keeps every byte where it was, so positions carry over.
    let lower = message.to_ascii_lowercase();
    if !lower.contains("meniscus") || !lower.contains(KEY) {
        return;
    }
    let mut out = String::with_capacity(message.len());
    let mut copied = 0;
    while let Some(found) = lower[copied..].find(KEY) {
        let value_start = copied + found + KEY.len();
        out.push_str(&message[copied..value_start]);
        let rest = &message[value_start..];
        let end = match rest.strip_prefix('"') {
            Some(quoted) => {
                let mut escaped = false;
                let close = quoted
                    .char_indices()
                    .find(|&(_, c)| {
                        let closes = c == '"' && !escaped;
                        escaped = c == '\\' && !escaped;
                        closes
                    })
                    .map_or(quoted.len(), |(j, _)| j);
                out.push('"');
                1 + close
            }
            None => rest
                .find(|c: char| c.is_whitespace() || c == ']')
                .unwrap_or(rest.len()),
        };
        out.push_str("<redacted>");
        copied = value_start + end;
    }
    out.push_str(&message[copied..]);
    *message = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(tenant: Option<&str>, token: Option<&str>) -> Option<MeniscusSd> {
        Some(MeniscusSd {
            tenant: tenant.map(str::to_owned),
            token: token.map(str::to_owned),
            id: Some("an-idempotency-key".into()),
        })
    }

    /// "good" is acme's token, "root" the admin's; anything else is unknown.
    fn auth(token: &str) -> Option<Principal> {
        match token {
            "good" => Some(Principal::Tenant("acme".into())),
            "root" => Some(Principal::Admin),
            _ => None,
        }
    }

    /// What becomes of a message: its owner, then (for a token) the token's check.
    fn resolve_tenant(
        bound: Option<&str>,
        credentials: Option<MeniscusSd>,
    ) -> Result<String, Cow<'static, str>> {
        match owner_of(bound, credentials)? {
            Owner::Tenant(t) => Ok(t),
            Owner::Token { token, claimed } => tenant_for(auth(&token), claimed.as_deref()),
        }
    }

    /// Bound tenant, credentials, and the tenant or a piece of the refusal reason.
    type Case<'a> = (
        Option<&'a str>,
        Option<MeniscusSd>,
        Result<&'a str, &'a str>,
    );

    #[test]
    fn tenant_resolution_table() {
        let cases: &[Case] = &[
            (Some("default"), None, Ok("default")),
            (None, None, Err("no meniscus token")),
            (Some("default"), creds(None, Some("good")), Ok("acme")),
            (
                Some("default"),
                creds(Some("acme"), Some("good")),
                Ok("acme"),
            ),
            (None, creds(Some("acme"), Some("good")), Ok("acme")),
            (
                Some("default"),
                creds(Some("other"), Some("good")),
                Err("does not belong to tenant \"other\""),
            ),
            (
                Some("default"),
                creds(Some("acme"), Some("wrong")),
                Err("invalid, revoked or expired"),
            ),
            (
                Some("default"),
                creds(Some("acme"), None),
                Err("has no token"),
            ),
            (Some("default"), creds(None, None), Ok("default")),
            (None, creds(None, None), Err("no meniscus token")),
            (
                Some("default"),
                creds(None, Some("root")),
                Err("admin token"),
            ),
        ];
        for (bound, credentials, expected) in cases {
            let got = resolve_tenant(*bound, credentials.clone());
            match (expected, &got) {
                (Ok(t), Ok(g)) => assert_eq!(t, g),
                (Err(needle), Err(reason)) => {
                    assert!(reason.contains(needle), "{credentials:?}: {reason}")
                }
                _ => panic!("{bound:?} {credentials:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn tokens_in_unparsed_text_are_redacted() {
        let cases = [
            (
                r#"<13>1 - - - - [meniscus token="s3cret" tenant="a"] [x"#,
                r#"<13>1 - - - - [meniscus token="<redacted>" tenant="a"] [x"#,
            ),
            (
                r#"[meniscus@1 token="a\"b" x] [meniscus token="c"#,
                r#"[meniscus@1 token="<redacted>" x] [meniscus token="<redacted>"#,
            ),
            (
                r#"token="kept" with no element"#,
                r#"token="kept" with no element"#,
            ),
            (
                r#"<13>1 - - - - [Meniscus TOKEN="s3cret"] [MENISCUS@9 token=bare] x"#,
                r#"<13>1 - - - - [Meniscus TOKEN="<redacted>"] [MENISCUS@9 token=<redacted>] x"#,
            ),
            (
                "garbage meniscus token=s3cret and more",
                "garbage meniscus token=<redacted> and more",
            ),
            ("plain", "plain"),
        ];
        for (input, expected) in cases {
            let mut m = input.to_owned();
            redact_tokens(&mut m);
            assert_eq!(m, expected);
        }
    }
}
