//! One event's JSON value to its fields, for the common, well-formed case only.
//!
//! `Schema::read` returns None for anything it is not sure of; the caller then asks Python's
//! careful path (streamer/decode.py), which names what is wrong. So this must never accept an
//! event the careful path refuses, nor read one differently (tests/test_fastpath.py checks it
//! on generated events). The limits and the forbidden name characters are not written here:
//! streamer/decode.py hands its own over when it builds the fast path.

use std::borrow::Cow;
use std::fmt;

use pyo3::FromPyObject;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

/// The event's configured field names (config `events.*_field`), from a dict with these keys.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct FieldNames {
    pub action: String,
    pub cohort_id: String,
    pub uid: String,
    pub name: String,
    pub description: String,
    pub ts: String,
}

/// What streamer/decode.py takes, from a dict with these keys.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct Limits {
    pub max_event_bytes: usize,
    pub max_id_chars: usize,
    /// epoch milliseconds at or above this are not a time
    pub max_epoch_ms: u64,
    /// a cohort name may not start with any of these characters, nor hold any of the others
    pub forbidden_name_start: String,
    pub forbidden_name_chars: String,
}

/// The event time as written; only epoch milliseconds are read here, the rest by Python.
pub enum Ts<'a> {
    Absent,
    Millis(u64),
    Float(f64),
    Text(Cow<'a, str>),
}

/// A valid event but for its name (see name_allowed). Strings borrow the message value unless JSON escapes made a copy necessary.
pub struct Event<'a> {
    pub add: bool,
    pub cohort_id: Cow<'a, str>,
    pub uid: Cow<'a, str>,
    pub name: Cow<'a, str>,
    pub description: Option<Cow<'a, str>>,
    pub ts: Ts<'a>,
}

pub struct Schema {
    pub names: FieldNames,
    pub enter: Vec<String>,
    pub exit: Vec<String>,
    pub limits: Limits,
}

impl Schema {
    pub fn read<'a>(&self, value: &'a [u8]) -> Option<Event<'a>> {
        if value.is_empty() || value.len() > self.limits.max_event_bytes {
            return None;
        }
        let mut json = serde_json::Deserializer::from_slice(value);
        let raw = EventSeed(&self.names).deserialize(&mut json).ok()?;
        json.end().ok()?; // nothing but whitespace after the object
                          // (the config keeps the two lists disjoint)
        let add = if self.enter.iter().any(|a| *a == raw.action) {
            true
        } else if self.exit.iter().any(|a| *a == raw.action) {
            false
        } else {
            return None;
        };
        if !self.plausible_id(&raw.cohort_id) || !self.plausible_id(&raw.uid) {
            return None;
        }
        let name = cohort_name(raw.name, &raw.cohort_id);
        Some(Event {
            add,
            cohort_id: raw.cohort_id,
            uid: raw.uid,
            name,
            description: raw.description,
            ts: raw.ts,
        })
    }

    /// Whether Cohort Sync takes this cohort name (checked apart from read(): ingest checks a
    /// name only when it differs from the buffer's, which was checked when it was set).
    pub fn name_allowed(&self, name: &str) -> bool {
        let limits = &self.limits;
        match name.chars().next() {
            None => false,
            Some(first) if limits.forbidden_name_start.contains(first) => false,
            Some(_) => !name.contains(|c| limits.forbidden_name_chars.contains(c)),
        }
    }

    /// Whether an epoch-milliseconds time is in range.
    pub fn time_allowed(&self, ms: u64) -> bool {
        ms < self.limits.max_epoch_ms
    }

    /// Not blank and not too long. Python's isspace() counts more characters as blank than
    /// Rust does, so an id is taken here only if it has a visible ASCII character (blank to
    /// neither).
    fn plausible_id(&self, id: &str) -> bool {
        let max = self.limits.max_id_chars;
        id.bytes().any(|b| b.is_ascii_graphic()) && (id.len() <= max || id.chars().count() <= max)
    }
}

/// The cohort's name: the event's, or else its id (both readers take it from here).
pub fn cohort_name<'a>(name: Option<Cow<'a, str>>, cohort_id: &Cow<'a, str>) -> Cow<'a, str> {
    name.unwrap_or_else(|| cohort_id.clone())
}

/// The object as read, before the rules: required fields present and strings, nothing twice.
struct RawEvent<'a> {
    action: Cow<'a, str>,
    cohort_id: Cow<'a, str>,
    uid: Cow<'a, str>,
    name: Option<Cow<'a, str>>,
    description: Option<Cow<'a, str>>,
    ts: Ts<'a>,
}

struct EventSeed<'n>(&'n FieldNames);

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = RawEvent<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(EventVisitor(self.0))
    }
}

struct EventVisitor<'n>(&'n FieldNames);

impl<'de> Visitor<'de> for EventVisitor<'_> {
    type Value = RawEvent<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let n = self.0;
        let (mut action, mut cohort_id, mut uid) = (None, None, None);
        let (mut name, mut description, mut ts) = (None, None, None);
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            let key = key.as_ref();
            if key == n.action {
                once(&mut action, map.next_value::<Text>()?.0)?;
            } else if key == n.cohort_id {
                once(&mut cohort_id, map.next_value::<Text>()?.0)?;
            } else if key == n.uid {
                once(&mut uid, map.next_value::<Text>()?.0)?;
            } else if key == n.name {
                once(&mut name, map.next_value::<Option<Text>>()?.map(|t| t.0))?;
            } else if key == n.description {
                once(
                    &mut description,
                    map.next_value::<Option<Text>>()?.map(|t| t.0),
                )?;
            } else if key == n.ts {
                once(&mut ts, map.next_value::<Ts>()?)?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        let missing = || de::Error::custom("a required field is missing");
        Ok(RawEvent {
            action: action.ok_or_else(missing)?,
            cohort_id: cohort_id.ok_or_else(missing)?,
            uid: uid.ok_or_else(missing)?,
            name: name.flatten(), // null means absent, as for every optional field
            description: description.flatten(),
            ts: ts.unwrap_or(Ts::Absent),
        })
    }
}

/// A key given twice is left to the careful path (which keeps the last, as orjson does).
fn once<T, E: de::Error>(slot: &mut Option<T>, value: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::custom("duplicate field"));
    }
    *slot = Some(value);
    Ok(())
}

/// A JSON string, borrowed from the value when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed(s)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(s.to_owned())))
    }
}

impl<'de> Deserialize<'de> for Ts<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TsVisitor)
    }
}

struct TsVisitor;

impl<'de> Visitor<'de> for TsVisitor {
    type Value = Ts<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("epoch milliseconds, ISO-8601 or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Ts::Absent)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Ts::Millis(v))
    }

    // negative integers (visit_i64), booleans and containers are the careful path's to refuse

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Ts::Float(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Ts::Text(Cow::Borrowed(s)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Ts::Text(Cow::Owned(s.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(max_event_bytes: usize) -> Schema {
        Schema {
            names: FieldNames {
                action: "action".into(),
                cohort_id: "cohort_id".into(),
                uid: "uid".into(),
                name: "cohort_name".into(),
                description: "cohort_description".into(),
                ts: "ts".into(),
            },
            enter: vec!["enter".into(), "in".into()],
            exit: vec!["exit".into()],
            limits: Limits {
                max_event_bytes,
                max_id_chars: 8,
                max_epoch_ms: 1_000,
                forbidden_name_start: ".".into(),
                forbidden_name_chars: "|$".into(),
            },
        }
    }

    fn read(value: &str) -> Option<Event<'_>> {
        schema(4096).read(value.as_bytes())
    }

    #[test]
    fn reads_a_well_formed_event() {
        let value = r#"{"action":"in","cohort_id":"c","uid":"u","cohort_name":"N","cohort_description":"d","ts":5,"x":[1]}"#;
        let event = read(value).expect("valid");
        assert!(event.add);
        assert_eq!(
            (&*event.cohort_id, &*event.uid, &*event.name),
            ("c", "u", "N")
        );
        assert_eq!(event.description.as_deref(), Some("d"));
        assert!(matches!(event.ts, Ts::Millis(5)));
        let exit = read(r#"{"action":"exit","cohort_id":"c","uid":"u"}"#).expect("valid");
        assert!(!exit.add);
    }

    #[test]
    fn a_missing_or_null_name_is_the_cohort_id_and_a_missing_time_is_absent() {
        for value in [
            r#"{"action":"enter","cohort_id":"c7","uid":"u"}"#,
            r#"{"action":"enter","cohort_id":"c7","uid":"u","cohort_name":null,"ts":null}"#,
        ] {
            let event = read(value).expect("valid");
            assert_eq!(&*event.name, "c7");
            assert!(matches!(event.ts, Ts::Absent));
        }
    }

    #[test]
    fn times_other_than_epoch_ms_are_handed_over_as_written() {
        let event = read(r#"{"action":"enter","cohort_id":"c","uid":"u","ts":1.5}"#).unwrap();
        assert!(matches!(event.ts, Ts::Float(f) if f == 1.5));
        let event = read(r#"{"action":"enter","cohort_id":"c","uid":"u","ts":"2024"}"#).unwrap();
        assert!(matches!(event.ts, Ts::Text(ref t) if t == "2024"));
    }

    #[test]
    fn steps_aside_where_the_careful_path_must_decide() {
        for value in [
            "",
            "[]",
            "not json",
            r#"{"action":"enter","cohort_id":"c","uid":"u"} x"#, // trailing bytes
            r#"{"action":"stay","cohort_id":"c","uid":"u"}"#,    // unknown action
            r#"{"cohort_id":"c","uid":"u"}"#,                    // missing action
            r#"{"action":"enter","uid":"u"}"#,                   // missing cohort
            r#"{"action":"enter","cohort_id":"c","uid":7}"#,     // not a string
            r#"{"action":"enter","cohort_id":" ","uid":"u"}"#,   // blank
            r#"{"action":"enter","cohort_id":"c","uid":"123456789"}"#, // over max_id_chars
            r#"{"action":"enter","cohort_id":"c","uid":"u","uid":"v"}"#, // a key twice
            r#"{"action":"enter","cohort_id":"c","uid":"u","ts":-1}"#,
            r#"{"action":"enter","cohort_id":"c","uid":"u","ts":true}"#,
            r#"{"action":"enter","cohort_id":"c","uid":"u","cohort_name":5}"#,
        ] {
            assert!(read(value).is_none(), "{value}");
        }
    }

    #[test]
    fn ids_are_counted_in_characters_not_bytes_and_need_a_visible_one() {
        assert!(read(r#"{"action":"enter","cohort_id":"c","uid":"aüüüüüüü"}"#).is_some());
        assert!(read(r#"{"action":"enter","cohort_id":"c","uid":"aüüüüüüüü"}"#).is_none());
        // blank to neither reader only if it has a visible ASCII character: see plausible_id
        assert!(read(r#"{"action":"enter","cohort_id":"c","uid":"üü"}"#).is_none());
    }

    #[test]
    fn the_size_limit_is_the_one_handed_over() {
        let value = br#"{"action":"enter","cohort_id":"c","uid":"u"}"#;
        assert!(schema(value.len()).read(value).is_some());
        assert!(schema(value.len() - 1).read(value).is_none());
    }

    #[test]
    fn names_follow_the_characters_handed_over() {
        let s = schema(4096);
        for name in ["ok", "a.b", "a*b"] {
            assert!(s.name_allowed(name), "{name}");
        }
        for name in ["", ".hidden", "a|b", "$"] {
            assert!(!s.name_allowed(name), "{name}");
        }
    }

    #[test]
    fn times_at_or_over_the_limit_handed_over_are_refused() {
        let s = schema(4096);
        assert!(s.time_allowed(999));
        assert!(!s.time_allowed(1_000));
    }
}
