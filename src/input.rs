//! What a request may hold, in one place (the HTTP layer applies it to every body):
//! - dates `YYYY-MM-DD` and RFC 3339 date-times `YYYY-MM-DDTHH:MM:SS[.f](Z|±HH:MM)`, from
//!   2000-01-01 to 2100-12-31 (an instant's UTC date), nothing looser;
//! - text: no control character anywhere (Unicode category Cc, U+0000–U+001F and
//!   U+007F–U+009F, line breaks and tabs included), at most the field's `maxLength` in the
//!   contract, counted in characters as sent; a string without one ([`TEXT_MAX`]);
//! - the body's shape: [`check`] walks a JSON value against the contract's schema of its
//!   request type and names every missing, unknown or mistyped field, every text too long
//!   and every value outside its enum or range, at once, each by its JSON path
//!   (`address.postcode`, `postings[1].side`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::error::FieldError;

/// Years of the dates and instants a request may carry.
pub const YEARS: std::ops::RangeInclusive<i32> = 2000..=2100;
/// Catalog codes (offers, services) and identifiers (SIREN, SIRET, VAT number).
pub const CODE_MAX: usize = 64;
/// Names and references.
pub const NAME_MAX: usize = 200;
/// Descriptions, and any string whose field sets no other bound.
pub const TEXT_MAX: usize = 500;

const RANGE: &str = "from 2000-01-01 to 2100-12-31";

fn digits(s: &[u8]) -> bool {
    s.iter().all(u8::is_ascii_digit)
}

/// A full date `YYYY-MM-DD` (zero-padded) within [`YEARS`].
pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    let b = s.as_bytes();
    let shaped = b.len() == 10
        && digits(&b[..4])
        && b[4] == b'-'
        && digits(&b[5..7])
        && b[7] == b'-'
        && digits(&b[8..]);
    let date = shaped
        .then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| format!("a date YYYY-MM-DD such as 2026-12-01, {RANGE}"))?;
    if YEARS.contains(&date.year()) {
        Ok(date)
    } else {
        Err(format!("dates go {RANGE}"))
    }
}

/// An RFC 3339 date-time `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` whose UTC date is
/// within [`YEARS`].
pub fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    let invalid = || format!("an RFC 3339 date-time such as 2026-11-20T09:30:00+01:00, {RANGE}");
    let b = s.as_bytes();
    let mut shaped = b.len() >= 20
        && digits(&b[..4])
        && b[4] == b'-'
        && digits(&b[5..7])
        && b[7] == b'-'
        && digits(&b[8..10])
        && matches!(b[10], b'T' | b't')
        && digits(&b[11..13])
        && b[13] == b':'
        && digits(&b[14..16])
        && b[16] == b':'
        && digits(&b[17..19]);
    if shaped {
        let mut rest = &b[19..];
        if let Some(fraction) = rest.strip_prefix(b".") {
            let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
            shaped = (1..=9).contains(&n);
            rest = &fraction[n..];
        }
        shaped &= match rest {
            [b'Z' | b'z'] => true,
            [b'+' | b'-', h1, h2, b':', m1, m2] => digits(&[*h1, *h2, *m1, *m2]),
            _ => false,
        };
    }
    let at = shaped
        .then(|| DateTime::parse_from_rfc3339(s).ok())
        .flatten()
        .ok_or_else(invalid)?
        .with_timezone(&Utc);
    if YEARS.contains(&at.year()) {
        Ok(at)
    } else {
        Err(format!("instants go {RANGE} (UTC)"))
    }
}

/// `#[serde(deserialize_with = "crate::input::date")]`: a date as [`parse_date`] reads it.
pub fn date<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
    parse_date(&String::deserialize(d)?).map_err(de::Error::custom)
}

/// [`date`] for an optional field (with `#[serde(default)]`): `null` is none.
pub fn opt_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| parse_date(&s).map_err(de::Error::custom))
        .transpose()
}

/// `#[serde(deserialize_with = "crate::input::instant")]`: an instant as
/// [`parse_instant`] reads it.
pub fn instant<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    parse_instant(&String::deserialize(d)?).map_err(de::Error::custom)
}

/// [`instant`] for an optional field (with `#[serde(default)]`): `null` is none.
pub fn opt_instant<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| parse_instant(&s).map_err(de::Error::custom))
        .transpose()
}

const CONTROL: &str = "control characters (such as NUL, BEL, ESC or a line break) are not allowed";

/// Refuses a control character, or more than `max` characters.
pub fn check_text(s: &str, max: usize) -> Result<(), String> {
    if s.chars().any(char::is_control) {
        Err(CONTROL.into())
    } else if s.chars().count() > max {
        Err(format!("at most {max} characters"))
    } else {
        Ok(())
    }
}

/// A JSON value as [`serde_json::Value`] reads it, except that an object naming a field
/// twice is refused (which value would count is a guess that differs between parsers).
pub struct StrictValue(pub Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

/// Fails where the second value of a duplicated field starts, so that the error's path
/// names that field.
struct Duplicate(String);

impl<'de> DeserializeSeed<'de> for Duplicate {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, _: D) -> Result<(), D::Error> {
        Err(de::Error::custom(format!("duplicate field `{}`", self.0)))
    }
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        StrictValue::deserialize(d).map(|v| v.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                map.next_value_seed(Duplicate(key.clone()))?;
            }
            let StrictValue(v) = map.next_value()?;
            object.insert(key, v);
        }
        Ok(Value::Object(object))
    }
}

/// The contract's schemas by name, as `openapi/openapi.json` holds them.
fn components() -> &'static serde_json::Map<String, Value> {
    static COMPONENTS: OnceLock<serde_json::Map<String, Value>> = OnceLock::new();
    COMPONENTS.get_or_init(|| {
        let schemas: BTreeMap<_, _> = crate::openapi::document()
            .components
            .iter()
            .flat_map(|c| c.schemas.iter())
            .collect();
        match serde_json::to_value(schemas) {
            Ok(Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        }
    })
}

/// Whether the contract has a schema named `name` (every request type must).
pub fn has_schema(name: &str) -> bool {
    components().contains_key(name)
}

/// Every way `value` breaks the contract's schema `name` (a component of the contract),
/// each named by its JSON path; the root is `body`. An unknown `name` checks only text.
pub fn check(name: &str, value: &Value) -> Vec<FieldError> {
    let mut walk = Walk { errors: Vec::new() };
    walk.value(value, components().get(name), &mut String::new(), 0);
    walk.errors
}

struct Walk {
    errors: Vec<FieldError>,
}

/// Deeper than any request type: a schema that referred to itself stops here.
const MAX_DEPTH: usize = 32;

fn field(path: &str) -> String {
    if path.is_empty() {
        "body".into()
    } else {
        path.into()
    }
}

fn type_name(t: &str) -> &str {
    match t {
        "object" => "an object",
        "array" => "an array",
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "true or false",
        "null" => "null",
        other => other,
    }
}

fn has_type(value: &Value, t: &str) -> bool {
    match t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn quoted(values: &[Value]) -> String {
    let names: Vec<String> = values
        .iter()
        .map(|v| match v {
            Value::String(s) => format!("`{s}`"),
            other => other.to_string(),
        })
        .collect();
    names.join(", ")
}

impl Walk {
    fn push(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field(path), message));
    }

    fn value(&mut self, value: &Value, schema: Option<&Value>, path: &mut String, depth: usize) {
        let Some(schema) = schema.filter(|_| depth < MAX_DEPTH) else {
            return self.free_form(value, path);
        };
        if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
            let name = target.trim_start_matches("#/components/schemas/");
            return self.value(value, components().get(name), path, depth + 1);
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for part in all {
                self.value(value, Some(part), path, depth + 1);
            }
            return;
        }
        if let Some(one) = schema
            .get("oneOf")
            .or_else(|| schema.get("anyOf"))
            .and_then(Value::as_array)
        {
            let is_null = |s: &&Value| s.get("type").and_then(Value::as_str) == Some("null");
            if value.is_null() && one.iter().any(|s| is_null(&s)) {
                return;
            }
            let rest: Vec<&Value> = one.iter().filter(|s| !is_null(s)).collect();
            if let [only] = rest.as_slice() {
                return self.value(value, Some(only), path, depth + 1);
            }
            // a tagged union: its variants share a type, and serde chooses the variant and
            // names what is wrong in it
            let types: Vec<&str> = rest
                .iter()
                .filter_map(|s| s.get("type").and_then(Value::as_str))
                .collect();
            if let Some(t) = types.first().filter(|t| types.iter().all(|u| u == *t)) {
                if !value.is_null() && !has_type(value, t) {
                    return self.push(path, format!("expected {}", type_name(t)));
                }
            }
            return self.free_form(value, path);
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !types.is_empty() && !types.iter().any(|t| has_type(value, t)) {
            let expected = match schema.get("enum").and_then(Value::as_array) {
                Some(values) => format!("one of {}", quoted(values)),
                None => {
                    let names: Vec<&str> = types.iter().map(|t| type_name(t)).collect();
                    names.join(" or ")
                }
            };
            return self.push(path, format!("expected {expected}"));
        }
        match value {
            Value::Object(map) => self.object(map, schema, path, depth),
            Value::Array(items) => {
                let item = schema.get("items");
                for (i, v) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    self.value(v, item, path, depth + 1);
                    path.truncate(len);
                }
            }
            Value::String(s) => self.string(s, schema, path),
            Value::Number(n) => self.number(n, schema, path),
            Value::Bool(_) | Value::Null => {}
        }
    }

    fn object(
        &mut self,
        map: &serde_json::Map<String, Value>,
        schema: &Value,
        path: &mut String,
        depth: usize,
    ) {
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !map.contains_key(name) {
                self.push(&join(path, name), "required");
            }
        }
        for (key, v) in map {
            let len = path.len();
            path.push_str(&join_suffix(len, key));
            if let Err(e) = check_text(key, TEXT_MAX) {
                self.push(path, format!("field name: {e}"));
            } else if let Some(property) = properties.and_then(|p| p.get(key)) {
                self.value(v, Some(property), path, depth + 1);
            } else if additional == Some(&Value::Bool(false)) {
                let known: Vec<Value> = properties
                    .map(|p| p.keys().cloned().map(Value::String).collect())
                    .unwrap_or_default();
                self.push(
                    path,
                    format!("unknown field `{key}`, expected one of {}", quoted(&known)),
                );
            } else {
                let schema = additional.filter(|a| a.is_object());
                self.value(v, schema, path, depth + 1);
            }
            path.truncate(len);
        }
    }

    fn string(&mut self, s: &str, schema: &Value, path: &str) {
        let max = schema
            .get("maxLength")
            .and_then(Value::as_u64)
            .map_or(TEXT_MAX, |m| m as usize);
        if let Err(e) = check_text(s, max) {
            return self.push(path, e);
        }
        let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0);
        if (s.chars().count() as u64) < min {
            return self.push(path, format!("at least {min} character(s)"));
        }
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            if !values.iter().any(|v| v.as_str() == Some(s)) {
                return self.push(path, format!("expected one of {}", quoted(values)));
            }
        }
        let checked = match schema.get("format").and_then(Value::as_str) {
            Some("date") => parse_date(s).map(|_| ()),
            Some("date-time") => parse_instant(s).map(|_| ()),
            Some("uuid") => uuid::Uuid::try_parse(s)
                .map(|_| ())
                .map_err(|_| "a UUID such as 0193e0a0-0000-7000-8000-000000000001".into()),
            _ => Ok(()),
        };
        if let Err(e) = checked {
            self.push(path, e);
        }
    }

    fn number(&mut self, n: &serde_json::Number, schema: &Value, path: &str) {
        let Some(x) = n.as_f64() else { return };
        let bound = |key| schema.get(key).and_then(Value::as_f64);
        let (min, max) = match schema.get("format").and_then(Value::as_str) {
            Some("int32") => (Some(f64::from(i32::MIN)), Some(f64::from(i32::MAX))),
            _ => (None, None),
        };
        if let Some(min) = bound("minimum").or(min).filter(|m| x < *m) {
            self.push(path, format!("at least {min}"));
        } else if let Some(max) = bound("maximum").or(max).filter(|m| x > *m) {
            self.push(path, format!("at most {max}"));
        }
    }

    /// Content the contract leaves open (`metadata`): text rules only.
    fn free_form(&mut self, value: &Value, path: &mut String) {
        match value {
            Value::String(s) => {
                if let Err(e) = check_text(s, TEXT_MAX) {
                    self.push(path, e);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    self.free_form(v, path);
                    path.truncate(len);
                }
            }
            Value::Object(map) => {
                for (key, v) in map {
                    let len = path.len();
                    path.push_str(&join_suffix(len, key));
                    match check_text(key, TEXT_MAX) {
                        Err(e) => self.push(path, format!("field name: {e}")),
                        Ok(()) => self.free_form(v, path),
                    }
                    path.truncate(len);
                }
            }
            Value::Number(_) | Value::Bool(_) | Value::Null => {}
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.into()
    } else {
        format!("{path}.{key}")
    }
}

fn join_suffix(len: usize, key: &str) -> String {
    if len == 0 {
        key.into()
    } else {
        format!(".{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates_are_zero_padded_and_within_range() {
        assert_eq!(
            parse_date("2026-01-01"),
            Ok(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap())
        );
        for ok in ["2000-01-01", "2100-12-31", "2028-02-29"] {
            assert!(parse_date(ok).is_ok(), "{ok}");
        }
        for bad in [
            "2026-1-1",
            "2026-01-1",
            "+2026-01-01",
            "02026-01-01",
            "2026-02-30",
            "2026-13-01",
            "2026-01-01T00:00:00Z",
            " 2026-01-01",
            "2026/01/01",
            "",
        ] {
            assert!(parse_date(bad).unwrap_err().contains("YYYY-MM-DD"), "{bad}");
        }
        for out in [
            "0000-01-01",
            "1899-12-31",
            "1999-12-31",
            "2101-01-01",
            "9999-12-31",
        ] {
            assert!(parse_date(out).unwrap_err().contains("2000-01-01"), "{out}");
        }
    }

    #[test]
    fn instants_are_rfc_3339_and_within_range() {
        let at = |s: &str| parse_instant(s).map(|t| t.to_rfc3339());
        assert_eq!(
            at("2026-11-20T09:30:00+01:00"),
            Ok("2026-11-20T08:30:00+00:00".into())
        );
        for ok in [
            "2026-11-20T09:30:00Z",
            "2026-11-20t09:30:00z",
            "2026-11-20T09:30:00.123456789-05:30",
            "2000-01-01T00:00:00Z",
            "2100-12-31T23:59:59.999Z",
        ] {
            assert!(parse_instant(ok).is_ok(), "{ok}");
        }
        for bad in [
            "2026-11-20 09:30:00Z",
            "2026-11-20T09:30:00",
            "2026-11-20T09:30Z",
            "2026-1-20T09:30:00Z",
            "2026-11-20T9:30:00Z",
            "2026-11-20T09:30:00.Z",
            "2026-11-20T09:30:00.1234567890Z",
            "2026-11-20T09:30:00+0100",
            "2026-11-20T09:30:00+01",
            "2026-11-20T25:30:00Z",
            "+10000-01-03T15:00:00Z",
            "2026-11-20",
        ] {
            assert!(
                parse_instant(bad).unwrap_err().contains("RFC 3339"),
                "{bad}"
            );
        }
        for out in [
            "9999-12-27T10:00:00Z",
            "1999-12-31T23:59:59Z",
            "2000-01-01T00:30:00+01:00",
            "2101-01-01T00:00:00Z",
        ] {
            assert!(
                parse_instant(out).unwrap_err().contains("2100-12-31"),
                "{out}"
            );
        }
    }

    #[test]
    fn text_refuses_control_characters_and_counts_characters() {
        assert!(check_text("Société Générale — Paris", 24).is_ok());
        assert!(check_text("éééé", 3).is_err());
        for c in [
            '\0', '\u{7}', '\u{1b}', '\n', '\t', '\u{7f}', '\u{85}', '\u{9f}',
        ] {
            assert!(check_text(&format!("a{c}b"), 10).is_err(), "{c:?}");
        }
    }

    fn strict(text: &str) -> Result<Value, String> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize::<_, StrictValue>(de)
            .map(|v| v.0)
            .map_err(|e| {
                let path = e.path().to_string();
                format!("{path}: {}", e.into_inner())
            })
    }

    #[test]
    fn a_field_given_twice_is_refused_by_its_path() {
        assert_eq!(
            strict(r#"{"a": [1, {"b": "x"}]}"#),
            Ok(json!({"a": [1, {"b": "x"}]}))
        );
        let err = strict(r#"{"a": {"b": 1, "b": 2}}"#).unwrap_err();
        assert!(err.starts_with("a.b: duplicate field `b`"), "{err}");
    }

    #[test]
    fn every_request_type_has_its_schema() {
        for name in [
            "NewCustomer",
            "CustomerPatch",
            "Offer",
            "PriceVersion",
            "NewSubscription",
            "AuthorizationRequest",
            "Capture",
            "ManualTransactionRequest",
            "ReverseRequest",
            "TicketPurchaseRequest",
            "CreditPurchaseRequest",
            "JobRequest",
            "ResolveRequest",
        ] {
            assert!(has_schema(name), "{name}");
        }
    }

    #[test]
    fn the_walk_names_every_offending_field() {
        let fields = |name, v: Value| -> Vec<String> {
            check(name, &v).into_iter().map(|e| e.field).collect()
        };
        assert_eq!(
            fields(
                "NewCustomer",
                json!({"legal_name": "A\u{7}", "address": {"street": "Rue", "town": "Paris", "country": "FR"}})
            ),
            ["billing_email", "address.postcode", "legal_name"]
        );
        assert_eq!(fields("NewCustomer", json!([])), ["body"]);
        assert_eq!(
            fields(
                "ManualTransactionRequest",
                json!({"description": "x", "postings": [{"account_id": "00000000-0000-4000-8000-000000000471", "amount": "1"}, {"side": null}],
                       "metadata": {"k": ["\u{1b}"]}})
            ),
            [
                "metadata.k[0]",
                "postings[0].side",
                "postings[1].account_id",
                "postings[1].amount",
                "postings[1].side"
            ]
        );
    }
}
