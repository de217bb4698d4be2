//! A cohort's open buffer (streamer/batch.py `CohortBuffer`) as ingest updates it: its two
//! actions (store.rs `Held`), borrowed once per ingest call, and its labels.

use pyo3::intern;
use pyo3::prelude::*;

use crate::event::name_allowed;
use crate::store::{Held, NewEvent, Superseded};

pub struct BufferView<'py> {
    buf: Bound<'py, PyAny>,
    adds: PyRefMut<'py, Held>,
    removes: PyRefMut<'py, Held>,
    pub name: String, // the buffer's name and description, as ingest last set them
    pub description: Option<String>,
    pub name_allowed: bool, // as event::name_allowed says of `name`
}

impl<'py> BufferView<'py> {
    pub fn open(buf: Bound<'py, PyAny>) -> PyResult<Self> {
        let py = buf.py();
        let name: String = buf.getattr(intern!(py, "name"))?.extract()?;
        Ok(BufferView {
            adds: buf.getattr(intern!(py, "adds"))?.extract()?,
            removes: buf.getattr(intern!(py, "removes"))?.extract()?,
            name_allowed: name_allowed(&name),
            name,
            description: buf.getattr(intern!(py, "description"))?.extract()?,
            buf,
        })
    }

    /// Holds one event; returns what it superseded (already settled).
    pub fn put(&mut self, new: &NewEvent<'_, 'py>, add: bool) -> PyResult<Option<Superseded>> {
        if add {
            self.adds.put(&mut self.removes, new, false)
        } else {
            self.removes.put(&mut self.adds, new, false)
        }
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
}
