//! The rules of single field values, each written twice: as the check the server applies, and as
//! the pattern the OpenAPI document publishes for it. A property test holds each pair to the same
//! strings, so a client that validates against the document is never refused, and a value the
//! document rules out is never accepted.
//!
//! Values are kept as sent: nothing is trimmed. An empty string is the same as an absent field
//! (clients that fill forms send `""` for what they leave blank; the contract says so of
//! `s3Endpoint`), which is why every optional pattern admits `""`.

use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};

use crate::{Error, Result};

/// Free text (user names, passwords, bucket names, tokens of other services): at most
/// [`MAX_TEXT`] characters, none of them a control character.
pub const TEXT_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";
pub const MAX_TEXT: usize = 2048;

/// A proxy host: a name, an IPv4 address, or an IPv6 one in brackets.
pub const HOST_PATTERN: &str = r"^[A-Za-z0-9.:\[\]-]{0,253}$";

/// A port as a string: 1 to 65535, in plain decimal.
pub const PORT_PATTERN: &str =
    r"^(|[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$";

pub const PROXY_PROTOCOL_PATTERN: &str = r"^(|http|https|socks5)$";

/// A client-chosen TokenInstance: 8 to 256 visible ASCII characters.
pub const TOKEN_PATTERN: &str = r"^[!-~]{8,256}$";

/// An `http` or `https` URL (scheme in any case) with a host name whose last label starts with a
/// letter, or a dotted IPv4 address; optional `user:password@` and port; the rest visible ASCII.
pub const HTTP_URL_PATTERN: &str = concat!(
    r"^(|[Hh][Tt][Tt][Pp][Ss]?://",
    r"([A-Za-z0-9._~!$&'()*+,;=:%-]+@)?",
    r"(((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])",
    r"|([A-Za-z0-9_-]+\.)*[A-Za-z][A-Za-z0-9_-]*)",
    r"(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?",
    r"([/?#][!-~]*)?)$"
);

/// The schema of an optional string field following `pattern` (`null` is the same as absent).
fn optional_string(pattern: &str, max_length: Option<usize>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(pattern))
        .max_length(max_length)
}

/// Schemas of optional fields, for `#[schema(schema_with = ...)]`.
pub fn text_schema() -> Schema {
    optional_string(TEXT_PATTERN, Some(MAX_TEXT)).build().into()
}

pub fn http_url_schema() -> Schema {
    optional_string(HTTP_URL_PATTERN, Some(MAX_TEXT))
        .description(Some("An http or https URL; empty or absent means none"))
        .build()
        .into()
}

pub fn host_schema() -> Schema {
    optional_string(HOST_PATTERN, None).description(Some("A host name or address")).build().into()
}

pub fn proxy_protocol_schema() -> Schema {
    optional_string(PROXY_PROTOCOL_PATTERN, None)
        .description(Some("`http`, `https` or `socks5`"))
        .build()
        .into()
}

pub fn token_schema() -> Schema {
    optional_string(TOKEN_PATTERN, None)
        .description(Some("The TokenInstance to use; a random one is generated when absent"))
        .build()
        .into()
}

/// A port: the string the contract shows (`"1080"`) or a number.
pub fn port_schema() -> Schema {
    let text = ObjectBuilder::new().schema_type(Type::String).pattern(Some(PORT_PATTERN));
    let number = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).maximum(Some(65535));
    OneOfBuilder::new()
        .item(text)
        .item(number)
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some("A port from 1 to 65535, as a string (`\"1080\"`) or a number"))
        .build()
        .into()
}

/// `number` when it is an integer that fits an `i64` (JSON Schema counts `7.0` as an integer).
pub(crate) fn integral(number: f64) -> Option<i64> {
    // 2^63 is exactly representable; every integral f64 below it converts without loss.
    let in_range = (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&number);
    (number.fract() == 0.0 && in_range).then_some(number as i64)
}

/// An optional integer field: a JSON integer, or a float with no fraction (`7.0`); `null` is absent.
pub(crate) fn optional_integer<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<i64>, D::Error> {
    use serde::Deserialize;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    number
        .as_i64()
        .or_else(|| number.as_f64().and_then(integral))
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom("expected an integer"))
}

/// `Some(value)` for a non-empty text within [`TEXT_PATTERN`] and [`MAX_TEXT`], `None` for an absent
/// or empty one.
pub(crate) fn text(value: Option<String>, field: &'static str) -> Result<Option<String>> {
    match value {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if is_text(&v) => Ok(Some(v)),
        Some(_) => Err(Error::invalid_because(field, "at most 2048 characters, no control characters")),
    }
}

fn is_text(value: &str) -> bool {
    value.chars().count() <= MAX_TEXT && !value.chars().any(char::is_control)
}

pub(crate) fn is_host(value: &str) -> bool {
    value.len() <= 253
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']'))
}

/// A port as the plain decimal [`PORT_PATTERN`] describes, not empty.
pub(crate) fn port_text(value: &str) -> Option<u16> {
    let canonical = !value.starts_with('0') && (1..=5).contains(&value.len());
    if !canonical || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

pub(crate) fn is_token(value: &str) -> bool {
    (8..=256).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic())
}

/// Whether `value` (not empty) is an URL of [`HTTP_URL_PATTERN`].
pub(crate) fn is_http_url(value: &str) -> bool {
    let Some(rest) =
        strip_prefix_ignore_case(value, "https://").or_else(|| strip_prefix_ignore_case(value, "http://"))
    else {
        return false;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    if !tail.bytes().all(|b| b.is_ascii_graphic()) {
        return false;
    }
    let host_port = match authority.split_once('@') {
        Some((userinfo, host_port)) => {
            let userinfo_byte = |b: u8| b.is_ascii_alphanumeric() || b"._~!$&'()*+,;=:%-".contains(&b);
            if userinfo.is_empty() || !userinfo.bytes().all(userinfo_byte) {
                return false;
            }
            host_port
        }
        None => authority,
    };
    let (host, port) = match host_port.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (host_port, None),
    };
    (is_ipv4(host) || is_domain(host)) && port.is_none_or(is_url_port)
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &value[prefix.len()..])
}

/// Four decimal octets without leading zeros.
fn is_ipv4(host: &str) -> bool {
    let octets: Vec<&str> = host.split('.').collect();
    octets.len() == 4
        && octets.iter().all(|octet| {
            let digits = !octet.is_empty() && octet.len() <= 3 && octet.bytes().all(|b| b.is_ascii_digit());
            digits
                && (octet.len() == 1 || !octet.starts_with('0'))
                && octet.parse::<u16>().is_ok_and(|n| n <= 255)
        })
}

/// Labels of letters, digits, `-` and `_`, the last one starting with a letter (so that no URL
/// parser reads it as an IPv4 number).
fn is_domain(host: &str) -> bool {
    let label = |label: &str| {
        !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    };
    let mut labels = host.split('.').rev();
    let last = labels.next().unwrap_or_default();
    label(last) && last.as_bytes()[0].is_ascii_alphabetic() && labels.all(label)
}

/// 1 to 4 digits, or 5 of at most 65535 (and not starting with 0).
fn is_url_port(port: &str) -> bool {
    let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    digits
        && (port.len() <= 4
            || (port.len() == 5 && !port.starts_with('0') && port.parse::<u32>().is_ok_and(|n| n <= 65535)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use regex::Regex;

    use super::*;

    fn text_check(value: &str) -> bool {
        value.is_empty() || is_text(value)
    }

    fn port_check(value: &str) -> bool {
        value.is_empty() || port_text(value).is_some()
    }

    fn url_check(value: &str) -> bool {
        value.is_empty() || is_http_url(value)
    }

    fn host_check(value: &str) -> bool {
        is_host(value)
    }

    fn protocol_check(value: &str) -> bool {
        matches!(value, "" | "http" | "https" | "socks5")
    }

    /// A pattern and the check that implements it.
    type Rule = (&'static str, fn(&str) -> bool);

    /// Every rule.
    fn rules() -> Vec<Rule> {
        vec![
            (TEXT_PATTERN, text_check),
            (HOST_PATTERN, host_check),
            (PORT_PATTERN, port_check),
            (PROXY_PROTOCOL_PATTERN, protocol_check),
            (TOKEN_PATTERN, is_token),
            (HTTP_URL_PATTERN, url_check),
            (crate::domain::InstanceName::PATTERN, |v| crate::domain::InstanceName::parse(v).is_ok()),
        ]
    }

    fn regex(pattern: &str) -> Regex {
        static COMPILED: std::sync::Mutex<Vec<(String, Regex)>> = std::sync::Mutex::new(Vec::new());
        let mut compiled = COMPILED.lock().unwrap();
        if let Some((_, regex)) = compiled.iter().find(|(p, _)| p == pattern) {
            return regex.clone();
        }
        let regex = Regex::new(pattern).expect("a pattern");
        compiled.push((pattern.to_owned(), regex.clone()));
        regex
    }

    /// The rule's check and pattern agree on `value` (the text rule's length limit lives beside its
    /// pattern, as `maxLength`).
    fn agree(pattern: &str, check: fn(&str) -> bool, value: &str) -> std::result::Result<(), TestCaseError> {
        let mut documented = regex(pattern).is_match(value);
        if pattern == TEXT_PATTERN {
            documented &= value.chars().count() <= MAX_TEXT;
        }
        prop_assert_eq!(check(value), documented, "{} on {:?}", pattern, value);
        Ok(())
    }

    #[test]
    fn the_checks_accept_what_the_patterns_describe() {
        let samples = [
            ("http://a", true),
            ("HTTPS://user:pa%20ss@hooks.example.com:8443/x?y=1#z", true),
            ("http://10.0.0.1:0/", true),
            ("http://localhost", true),
            ("http://1.2.3.256", false),
            ("http://1.2.3.4a", false),
            ("http://0x1f", false),
            ("http://a:65536", false),
            ("http://a:01234", false),
            ("ftp://a", false),
            ("http://", false),
            ("http://a b", false),
            ("http://a/ b", false),
            ("http://[::1]", false),
        ];
        for (url, ok) in samples {
            assert_eq!(is_http_url(url), ok, "{url}");
            agree(HTTP_URL_PATTERN, url_check, url).unwrap();
            if ok {
                let parsed = url::Url::parse(url).expect(url);
                assert!(parsed.host_str().is_some(), "{url}");
            }
        }
        for (port, ok) in [("1", true), ("65535", true), ("080", false), ("65536", false), ("+1", false)] {
            assert_eq!(port_text(port).is_some(), ok, "{port}");
        }
    }

    fn run(
        cases: u32,
        strategy: impl Strategy<Value = String>,
        test: impl Fn(String) -> std::result::Result<(), TestCaseError>,
    ) {
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases));
        if let Err(failure) = runner.run(&strategy, test) {
            panic!("{failure}");
        }
    }

    #[test]
    fn strings_a_pattern_generates_pass_its_check() {
        for (pattern, check) in rules() {
            // proptest generates from a pattern without anchors, which it does not support.
            let unanchored = &pattern[1..pattern.len() - 1];
            let strategy =
                proptest::string::string_regex(unanchored).expect("a pattern proptest generates from");
            run(500, strategy, |value| {
                agree(pattern, check, &value)?;
                // What the URL pattern allows, a URL parser takes, with a host.
                if pattern == HTTP_URL_PATTERN && !value.is_empty() {
                    let parsed = url::Url::parse(&value);
                    prop_assert!(parsed.is_ok_and(|u| u.host_str().is_some()), "{}", value);
                }
                Ok(())
            });
        }
    }

    #[test]
    fn near_misses_get_the_same_answer_from_check_and_pattern() {
        let near = "(|[Hh][Tt][Tt][Pp][Ss]?://)[a-zA-Z0-9.:@/?#%_ \\[\\]\u{0}\u{7f}\u{85}é+-]{0,40}";
        for (pattern, check) in rules() {
            run(2000, proptest::string::string_regex(near).expect("a pattern"), |value| {
                agree(pattern, check, &value)
            });
        }
    }
}
