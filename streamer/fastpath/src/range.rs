//! `PendingRange`: events of one partition from one consumed batch, done when `pending` reaches
//! zero (streamer/offsets.py keeps them in offset order and decides the commit watermark).
//!
//! The type lives here, not in Python, so the buffers that settle ranges (store.rs) hold them
//! as typed references and settle them through `ack`, without reading Python attributes.

use std::collections::HashSet;

use pyo3::prelude::*;

/// (topic, partition), as Python passes sets of them.
pub type Partitions = HashSet<(String, i64)>;

#[pyclass(module = "streamer._fastpath")]
pub struct PendingRange {
    #[pyo3(get)]
    pub tp: (String, i64),
    #[pyo3(get, set)]
    pub first: i64,
    #[pyo3(get, set)]
    pub last: i64,
    /// events not settled yet: only ever falls once the batch is ingested
    #[pyo3(get, set)]
    pub pending: i64,
    /// events consumed in it
    #[pyo3(get, set)]
    pub count: i64,
}

#[pymethods]
impl PendingRange {
    #[new]
    fn new(tp: (String, i64), first: i64, last: i64, pending: i64) -> Self {
        PendingRange {
            tp,
            first,
            last,
            pending,
            count: pending,
        }
    }

    /// `count` of its events are done (applied by the API, superseded, or dead-lettered).
    #[pyo3(signature = (count = 1))]
    pub fn ack(&mut self, count: i64) {
        self.pending -= count;
    }

    pub fn __repr__(&self) -> String {
        let (topic, partition) = &self.tp;
        format!(
            "PendingRange({topic:?}[{partition}] {}..={}, {} of {} pending)",
            self.first, self.last, self.pending, self.count
        )
    }
}

impl PendingRange {
    pub fn within(&self, partitions: &Partitions) -> bool {
        partitions.contains(&self.tp)
    }
}
