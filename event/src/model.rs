use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Structured data as syslog carries it: SD-ID -> param name -> value.
pub type StructuredData = BTreeMap<String, BTreeMap<String, String>>;

/// One event: a log line, a usage record, an API trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The publisher's idempotency key, or an id generated at ingest.
    pub id: String,
    /// The tenant that owns this event.
    pub tenant: String,
    /// When a Meniscus listener received it.
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// When it happened, as the sender says (defaults to `received_at`).
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// The originating host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The application or syslog tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The process id (syslog PROCID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub procid: Option<String>,
    /// The message type (syslog MSGID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msgid: Option<String>,
    /// Syslog facility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<Facility>,
    /// Syslog severity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Free text.
    #[serde(default)]
    pub message: String,
    /// Syslog structured data.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub structured_data: StructuredData,
    /// Normalized fields: a free JSON object.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// How the event reached Meniscus.
    pub source: Source,
    /// Whether `id` is the publisher's idempotency key (then a retry replaces, never duplicates)
    /// rather than one generated at ingest.
    #[serde(skip)]
    pub id_from_publisher: bool,
}

/// Where an event came in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Source {
    /// The transport: `http`, `syslog-udp`, `syslog-tcp`, ...
    pub transport: String,
    /// The peer address, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
}

macro_rules! keyword_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $code:literal => $kw:literal),+ $(,)? }
     aliases { $($alias:literal => $aliased:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[allow(missing_docs)]
        pub enum $name { $($variant = $code),+ }

        impl $name {
            /// Every value, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The numeric code used on the wire.
            pub fn code(self) -> u8 { self as u8 }

            /// The value for a numeric code.
            pub fn from_code(code: u8) -> Option<Self> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }

            /// The syslog keyword.
            pub fn keyword(self) -> &'static str {
                match self { $($name::$variant => $kw),+ }
            }
        }

        /// A keyword in any case, an alias rsyslog and others accept (`error` for `err`,
        /// `warn` for `warning`, ...), or a numeric code: what publishers send and searches
        /// name.
        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let lower = s.trim().to_ascii_lowercase();
                match lower.as_str() {
                    $($kw => return Ok($name::$variant),)+
                    $($alias => return Ok($name::$aliased),)*
                    _ => {}
                }
                if let Some(known) = lower.parse::<u8>().ok().and_then($name::from_code) {
                    return Ok(known);
                }
                Err(format!(
                    "unknown {} {s:?}; expected one of: {} (or a code)",
                    stringify!($name).to_lowercase(),
                    [$($kw),+].join(", ")
                ))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.keyword()) }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.keyword())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

keyword_enum!(
    /// Syslog severity (RFC 5424 section 6.2.1), most severe first.
    Severity {
        Emerg = 0 => "emerg",
        Alert = 1 => "alert",
        Crit = 2 => "crit",
        Err = 3 => "err",
        Warning = 4 => "warning",
        Notice = 5 => "notice",
        Info = 6 => "info",
        Debug = 7 => "debug",
    }
    aliases {
        "panic" => Emerg,
        "emergency" => Emerg,
        "critical" => Crit,
        "error" => Err,
        "warn" => Warning,
        "informational" => Info,
    }
);

keyword_enum!(
    /// Syslog facility (RFC 5424 section 6.2.1), with the keywords rsyslog uses.
    Facility {
        Kern = 0 => "kern",
        User = 1 => "user",
        Mail = 2 => "mail",
        Daemon = 3 => "daemon",
        Auth = 4 => "auth",
        Syslog = 5 => "syslog",
        Lpr = 6 => "lpr",
        News = 7 => "news",
        Uucp = 8 => "uucp",
        Cron = 9 => "cron",
        Authpriv = 10 => "authpriv",
        Ftp = 11 => "ftp",
        Ntp = 12 => "ntp",
        Security = 13 => "security",
        Console = 14 => "console",
        SolarisCron = 15 => "solaris-cron",
        Local0 = 16 => "local0",
        Local1 = 17 => "local1",
        Local2 = 18 => "local2",
        Local3 = 19 => "local3",
        Local4 = 20 => "local4",
        Local5 = 21 => "local5",
        Local6 = 22 => "local6",
        Local7 = 23 => "local7",
    }
    aliases {}
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_round_trip_through_codes_and_strings() {
        for s in Severity::ALL {
            assert_eq!(Severity::from_code(s.code()), Some(*s));
            assert_eq!(s.keyword().parse::<Severity>(), Ok(*s));
        }
        for f in Facility::ALL {
            assert_eq!(Facility::from_code(f.code()), Some(*f));
            assert_eq!(f.keyword().parse::<Facility>(), Ok(*f));
        }
        assert_eq!(Facility::ALL.len(), 24);
        assert_eq!(Severity::from_code(8), None);
    }

    #[test]
    fn aliases_cases_and_codes_name_the_same_values() {
        for (text, severity) in [
            ("error", Severity::Err),
            ("ERR", Severity::Err),
            ("3", Severity::Err),
            ("Warn", Severity::Warning),
            ("panic", Severity::Emerg),
            (" info ", Severity::Info),
        ] {
            assert_eq!(text.parse::<Severity>(), Ok(severity), "{text:?}");
        }
        assert_eq!("LOCAL7".parse::<Facility>(), Ok(Facility::Local7));
        assert_eq!("4".parse::<Facility>(), Ok(Facility::Auth));
        assert!("8".parse::<Severity>().is_err());
        assert!("24".parse::<Facility>().is_err());
    }

    #[test]
    fn unknown_keyword_lists_the_valid_ones() {
        let err = "fatal".parse::<Severity>().unwrap_err();
        assert!(err.contains("emerg, alert"), "{err}");
    }
}
