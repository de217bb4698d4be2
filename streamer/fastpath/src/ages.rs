//! The event-age histogram's share of a delivered body: how old each event is when the API
//! accepted it, counted into buckets without one Python object per event.

use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

/// Entry field (streamer/batch.py `Entry`): the event time in epoch ms.
const EVENT_TIME: usize = 2;

/// Per bucket bound (seconds), how many entries are at most that old at `now_ms`; with the
/// number of entries and the sum of their ages in seconds. An event time after `now_ms` (a
/// producer clock ahead of ours) counts as age 0.
pub fn age_counts(
    entries: &Bound<'_, PyList>,
    now_ms: f64,
    bounds_s: &[f64],
) -> PyResult<(Vec<u64>, u64, f64)> {
    // age <= bound exactly when the event time is at or after now - bound
    let oldest: Vec<f64> = bounds_s.iter().map(|b| now_ms - b * 1000.0).collect();
    let mut counts = vec![0; bounds_s.len()];
    let mut sum_ms = 0.0;
    for entry in entries.iter() {
        let entry = entry.cast_into::<PyTuple>()?;
        // epoch ms stay below 2^53: exact as f64, so compared exactly as Python would
        let at = entry.get_item(EVENT_TIME)?.extract::<i64>()? as f64;
        if at <= now_ms {
            sum_ms += now_ms - at;
        }
        for (count, &limit) in counts.iter_mut().zip(&oldest) {
            *count += u64::from(at >= limit);
        }
    }
    Ok((counts, entries.len() as u64, sum_ms / 1000.0))
}
