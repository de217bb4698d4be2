//! `Entry`: one held event as Python sees it (the careful path's put, tests). Buffers keep
//! their events as Rust data (store.rs); an Entry is made only when Python asks for one.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::range::PendingRange;

#[pyclass(frozen, get_all, module = "streamer._fastpath")]
pub struct Entry {
    /// enter (add_members) or exit (remove_members)
    pub add: bool,
    /// the Kafka message's value and key
    pub value: Py<PyBytes>,
    pub key: Option<Py<PyBytes>>,
    pub offset: i64,
    /// the event time in epoch ms
    pub ts_ms: i64,
    /// settled when the API applied the change or the DLQ confirmed its letter
    pub range: Py<PendingRange>,
    /// len(value)
    pub size: usize,
}

#[pymethods]
impl Entry {
    #[new]
    #[pyo3(signature = (*, add, value, key, offset, ts_ms, range))]
    fn new(
        add: bool,
        value: Bound<'_, PyBytes>,
        key: Option<Py<PyBytes>>,
        offset: i64,
        ts_ms: i64,
        range: Py<PendingRange>,
    ) -> Self {
        Entry {
            add,
            size: value.as_bytes().len(),
            value: value.unbind(),
            key,
            offset,
            ts_ms,
            range,
        }
    }

    /// The same event: equal fields, and the very same range.
    fn __eq__(&self, py: Python<'_>, other: PyRef<'_, Self>) -> bool {
        let bytes = |b: &Py<PyBytes>| b.bind(py).as_bytes().to_vec();
        self.add == other.add
            && bytes(&self.value) == bytes(&other.value)
            && self.key.as_ref().map(bytes) == other.key.as_ref().map(bytes)
            && self.offset == other.offset
            && self.ts_ms == other.ts_ms
            && self.range.is(&other.range)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Entry(add={}, offset={}, ts_ms={}, size={}, range={})",
            self.add,
            self.offset,
            self.ts_ms,
            self.size,
            self.range.bind(py).borrow().__repr__()
        )
    }
}
