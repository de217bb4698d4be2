//! `CohortBuffer`: the coalesced changes of one cohort that are not being sent yet. Per action
//! (store.rs `Held`), the latest event per uid, so a seal of one action never walks the other's
//! events; and the cohort's labels, which follow its latest event. When it is due and how much
//! of it goes is Python's policy (streamer/batch.py, streamer/seal.py).

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::entry::Entry;
use crate::range::Partitions;
use crate::store::{Held, NewEvent, Superseded};

/// The Python object is a pointer, like `Held`'s (store.rs): its fields live in the malloc heap
/// the trim returns, not in the pymalloc arenas a burst's leftovers pin.
#[pyclass(module = "streamer._fastpath")]
pub struct CohortBuffer(Box<Buffer>);

impl std::ops::Deref for CohortBuffer {
    type Target = Buffer;

    fn deref(&self) -> &Buffer {
        &self.0
    }
}

impl std::ops::DerefMut for CohortBuffer {
    fn deref_mut(&mut self) -> &mut Buffer {
        &mut self.0
    }
}

/// What `CohortBuffer` holds.
pub struct Buffer {
    cohort_id: String,
    pub name: String,
    pub description: Option<String>,
    // each action's events, made by its first event (most cohorts of a burst see one action):
    // see `adds`
    adds: Option<Py<Held>>,
    removes: Option<Py<Held>>,
    /// monotonic time of the oldest event held: linger counts from it
    opened_at: f64,
}

#[pymethods]
impl CohortBuffer {
    #[new]
    fn new(cohort_id: String, opened_at: f64) -> Self {
        CohortBuffer(Box::new(Buffer {
            name: cohort_id.clone(), // until an event names it
            cohort_id,
            description: None,
            adds: None,
            removes: None,
            opened_at,
        }))
    }

    #[getter]
    fn cohort_id(&self) -> &str {
        &self.cohort_id
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    #[setter]
    fn set_name(&mut self, name: String) {
        self.name = name;
    }

    #[getter]
    fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    #[setter]
    fn set_description(&mut self, description: Option<String>) {
        self.description = description;
    }

    #[getter]
    fn opened_at(&self) -> f64 {
        self.opened_at
    }

    #[setter]
    fn set_opened_at(&mut self, opened_at: f64) {
        self.opened_at = opened_at;
    }

    /// Holds one event; returns the entry it superseded, which is settled now. (The ingest loop
    /// does the same per event: lib.rs.)
    fn put(
        &mut self,
        py: Python<'_>,
        uid: &Bound<'_, PyString>,
        entry: PyRef<'_, Entry>,
    ) -> PyResult<Option<Py<Entry>>> {
        let value = entry.value.bind(py).as_bytes();
        let key = entry.key.as_ref().map(|k| k.bind(py).as_bytes());
        let new = NewEvent {
            uid: uid.to_str()?,
            uid_chars: uid.len()?,
            value,
            key,
            ts: entry.ts_ms,
            offset: entry.offset,
            range: entry.range.bind(py),
        };
        let buf = &mut *self.0;
        let (own, other) = if entry.add {
            (&mut buf.adds, &buf.removes)
        } else {
            (&mut buf.removes, &buf.adds)
        };
        let mut own = made(py, own, entry.add)?.borrow_mut();
        let mut other = other.as_ref().map(|h| h.bind(py).borrow_mut());
        let old = own.put(other.as_deref_mut().map(|h| &mut **h), &new, true)?;
        Ok(old.and_then(|o| o.entry))
    }

    /// The add_members events (made empty on demand: reading them changes nothing).
    #[getter]
    fn adds<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, Held>> {
        made(py, &mut self.adds, true)
    }

    /// The remove_members events (made empty on demand).
    #[getter]
    fn removes<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, Held>> {
        made(py, &mut self.removes, false)
    }

    /// Every held uid's entry (a copy: adds, then removes).
    #[getter]
    fn entries<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for held in self.held(py) {
            for (uid, entry) in held.entries(py)?.iter() {
                out.set_item(uid, entry)?;
            }
        }
        Ok(out)
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.held(py).map(|h| h.len()).sum()
    }

    fn __contains__(&self, py: Python<'_>, uid: &str) -> bool {
        self.held(py).any(|h| h.holds(uid))
    }

    // per action, a lower bound of its members' bytes in a body (len(uid) never exceeds the
    // escaped UTF-8): above max_payload_bytes the action surely fills one body
    #[getter]
    fn add_bytes(&self, py: Python<'_>) -> usize {
        est_bytes(py, &self.adds)
    }

    #[getter]
    fn remove_bytes(&self, py: Python<'_>) -> usize {
        est_bytes(py, &self.removes)
    }

    #[getter]
    fn est_bytes(&self, py: Python<'_>) -> usize {
        self.add_bytes(py) + self.remove_bytes(py)
    }

    fn has_full_body(&self, py: Python<'_>, max_bytes: usize) -> bool {
        self.add_bytes(py) >= max_bytes || self.remove_bytes(py) >= max_bytes
    }

    /// Forgets events of lost partitions (redelivered to the new owner), unsettled; returns
    /// (events, value bytes) forgotten.
    fn drop_partitions(&self, py: Python<'_>, lost: Partitions) -> (usize, u64) {
        let mut dropped = (0, 0);
        for held in [&self.adds, &self.removes].into_iter().flatten() {
            let (events, bytes) = held.bind(py).borrow_mut().drop_within(py, &lost);
            dropped = (dropped.0 + events, dropped.1 + bytes);
        }
        dropped
    }

    fn holds_any(&self, py: Python<'_>, partitions: Partitions) -> bool {
        self.held(py).any(|h| h.holds_within(py, &partitions))
    }
}

impl CohortBuffer {
    /// The actions made so far, borrowed to read.
    fn held<'py>(&self, py: Python<'py>) -> impl Iterator<Item = PyRef<'py, Held>> + use<'_, 'py> {
        [&self.adds, &self.removes]
            .into_iter()
            .flatten()
            .map(move |h| h.bind(py).borrow())
    }
}

/// The action in `slot`, made empty first if it has none yet.
fn made<'py>(
    py: Python<'py>,
    slot: &mut Option<Py<Held>>,
    add: bool,
) -> PyResult<Bound<'py, Held>> {
    if let Some(held) = slot {
        return Ok(held.bind(py).clone());
    }
    let held = Bound::new(py, Held::new(add))?;
    *slot = Some(held.clone().unbind());
    Ok(held)
}

fn est_bytes(py: Python<'_>, slot: &Option<Py<Held>>) -> usize {
    slot.as_ref().map_or(0, |h| h.bind(py).borrow().est_bytes())
}

/// A cohort's open buffer as ingest updates it: borrowed once per ingest call.
pub struct BufferView<'py> {
    buf: PyRefMut<'py, CohortBuffer>,
    adds: Option<PyRefMut<'py, Held>>,
    removes: Option<PyRefMut<'py, Held>>,
    /// whether the buffer's name is one Cohort Sync takes (event::Schema::name_allowed)
    pub name_allowed: bool,
}

impl<'py> BufferView<'py> {
    pub fn open(buf: &Bound<'py, CohortBuffer>, name_allowed: impl Fn(&str) -> bool) -> Self {
        let py = buf.py();
        let buf = buf.borrow_mut();
        BufferView {
            adds: buf.adds.as_ref().map(|h| h.bind(py).borrow_mut()),
            removes: buf.removes.as_ref().map(|h| h.bind(py).borrow_mut()),
            name_allowed: name_allowed(&buf.name),
            buf,
        }
    }

    pub fn name(&self) -> &str {
        &self.buf.name
    }

    /// Holds one event; returns what it superseded (already settled).
    pub fn put(&mut self, new: &NewEvent<'_, 'py>, add: bool) -> PyResult<Option<Superseded>> {
        let BufferView {
            buf, adds, removes, ..
        } = self;
        let (own, other) = if add {
            (adds, removes)
        } else {
            (removes, adds)
        };
        if own.is_none() {
            let slot = if add { &mut buf.adds } else { &mut buf.removes };
            *own = Some(made(new.range.py(), slot, add)?.borrow_mut());
        }
        let own = own.as_mut().expect("made above");
        own.put(other.as_deref_mut().map(|h| &mut **h), new, false)
    }

    /// The cohort's name and description follow its latest event; `name` is one
    /// Schema::name_allowed took.
    pub fn label(&mut self, name: &str, description: Option<&str>) {
        if self.buf.name != name {
            self.buf.name = name.to_owned();
            self.name_allowed = true;
        }
        if let Some(description) = description {
            if self.buf.description.as_deref() != Some(description) {
                self.buf.description = Some(description.to_owned());
            }
        }
    }
}
