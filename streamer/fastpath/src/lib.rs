//! cohort-streamer's per-event path in native code: decode an event and put it in its cohort's
//! buffer, for the common case (a well-formed event of an open cohort, continuing a partition's
//! run). Anything else stops the loop and Python's ingest takes that message the careful way
//! (streamer/pipeline.py), so the rules live in one place and this only has to agree with them.

mod body;
mod buffer;
mod event;
mod store;

use std::collections::HashMap;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use buffer::BufferView;
use event::{name_allowed, Event, FieldNames, Schema, Ts, MAX_EPOCH_MS};
use store::{Held, Members, NewEvent};

/// One event schema's fast path (streamer/decode.py builds it from the config).
#[pyclass(frozen, module = "streamer._fastpath")]
struct FastPath {
    schema: Schema,
    parse_ts: Py<PyAny>, // decode.parse_ts, for times written as floats or ISO-8601
}

/// What ingest_run did: (index of the first message it did not take, offset of the last one it
/// took (-1: none), their value bytes, events superseded, value bytes superseded).
type RunTally = (usize, i64, u64, u64, u64);

#[pymethods]
impl FastPath {
    #[new]
    fn new(
        fields: (String, String, String, String, String, String),
        enter_actions: Vec<String>,
        exit_actions: Vec<String>,
        max_event_bytes: usize,
        parse_ts: Py<PyAny>,
    ) -> Self {
        let (action, cohort_id, uid, name, description, ts) = fields;
        let names = FieldNames {
            action,
            cohort_id,
            uid,
            name,
            description,
            ts,
        };
        let schema = Schema {
            names,
            enter: enter_actions,
            exit: exit_actions,
            max_event_bytes,
        };
        FastPath { schema, parse_ts }
    }

    /// The fields of a valid event, as decode.Decoder.decode returns them, or None when this is
    /// not the common case (the careful path then decides).
    fn decode<'py>(&self, value: &Bound<'py, PyBytes>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let py = value.py();
        let Some(event) = self.schema.read(value.as_bytes()) else {
            return Ok(None);
        };
        if !name_allowed(&event.name) {
            return Ok(None);
        }
        let Some(ts) = self.millis(py, &event.ts)? else {
            return Ok(None);
        };
        let fields = (
            event.add,
            event.cohort_id.as_ref(),
            event.name.as_ref(),
            event.description.as_deref(),
            event.uid.as_ref(),
            ts,
        );
        Ok(Some(fields.into_pyobject(py)?))
    }

    /// Takes messages[start:] into the cohort buffers while each continues the run of
    /// (topic, partition), is a valid event and its cohort has an open buffer (`cohorts`:
    /// pipeline.Pipeline.cohorts), each event settling `rng` (its PendingRange) when done.
    /// `topic` None: one topic is consumed, so a run ends only where the partition changes
    /// (reading each message's topic would cost a cache miss per event).
    fn ingest_run(
        &self,
        messages: &Bound<'_, PyList>,
        start: usize,
        topic: Option<&Bound<'_, PyString>>,
        partition: i64,
        rng: &Bound<'_, PyAny>,
        cohorts: &Bound<'_, PyDict>,
    ) -> PyResult<RunTally> {
        // per call, not kept: between calls Python may open, seal or rename buffers
        let mut views: HashMap<String, BufferView> = HashMap::new();
        let (mut index, mut last, mut nbytes, mut superseded, mut superseded_bytes) =
            (start, -1, 0, 0, 0);
        while index < messages.len() {
            let msg = messages.get_item(index)?;
            let Some((offset, size, old)) =
                self.take(&msg, topic, partition, rng, cohorts, &mut views)?
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
        Ok((index, last, nbytes, superseded, superseded_bytes))
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
        rng: &Bound<'py, PyAny>,
        cohorts: &Bound<'py, PyDict>,
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
            None => match open_buffer(cohorts, &event.cohort_id)? {
                Some(view) => views.entry(event.cohort_id.to_string()).or_insert(view),
                None => return Ok(None), // Python opens the cohort's buffer
            },
        };
        // a name is checked once, not per event: the buffer's was checked when it was set
        let same_name = view.name_allowed && view.name == event.name;
        if !same_name && !name_allowed(&event.name) {
            return Ok(None);
        }
        // from here on the message is taken: nothing below returns None
        label(view, &event)?;
        let ts: i64 = match ts {
            Some(ms) => ms as i64,
            // an event without its own time is timed from Kafka's
            None => msg
                .call_method0(intern!(py, "timestamp"))?
                .get_item(1)?
                .extract()?,
        };
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
            Ts::Millis(ms) => return Ok((*ms < MAX_EPOCH_MS).then_some(Some(*ms))),
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

/// The view of a cohort's open buffer, or None if it has none.
fn open_buffer<'py>(
    cohorts: &Bound<'py, PyDict>,
    cohort_id: &str,
) -> PyResult<Option<BufferView<'py>>> {
    let Some(cohort) = cohorts.get_item(cohort_id)? else {
        return Ok(None);
    };
    let buf = cohort.getattr(intern!(cohorts.py(), "open"))?;
    if buf.is_none() {
        return Ok(None);
    }
    BufferView::open(buf).map(Some)
}

/// The cohort's name and description follow its latest event.
fn label(view: &mut BufferView<'_>, event: &Event<'_>) -> PyResult<()> {
    if view.name != event.name {
        view.set_name(&event.name)?;
    }
    if let Some(description) = &event.description {
        if view.description.as_deref() != Some(description.as_ref()) {
            view.set_description(description)?;
        }
    }
    Ok(())
}

/// CohortBuffer.put for Python callers: the same rules as ingest_run's.
#[pyfunction]
fn put<'py>(
    buf: &Bound<'py, PyAny>,
    uid: &Bound<'py, PyString>,
    entry: &Bound<'py, PyTuple>,
) -> PyResult<Option<Py<PyTuple>>> {
    store::put_entry(buf, uid, entry)
}

/// payload.pack: (body, indices of the uids it carries) per body, and the indices of the uids
/// that fit in no body on their own.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn pack<'py>(
    py: Python<'py>,
    head: &[u8],
    tail: &[u8],
    uids: Vec<String>,
    max_bytes: usize,
) -> (Vec<(Bound<'py, PyBytes>, Vec<usize>)>, Vec<usize>) {
    let packed = body::pack(head, tail, uids.iter().map(String::as_str), max_bytes);
    let bodies = packed
        .bodies
        .into_iter()
        .map(|(data, carried)| (PyBytes::new(py, &data), carried))
        .collect();
    (bodies, packed.too_large)
}

#[pymodule]
fn _fastpath(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<FastPath>()?;
    m.add_function(wrap_pyfunction!(put, m)?)?;
    m.add_function(wrap_pyfunction!(pack, m)?)?;
    m.add_class::<Held>()?;
    m.add_class::<Members>()?;
    m.add("MEMBER_OVERHEAD", store::MEMBER_OVERHEAD)?;
    Ok(())
}
