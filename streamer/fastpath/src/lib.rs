//! cohort-streamer's per-event path in native code: decode an event and put it in its cohort's
//! buffer, for the common case (a well-formed event of an open cohort, continuing a partition's
//! run). Anything else stops the loop and Python's ingest takes that message the careful way
//! (streamer/pipeline.py), so the rules live in one place and this only has to agree with them.
//!
//! The boundary is one-way: Python hands over plain data (bytes, strings, numbers, dicts of
//! them, its parse_ts function) and the types defined here (range.rs, buffer.rs, entry.rs,
//! store.rs); nothing here imports a project module or reads a Python object's attributes.

mod body;
mod buffer;
mod change;
mod entry;
mod event;
mod range;
mod store;

use std::borrow::Cow;
use std::collections::HashMap;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyInt, PyList, PyString};

use buffer::{BufferView, CohortBuffer};
use change::Change;
use entry::Entry;
use event::{FieldNames, Limits, Schema, Ts};
use range::PendingRange;
use store::{Held, Members, NewEvent};

/// One event schema's fast path (streamer/decode.py builds it from the config).
#[pyclass(frozen, module = "streamer._fastpath")]
struct FastPath {
    schema: Schema,
    parse_ts: Py<PyAny>, // decode.parse_ts, for times written as floats or ISO-8601
}

/// What ingest_run did.
#[pyclass(frozen, get_all, module = "streamer._fastpath")]
struct RunTally {
    /// index of the first message it did not take
    next: usize,
    /// offset of the last message it took (-1: none)
    last_offset: i64,
    /// value bytes of the messages it took
    value_bytes: u64,
    /// events those superseded, and their value bytes
    superseded: u64,
    superseded_bytes: u64,
}

#[pymethods]
impl FastPath {
    #[new]
    #[pyo3(signature = (*, fields, enter_actions, exit_actions, limits, parse_ts))]
    fn new(
        fields: FieldNames,
        enter_actions: Vec<String>,
        exit_actions: Vec<String>,
        limits: Limits,
        parse_ts: Py<PyAny>,
    ) -> Self {
        let schema = Schema {
            names: fields,
            enter: enter_actions,
            exit: exit_actions,
            limits,
        };
        FastPath { schema, parse_ts }
    }

    /// The fields of a valid event, as decode.Decoder.decode returns them, or None when this is
    /// not the common case (the careful path then decides).
    fn decode(&self, py: Python<'_>, value: &[u8]) -> PyResult<Option<Change>> {
        let Some(event) = self.schema.read(value) else {
            return Ok(None);
        };
        if !self.schema.name_allowed(&event.name) {
            return Ok(None);
        }
        let Some(ts) = self.millis(py, &event.ts)? else {
            return Ok(None);
        };
        Ok(Some(Change {
            add: event.add,
            cohort_id: event.cohort_id.into_owned(),
            cohort_name: event.name.into_owned(),
            cohort_description: event.description.map(|d| d.into_owned()),
            uid: event.uid.into_owned(),
            ts_ms: ts.map(|ms| ms as i64),
        }))
    }

    /// Takes messages[start:] into the cohort buffers while each continues the run of
    /// (topic, partition), is a valid event and its cohort has an open buffer (`buffers`: the
    /// open buffers by cohort id), each event settling `rng` when done.
    /// `topic` None: one topic is consumed, so a run ends only where the partition changes
    /// (reading each message's topic would cost a cache miss per event).
    fn ingest_run(
        &self,
        messages: &Bound<'_, PyList>,
        start: usize,
        topic: Option<&Bound<'_, PyString>>,
        partition: i64,
        rng: &Bound<'_, PendingRange>,
        buffers: &Bound<'_, PyDict>,
    ) -> PyResult<RunTally> {
        // per call, not kept: between calls Python may open, seal or rename buffers
        let mut views: HashMap<String, BufferView> = HashMap::new();
        let (mut index, mut last, mut nbytes, mut superseded, mut superseded_bytes) =
            (start, -1, 0, 0, 0);
        while index < messages.len() {
            let msg = messages.get_item(index)?;
            let Some((offset, size, old)) =
                self.take(&msg, topic, partition, rng, buffers, &mut views)?
            else {
                break;
            };
            last = offset;
            nbytes += size;
            if let Some(old_size) = old {
                superseded += 1;
                superseded_bytes += old_size;
            }
            index += 1;
        }
        Ok(RunTally {
            next: index,
            last_offset: last,
            value_bytes: nbytes,
            superseded,
            superseded_bytes,
        })
    }
}

impl FastPath {
    /// One message into its buffer: Some((offset, value size, size of the event it
    /// superseded)), or None (nothing changed) when Python must take it.
    fn take<'py>(
        &self,
        msg: &Bound<'py, PyAny>,
        topic: Option<&Bound<'py, PyString>>,
        partition: i64,
        rng: &Bound<'py, PendingRange>,
        buffers: &Bound<'py, PyDict>,
        views: &mut HashMap<String, BufferView<'py>>,
    ) -> PyResult<Option<(i64, u64, Option<u64>)>> {
        let py = msg.py();
        let this_partition: i64 = msg.call_method0(intern!(py, "partition"))?.extract()?;
        if this_partition != partition {
            return Ok(None); // a new run: Python tracks its offsets
        }
        if let Some(topic) = topic {
            if !msg.call_method0(intern!(py, "topic"))?.eq(topic)? {
                return Ok(None);
            }
        }
        let value = msg.call_method0(intern!(py, "value"))?;
        let Ok(value) = value.cast_into::<PyBytes>() else {
            return Ok(None);
        };
        let Some(event) = self.schema.read(value.as_bytes()) else {
            return Ok(None);
        };
        let Some(ts) = self.millis(py, &event.ts)? else {
            return Ok(None);
        };
        let view = match views.get_mut(event.cohort_id.as_ref()) {
            Some(view) => view,
            None => match buffers.get_item(event.cohort_id.as_ref())? {
                Some(buf) => {
                    let view = BufferView::open(buf.cast()?, |n| self.schema.name_allowed(n));
                    views.entry(event.cohort_id.to_string()).or_insert(view)
                }
                None => return Ok(None), // Python opens the cohort's buffer
            },
        };
        // a name is checked once, not per event: the buffer's was checked when it was set
        let same_name = view.name_allowed && view.name() == event.name;
        if !same_name && !self.schema.name_allowed(&event.name) {
            return Ok(None);
        }
        // from here on the message is taken: nothing below returns None
        view.label(&event.name, event.description.as_deref());
        let ts = event_time(msg, ts.map(|ms| ms as i64))?;
        let offset: i64 = msg.call_method0(intern!(py, "offset"))?.extract()?;
        let key = msg.call_method0(intern!(py, "key"))?;
        let key = key.cast::<PyBytes>().ok();
        let uid_chars = if event.uid.is_ascii() {
            event.uid.len()
        } else {
            event.uid.chars().count()
        };
        let new = NewEvent {
            uid: &event.uid,
            uid_chars,
            value: value.as_bytes(),
            key: key.map(|k| k.as_bytes()),
            ts,
            offset,
            range: rng,
        };
        let old = view.put(&new, event.add)?;
        Ok(Some((
            offset,
            value.as_bytes().len() as u64,
            old.map(|o| o.size),
        )))
    }

    /// The event time in epoch ms: Some(None) when the event has none, None when the careful
    /// path must decide (a time parse_ts refuses).
    fn millis(&self, py: Python<'_>, ts: &Ts) -> PyResult<Option<Option<u64>>> {
        let written = match ts {
            Ts::Absent => return Ok(Some(None)),
            Ts::Millis(ms) => return Ok(self.schema.time_allowed(*ms).then_some(Some(*ms))),
            Ts::Float(f) => PyFloat::new(py, *f).into_any(),
            Ts::Text(text) => PyString::new(py, text).into_any(),
        };
        let parsed = self.parse_ts.bind(py).call1((written,))?;
        if parsed.is_exact_instance_of::<PyInt>() {
            Ok(Some(Some(parsed.extract()?)))
        } else {
            Ok(None)
        }
    }
}

/// The name of an event's cohort: `name` as the event gives it (None: absent or null), or else
/// its id. The careful path (streamer/decode.py) asks this rule of the native reader.
#[pyfunction(name = "cohort_name")]
fn py_cohort_name(name: Option<String>, cohort_id: String) -> String {
    event::cohort_name(name.map(Cow::Owned), &Cow::Owned(cohort_id)).into_owned()
}

/// The time a held event is aged from: its own (`ts_ms`), or else the Kafka message's. Both
/// ingest paths call this (streamer/pipeline.py for the careful one).
#[pyfunction]
fn event_time(msg: &Bound<'_, PyAny>, ts_ms: Option<i64>) -> PyResult<i64> {
    match ts_ms {
        Some(ms) => Ok(ms),
        None => msg
            .call_method0(intern!(msg.py(), "timestamp"))?
            .get_item(1)?
            .extract(),
    }
}

#[pymodule]
fn _fastpath(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<FastPath>()?;
    m.add_class::<RunTally>()?;
    m.add_class::<PendingRange>()?;
    m.add_class::<CohortBuffer>()?;
    m.add_class::<Entry>()?;
    m.add_class::<Change>()?;
    m.add_class::<Held>()?;
    m.add_class::<Members>()?;
    m.add_function(wrap_pyfunction!(event_time, m)?)?;
    m.add_function(wrap_pyfunction!(py_cohort_name, m)?)?;
    m.add("MEMBER_OVERHEAD", body::MEMBER_OVERHEAD)?;
    Ok(())
}
