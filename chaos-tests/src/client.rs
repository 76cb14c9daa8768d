//! The HTTP calls the harness makes, as a user's client would.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::blocking::Client as Http;
use serde_json::Value;

use crate::{Error, Result};

/// A blocking HTTP client with short timeouts: a paused node must not stall the harness.
#[derive(Clone)]
pub struct Client {
    http: Http,
}

/// What became of one publish request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// 200: committed; the Raft index.
    Acked(u64),
    /// Anything else: not acknowledged (the events may or may not be stored).
    Failed(String),
}

impl Client {
    /// A client whose requests give up after 5 s.
    pub fn new() -> Result<Client> {
        Ok(Client {
            http: Http::builder()
                .timeout(Duration::from_secs(5))
                .connect_timeout(Duration::from_secs(1))
                .build()?,
        })
    }

    /// GET `path` with a bearer token; the JSON body of a 200.
    pub fn get_json(&self, base: &str, path: &str, token: &str) -> Result<Value> {
        let response = self
            .http
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()?;
        json_of(response)
    }

    /// POST a JSON body with a bearer token; the JSON body of a 2xx.
    pub fn post_json(&self, base: &str, path: &str, token: &str, body: &Value) -> Result<Value> {
        let response = self
            .http
            .post(format!("{base}{path}"))
            .bearer_auth(token)
            .json(body)
            .send()?;
        json_of(response)
    }

    /// DELETE `path` with a bearer token; the JSON body of a 2xx.
    pub fn delete_json(&self, base: &str, path: &str, token: &str) -> Result<Value> {
        let response = self
            .http
            .delete(format!("{base}{path}"))
            .bearer_auth(token)
            .send()?;
        json_of(response)
    }

    /// Publishes `events` (a JSON array) to node `base`.
    pub fn publish(&self, base: &str, token: &str, events: &Value) -> Published {
        match self.post_json(base, "/v1/events", token, events) {
            Ok(body) => match body["commit_index"].as_u64() {
                Some(index) => Published::Acked(index),
                None => Published::Failed(format!("200 without commit_index: {body}")),
            },
            Err(e) => Published::Failed(e.to_string()),
        }
    }

    /// How many events of the tenant match `query` on node `base`'s own replica.
    pub fn local_total(&self, base: &str, token: &str, query: &str) -> Result<u64> {
        self.search_total(
            base,
            token,
            &[("q", query), ("limit", "1"), ("read", "local")],
        )
    }

    /// How many events of the tenant match `query`, asking node `base` (which has a node
    /// holding the tenant's shard answer, if it holds none).
    pub fn total(&self, base: &str, token: &str, query: &str) -> Result<u64> {
        self.search_total(base, token, &[("q", query), ("limit", "1")])
    }

    fn search_total(&self, base: &str, token: &str, params: &[(&str, &str)]) -> Result<u64> {
        let response = self
            .http
            .get(format!("{base}/v1/search"))
            .bearer_auth(token)
            .query(params)
            .send()?;
        let body = json_of(response)?;
        body["total"]
            .as_u64()
            .ok_or_else(|| Error::Unexpected(format!("search answered {body}")))
    }

    /// Every id in the tenant's events on node `base`'s own replica, with how often it occurs.
    pub fn local_ids(&self, base: &str, token: &str) -> Result<HashMap<String, u32>> {
        let mut ids = HashMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![
                ("q", "*".to_owned()),
                ("limit", "10000".to_owned()),
                ("read", "local".to_owned()),
            ];
            if let Some(c) = &cursor {
                query.push(("cursor", c.clone()));
            }
            let response = self
                .http
                .get(format!("{base}/v1/search"))
                .bearer_auth(token)
                .query(&query)
                .timeout(Duration::from_secs(60))
                .send()?;
            let body = json_of(response)?;
            let hits = body["events"].as_array().cloned().unwrap_or_default();
            for hit in &hits {
                let id = hit["id"].as_str().unwrap_or_default().to_owned();
                *ids.entry(id).or_insert(0) += 1;
            }
            match body["next"].as_str() {
                Some(next) if !hits.is_empty() => cursor = Some(next.to_owned()),
                _ => return Ok(ids),
            }
        }
    }
}

fn json_of(response: reqwest::blocking::Response) -> Result<Value> {
    let status = response.status();
    let text = response.text()?;
    if !status.is_success() {
        return Err(Error::Status {
            status: status.as_u16(),
            body: text,
        });
    }
    serde_json::from_str(&text).map_err(|e| Error::Unexpected(format!("{e}: {text}")))
}
