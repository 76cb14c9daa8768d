//! Limits on a search query's shape, checked on its text before any parser sees it.
//!
//! tantivy's query parser recurses once per level of parentheses, and a few thousand levels
//! overflow a worker thread's stack (which aborts the whole process); a long query of many
//! terms costs the index in proportion. A query past these limits is refused as invalid:
//! - at most [`MAX_QUERY_BYTES`] bytes;
//! - at most [`MAX_QUERY_DEPTH`] levels of nested parentheses;
//! - at most [`MAX_QUERY_TERMS`] terms (as Elasticsearch's `max_clause_count` bounds clauses).

use crate::{Error, Result};

/// Longest query text, in bytes.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;
/// Deepest nesting of parentheses.
pub const MAX_QUERY_DEPTH: usize = 32;
/// Most terms (words outside quotes, and quoted phrases) in one query.
pub const MAX_QUERY_TERMS: usize = 1024;

/// Refuses a query past the limits, saying which.
pub fn check(text: &str) -> Result<()> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(Error::InvalidQuery(format!(
            "the query is {} bytes long; the limit is {MAX_QUERY_BYTES}",
            text.len()
        )));
    }
    let (mut depth, mut deepest, mut terms) = (0usize, 0usize, 0usize);
    let (mut quoted, mut escaped, mut in_term) = (false, false, false);
    for byte in text.bytes() {
        if escaped {
            escaped = false;
            continue;
        }
        match byte {
            b'\\' => escaped = true,
            b'"' => {
                if !quoted {
                    terms += 1;
                }
                quoted = !quoted;
                in_term = false;
            }
            _ if quoted => {}
            b'(' => {
                depth += 1;
                deepest = deepest.max(depth);
                in_term = false;
            }
            b')' => {
                depth = depth.saturating_sub(1);
                in_term = false;
            }
            b' ' | b'\t' | b'\n' | b'\r' => in_term = false,
            _ if !in_term => {
                in_term = true;
                terms += 1;
            }
            _ => {}
        }
        if deepest > MAX_QUERY_DEPTH {
            return Err(Error::InvalidQuery(format!(
                "the query nests parentheses more than {MAX_QUERY_DEPTH} deep"
            )));
        }
    }
    if terms > MAX_QUERY_TERMS {
        return Err(Error::InvalidQuery(format!(
            "the query has {terms} terms; the limit is {MAX_QUERY_TERMS}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}a{}", "(".repeat(levels), ")".repeat(levels))
    }

    #[test]
    fn queries_within_the_limits_pass() {
        for ok in [
            "",
            "*",
            "severity:err AND (host:web-1 OR host:web-2)",
            r#"message:"a (quoted ((( paren" AND b"#,
            r"a\(\(\(\( b",
            &nested(MAX_QUERY_DEPTH),
            &vec!["w"; MAX_QUERY_TERMS].join(" "),
        ] {
            check(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
    }

    #[test]
    fn deep_long_or_wide_queries_are_refused_with_the_limit_named() {
        for (bad, needle) in [
            (nested(MAX_QUERY_DEPTH + 1), "nests parentheses"),
            (nested(3_000), "nests parentheses"),
            (nested(100_000), "bytes long"),
            (vec!["w"; MAX_QUERY_TERMS + 1].join(" "), "terms"),
            ("x".repeat(MAX_QUERY_BYTES + 1), "bytes long"),
        ] {
            let message = check(&bad).unwrap_err().to_string();
            assert!(message.contains(needle), "{message}");
        }
    }
}
