//! Search the vocabulary publish accepts: `severity:error`, `severity:3` and `severity:ERR`
//! find events published with any of them, as `facility:4` finds `auth`. The index stores the
//! canonical keyword; a query's values for these fields are rewritten to it before parsing.

use std::borrow::Cow;

use meniscus_event::{Facility, Severity};

/// `text` with every `severity:` and `facility:` value that names a known one (an alias, a
/// code, any case) replaced by its keyword. Everything else, and values that name nothing
/// (`severity:*`, ranges, typos, which then simply match nothing), is left as it is.
pub(crate) fn canonical(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut copied = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let at_boundary = i == 0 || matches!(bytes[i - 1], b' ' | b'(' | b'+' | b'-' | b'\t');
        let field = ["severity:", "facility:"]
            .into_iter()
            .find(|f| at_boundary && text[i..].starts_with(f));
        let Some(field) = field else {
            i += 1;
            continue;
        };
        let start = i + field.len();
        let quoted = bytes.get(start) == Some(&b'"');
        let value_start = start + usize::from(quoted);
        let value_end = text[value_start..]
            .find(|c: char| {
                if quoted {
                    c == '"'
                } else {
                    c.is_whitespace() || c == ')'
                }
            })
            .map_or(text.len(), |n| value_start + n);
        let value = &text[value_start..value_end];
        let keyword = match field {
            "severity:" => value.parse::<Severity>().ok().map(Severity::keyword),
            _ => value.parse::<Facility>().ok().map(Facility::keyword),
        };
        if let Some(keyword) = keyword.filter(|k| *k != value) {
            out.push_str(&text[copied..value_start]);
            out.push_str(keyword);
            copied = value_end;
        }
        i = value_end.max(i + 1);
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_rewritten_to_their_keyword_and_nothing_else_changes() {
        for (query, expected) in [
            ("severity:error", "severity:err"),
            ("severity:3", "severity:err"),
            ("severity:ERR AND host:a", "severity:err AND host:a"),
            (
                "(severity:warn OR severity:4)",
                "(severity:warning OR severity:warning)",
            ),
            ("-severity:\"Error\" disk", "-severity:\"err\" disk"),
            ("facility:4", "facility:auth"),
            ("severity:err", "severity:err"),
            ("severity:loud", "severity:loud"),
            ("severity:*", "severity:*"),
            ("message:severity:3", "message:severity:3"),
            ("xseverity:3", "xseverity:3"),
            ("severity:", "severity:"),
            ("", ""),
        ] {
            assert_eq!(canonical(query), expected, "{query:?}");
        }
    }
}
