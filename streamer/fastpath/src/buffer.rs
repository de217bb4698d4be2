//! A cohort's open buffer (streamer/batch.py `CohortBuffer`) as ingest updates it: the latest
//! action per uid wins, and the entry it supersedes is settled at once (its winner is held).
//!
//! The view holds the buffer's two dicts and sums its byte estimates in Rust, writing them back
//! once when the view is finished: per event there is no attribute read or write.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use crate::event::name_allowed;

/// Bytes one member adds to a body beyond its uid: {"uid":""} plus the separating comma.
pub const MEMBER_OVERHEAD: usize = 11;
/// Entry fields (streamer/batch.py `Entry`).
const RANGE: usize = 3;
const SIZE: usize = 6;

pub struct BufferView<'py> {
    buf: Bound<'py, PyAny>,
    adds: Bound<'py, PyDict>,
    removes: Bound<'py, PyDict>,
    add_bytes: i64, // changes to the buffer's estimates, written back by finish()
    remove_bytes: i64,
    pub name: String, // the buffer's name and description, as ingest last set them
    pub description: Option<String>,
    pub name_allowed: bool, // as event::name_allowed says of `name`
}

impl<'py> BufferView<'py> {
    pub fn open(buf: Bound<'py, PyAny>) -> PyResult<Self> {
        let py = buf.py();
        let description = buf.getattr(intern!(py, "description"))?;
        let name: String = buf.getattr(intern!(py, "name"))?.extract()?;
        Ok(BufferView {
            adds: buf.getattr(intern!(py, "adds"))?.cast_into()?,
            removes: buf.getattr(intern!(py, "removes"))?.cast_into()?,
            name_allowed: name_allowed(&name),
            name,
            description: description.extract()?,
            add_bytes: 0,
            remove_bytes: 0,
            buf,
        })
    }

    /// Holds one event; returns the entry it superseded (already settled). `uid_chars` is the
    /// uid's length in characters, as Python's len() counts it.
    pub fn put(
        &mut self,
        uid: &Bound<'py, PyString>,
        uid_chars: usize,
        entry: &Bound<'py, PyTuple>,
        add: bool,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let (own, other) = if add {
            (&self.adds, &self.removes)
        } else {
            (&self.removes, &self.adds)
        };
        let old = set_default(own, uid, entry)?;
        if !old.is(entry) {
            // the same action again: the later event wins
            own.set_item(uid, entry)?;
            settle(&old)?;
            return Ok(Some(old));
        }
        let size = (uid_chars + MEMBER_OVERHEAD) as i64;
        let moved = if other.is_empty() {
            None
        } else {
            pop(other, uid)?
        };
        let (grows, shrinks) = if add {
            (&mut self.add_bytes, &mut self.remove_bytes)
        } else {
            (&mut self.remove_bytes, &mut self.add_bytes)
        };
        *grows += size;
        if let Some(moved) = &moved {
            // the uid moved from the other action
            *shrinks -= size;
            settle(moved)?;
        }
        Ok(moved)
    }

    /// A name event::name_allowed took.
    pub fn set_name(&mut self, name: &str) -> PyResult<()> {
        self.buf.setattr(intern!(self.buf.py(), "name"), name)?;
        self.name = name.to_owned();
        self.name_allowed = true;
        Ok(())
    }

    pub fn set_description(&mut self, description: &str) -> PyResult<()> {
        self.buf
            .setattr(intern!(self.buf.py(), "description"), description)?;
        self.description = Some(description.to_owned());
        Ok(())
    }

    /// Writes the byte estimates back to the buffer.
    pub fn finish(self) -> PyResult<()> {
        let py = self.buf.py();
        for (attr, delta) in [
            (intern!(py, "add_bytes"), self.add_bytes),
            (intern!(py, "remove_bytes"), self.remove_bytes),
        ] {
            if delta != 0 {
                let now: i64 = self.buf.getattr(attr)?.extract()?;
                self.buf.setattr(attr, now + delta)?;
            }
        }
        Ok(())
    }
}

/// The size of an entry's message value.
pub fn entry_size(entry: &Bound<'_, PyAny>) -> PyResult<u64> {
    entry.get_item(SIZE)?.extract()
}

/// An entry left the buffer without a request: one event of its range is done.
fn settle(entry: &Bound<'_, PyAny>) -> PyResult<()> {
    acknowledge(&entry.get_item(RANGE)?, 1)
}

/// These entries' events are done (applied by the API, or dead-lettered): one pass over them,
/// one update per run of entries of one range (a body's entries come from few ranges, in
/// runs). Returns the sum of their value sizes.
pub fn settle_all(entries: &Bound<'_, PyList>) -> PyResult<u64> {
    let mut size = 0;
    let mut run: Option<(Bound<'_, PyAny>, i64)> = None;
    for entry in entries.iter() {
        let entry = entry.cast_into::<PyTuple>()?;
        size += entry.get_item(SIZE)?.extract::<u64>()?;
        let rng = entry.get_item(RANGE)?;
        match &mut run {
            Some((current, count)) if current.is(&rng) => *count += 1,
            _ => {
                if let Some((done, count)) = run.replace((rng, 1)) {
                    acknowledge(&done, count)?;
                }
            }
        }
    }
    if let Some((done, count)) = run {
        acknowledge(&done, count)?;
    }
    Ok(size)
}

/// PendingRange.ack(count), without the method call.
fn acknowledge(rng: &Bound<'_, PyAny>, count: i64) -> PyResult<()> {
    let pending = intern!(rng.py(), "pending");
    let left: i64 = rng.getattr(pending)?.extract()?;
    rng.setattr(pending, left - count)
}

/// dict.setdefault: one hash lookup for a uid new to this action.
fn set_default<'py>(
    dict: &Bound<'py, PyDict>,
    key: &Bound<'py, PyString>,
    value: &Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: all three pointers are live objects held by the caller; the result is a borrowed
    // reference (or NULL with an exception set), which from_borrowed_ptr_or_err increfs.
    unsafe {
        let found = PyDict_SetDefault(dict.as_ptr(), key.as_ptr(), value.as_ptr());
        Bound::from_borrowed_ptr_or_err(dict.py(), found)
    }
}

extern "C" {
    // CPython's stable C API; pyo3::ffi does not declare it
    fn PyDict_SetDefault(
        dict: *mut pyo3::ffi::PyObject,
        key: *mut pyo3::ffi::PyObject,
        default: *mut pyo3::ffi::PyObject,
    ) -> *mut pyo3::ffi::PyObject;
}

fn pop<'py>(
    dict: &Bound<'py, PyDict>,
    key: &Bound<'py, PyString>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let found = dict.get_item(key)?;
    if found.is_some() {
        dict.del_item(key)?;
    }
    Ok(found)
}
