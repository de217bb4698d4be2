//! One event's JSON value to its fields, for the common, well-formed case only.
//!
//! `Schema::read` returns None for anything it is not sure of; the caller then asks Python's
//! careful path (streamer/decode.py), which names what is wrong. So this must never accept an
//! event the careful path refuses, nor read one differently (tests/test_fastpath.py checks it
//! on generated events).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

/// The same limits as streamer/decode.py.
pub const MAX_ID_CHARS: usize = 1024;
pub const MAX_EPOCH_MS: u64 = 100_000_000_000_000;
/// Cohort Sync refuses names starting with '.' or holding any of these.
const FORBIDDEN_IN_NAME: &str = "|*?\\:<>=$\"";

/// The event's configured field names (config `events.*_field`).
pub struct FieldNames {
    pub action: String,
    pub cohort_id: String,
    pub uid: String,
    pub name: String,
    pub description: String,
    pub ts: String,
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
    pub max_event_bytes: usize,
}

impl Schema {
    pub fn read<'a>(&self, value: &'a [u8]) -> Option<Event<'a>> {
        if value.is_empty() || value.len() > self.max_event_bytes {
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
        if !plausible_id(&raw.cohort_id) || !plausible_id(&raw.uid) {
            return None;
        }
        let name = raw.name.unwrap_or_else(|| raw.cohort_id.clone());
        Some(Event {
            add,
            cohort_id: raw.cohort_id,
            uid: raw.uid,
            name,
            description: raw.description,
            ts: raw.ts,
        })
    }
}

/// Whether Cohort Sync takes this cohort name (checked apart from read(): ingest checks a name
/// only when it differs from the buffer's, which was checked when it was set).
pub fn name_allowed(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(|c| FORBIDDEN_IN_NAME.contains(c))
}

/// Not blank and not too long. Python's isspace() counts more characters as blank than Rust
/// does, so an id is taken here only if it has a visible ASCII character (blank to neither).
fn plausible_id(id: &str) -> bool {
    id.bytes().any(|b| b.is_ascii_graphic())
        && (id.len() <= MAX_ID_CHARS || id.chars().count() <= MAX_ID_CHARS)
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
