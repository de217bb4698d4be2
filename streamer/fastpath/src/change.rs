//! `Change`: the fields of a valid event, as both decoders return them (the native one here,
//! the careful one in streamer/decode.py), so the two are compared field by field.

use pyo3::prelude::*;

#[pyclass(frozen, get_all, module = "streamer._fastpath")]
#[derive(PartialEq)]
pub struct Change {
    /// enter (add_members) or exit (remove_members)
    pub add: bool,
    pub cohort_id: String,
    pub cohort_name: String,
    pub cohort_description: Option<String>,
    pub uid: String,
    /// the event's own time in epoch ms, if it has one
    pub ts_ms: Option<i64>,
}

#[pymethods]
impl Change {
    #[new]
    fn new(
        add: bool,
        cohort_id: String,
        cohort_name: String,
        cohort_description: Option<String>,
        uid: String,
        ts_ms: Option<i64>,
    ) -> Self {
        Change {
            add,
            cohort_id,
            cohort_name,
            cohort_description,
            uid,
            ts_ms,
        }
    }

    fn __eq__(&self, other: PyRef<'_, Self>) -> bool {
        *self == *other
    }

    fn __repr__(&self) -> String {
        format!(
            "Change(add={}, cohort_id={:?}, cohort_name={:?}, cohort_description={:?}, uid={:?}, ts_ms={:?})",
            self.add, self.cohort_id, self.cohort_name, self.cohort_description, self.uid, self.ts_ms
        )
    }
}
