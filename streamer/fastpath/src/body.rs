//! payload.pack's common case: uids that JSON writes as themselves (ASCII, nothing escaped),
//! packed into bodies in one pass over their bytes.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

const MEMBER_OPEN: &[u8] = b"{\"uid\":\"";
const MEMBER_CLOSE: &[u8] = b"\"}";

/// Packed bodies, each with the number of uids it holds.
pub type Bodies<'py> = Vec<(Bound<'py, PyBytes>, usize)>;

/// Bodies of at most `max_bytes`, each `head` + members joined by commas + `tail`, as
/// (body, number of uids), filled in order; None when some uid is not plain or could not fit a
/// body on its own (streamer/payload.py then packs them one by one).
pub fn pack_plain<'py>(
    head: &[u8],
    tail: &[u8],
    uids: &Bound<'py, PyList>,
    max_bytes: usize,
) -> PyResult<Option<Bodies<'py>>> {
    let py = uids.py();
    let mut bodies = Vec::new();
    let mut body = Vec::with_capacity(max_bytes);
    body.extend_from_slice(head);
    let mut count = 0;
    for uid in uids.iter() {
        let uid = uid.cast_into::<PyString>()?;
        // SAFETY: uid is a live str; the check reads only its header
        if unsafe { pyo3::ffi::PyUnicode_IS_ASCII(uid.as_ptr()) } == 0 {
            return Ok(None);
        }
        let text = uid.to_str()?.as_bytes(); // an ASCII str's own buffer: no copy
        if !text.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\') {
            return Ok(None);
        }
        let member = MEMBER_OPEN.len() + text.len() + MEMBER_CLOSE.len();
        if head.len() + member + tail.len() > max_bytes {
            return Ok(None);
        }
        if count > 0 && body.len() + 1 + member + tail.len() > max_bytes {
            body.extend_from_slice(tail);
            bodies.push((PyBytes::new(py, &body), count));
            body.truncate(head.len());
            count = 0;
        }
        if count > 0 {
            body.push(b',');
        }
        body.extend_from_slice(MEMBER_OPEN);
        body.extend_from_slice(text);
        body.extend_from_slice(MEMBER_CLOSE);
        count += 1;
    }
    if count > 0 {
        body.extend_from_slice(tail);
        bodies.push((PyBytes::new(py, &body), count));
    }
    Ok(Some(bodies))
}
