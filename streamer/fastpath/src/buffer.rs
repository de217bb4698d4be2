//! `CohortBuffer`: the coalesced changes of one cohort that are not being sent yet. Per action
//! (store.rs `Held`), the latest event per uid, so a seal of one action never walks the other's
//! events; and the cohort's labels, which follow its latest event. When it is due and how much
//! of it goes is Python's policy (streamer/batch.py, streamer/seal.py).

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::entry::Entry;
use crate::range::Partitions;
use crate::store::{Held, NewEvent, Superseded};

#[pyclass(module = "streamer._fastpath")]
pub struct CohortBuffer {
    #[pyo3(get)]
    cohort_id: String,
    #[pyo3(get, set)]
    pub name: String,
    #[pyo3(get, set)]
    pub description: Option<String>,
    #[pyo3(get)]
    adds: Py<Held>,
    #[pyo3(get)]
    removes: Py<Held>,
    /// monotonic time of the oldest event held: linger counts from it
    #[pyo3(get, set)]
    opened_at: f64,
}

#[pymethods]
impl CohortBuffer {
    #[new]
    fn new(py: Python<'_>, cohort_id: String, opened_at: f64) -> PyResult<Self> {
        Ok(CohortBuffer {
            name: cohort_id.clone(), // until an event names it
            cohort_id,
            description: None,
            adds: Py::new(py, Held::new(true))?,
            removes: Py::new(py, Held::new(false))?,
            opened_at,
        })
    }

    /// Holds one event; returns the entry it superseded, which is settled now. (The ingest loop
    /// does the same per event: lib.rs.)
    fn put(
        &self,
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
        let (mut own, mut other) = self.actions(py, entry.add);
        let old = own.put(&mut other, &new, true)?;
        Ok(old.and_then(|o| o.entry))
    }

    /// Every held uid's entry (a copy: adds, then removes).
    #[getter]
    fn entries<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = self.adds.bind(py).borrow().entries(py)?;
        for (uid, entry) in self.removes.bind(py).borrow().entries(py)?.iter() {
            out.set_item(uid, entry)?;
        }
        Ok(out)
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.adds.bind(py).borrow().len() + self.removes.bind(py).borrow().len()
    }

    fn __contains__(&self, py: Python<'_>, uid: &str) -> bool {
        self.adds.bind(py).borrow().holds(uid) || self.removes.bind(py).borrow().holds(uid)
    }

    // per action, a lower bound of its members' bytes in a body (len(uid) never exceeds the
    // escaped UTF-8): above max_payload_bytes the action surely fills one body
    #[getter]
    fn add_bytes(&self, py: Python<'_>) -> usize {
        self.adds.bind(py).borrow().est_bytes()
    }

    #[getter]
    fn remove_bytes(&self, py: Python<'_>) -> usize {
        self.removes.bind(py).borrow().est_bytes()
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
        let (add_events, add_bytes) = self.adds.bind(py).borrow_mut().drop_within(py, &lost);
        let (remove_events, remove_bytes) =
            self.removes.bind(py).borrow_mut().drop_within(py, &lost);
        (add_events + remove_events, add_bytes + remove_bytes)
    }

    fn holds_any(&self, py: Python<'_>, partitions: Partitions) -> bool {
        self.adds.bind(py).borrow().holds_within(py, &partitions)
            || self.removes.bind(py).borrow().holds_within(py, &partitions)
    }
}

impl CohortBuffer {
    /// (the action `add` picks, the other one), borrowed to change.
    fn actions<'py>(
        &self,
        py: Python<'py>,
        add: bool,
    ) -> (PyRefMut<'py, Held>, PyRefMut<'py, Held>) {
        let (adds, removes) = (
            self.adds.bind(py).borrow_mut(),
            self.removes.bind(py).borrow_mut(),
        );
        if add {
            (adds, removes)
        } else {
            (removes, adds)
        }
    }
}

/// A cohort's open buffer as ingest updates it: borrowed once per ingest call.
pub struct BufferView<'py> {
    buf: PyRefMut<'py, CohortBuffer>,
    adds: PyRefMut<'py, Held>,
    removes: PyRefMut<'py, Held>,
    /// whether the buffer's name is one Cohort Sync takes (event::Schema::name_allowed)
    pub name_allowed: bool,
}

impl<'py> BufferView<'py> {
    pub fn open(buf: &Bound<'py, CohortBuffer>, name_allowed: impl Fn(&str) -> bool) -> Self {
        let py = buf.py();
        let buf = buf.borrow_mut();
        BufferView {
            adds: buf.adds.bind(py).borrow_mut(),
            removes: buf.removes.bind(py).borrow_mut(),
            name_allowed: name_allowed(&buf.name),
            buf,
        }
    }

    pub fn name(&self) -> &str {
        &self.buf.name
    }

    /// Holds one event; returns what it superseded (already settled).
    pub fn put(&mut self, new: &NewEvent<'_, 'py>, add: bool) -> PyResult<Option<Superseded>> {
        if add {
            self.adds.put(&mut self.removes, new, false)
        } else {
            self.removes.put(&mut self.adds, new, false)
        }
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
