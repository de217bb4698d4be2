//! Held events as Rust data: no Python object exists per buffered event.
//!
//! A `Store` keeps events in arrival order, their uid, value and key bytes in one arena, and
//! the ranges (range.rs) they settle in a small table (events of one run share one range).
//! `Held` is one action of a cohort's buffer (buffer.rs `CohortBuffer`): a store with a
//! uid index, the latest event per uid. `Members` is what one request body carries: the events
//! it applies, settled together once the API accepted them. Passes over a body read contiguous
//! memory, and freeing one is a few large frees, not one per event.

use hashbrown::{DefaultHashBuilder, HashTable};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use std::hash::BuildHasher;

use crate::body::{self, Packed, MEMBER_OVERHEAD};
use crate::entry::Entry;
use crate::range::{Partitions, PendingRange};
/// A buffer's store is rewritten once its garbage (superseded or taken events, and their bytes)
/// outweighs what is live and exceeds these: amortised O(1) per put, memory proportional to
/// what is held.
const SLACK_BYTES: usize = 1 << 16;
const SLACK_EVENTS: usize = 1 << 10;

#[derive(Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

const NO_KEY: Span = Span {
    start: 0,
    len: u32::MAX,
};

#[derive(Clone, Copy)]
struct Event {
    uid: Span,
    value: Span,
    key: Span, // NO_KEY: the message had none
    ts: i64,
    offset: i64,
    range: u32,     // index into Store::ranges
    uid_chars: u32, // the uid's length as Python's len() counts it
    live: bool,     // false: superseded or taken (a tombstone until the store compacts)
}

impl Event {
    fn member_bytes(&self) -> usize {
        self.uid_chars as usize + MEMBER_OVERHEAD
    }

    fn arena_bytes(&self) -> usize {
        let key = if self.key.len == NO_KEY.len {
            0
        } else {
            self.key.len
        };
        (self.uid.len + self.value.len + key) as usize
    }
}

/// One event as ingest hands it over.
pub struct NewEvent<'a, 'py> {
    pub uid: &'a str,
    pub uid_chars: usize,
    pub value: &'a [u8],
    pub key: Option<&'a [u8]>,
    pub ts: i64,
    pub offset: i64,
    pub range: &'a Bound<'py, PendingRange>,
}

#[derive(Default)]
struct Store {
    events: Vec<Event>,
    arena: Vec<u8>,
    ranges: Vec<Py<PendingRange>>,
}

impl Store {
    fn bytes(&self, span: Span) -> &[u8] {
        let start = span.start as usize;
        &self.arena[start..start + span.len as usize]
    }

    fn uid(&self, event: &Event) -> &str {
        // SAFETY: uid spans are only ever written from a &str (make, copy)
        unsafe { std::str::from_utf8_unchecked(self.bytes(event.uid)) }
    }

    fn key(&self, event: &Event) -> Option<&[u8]> {
        (event.key.len != NO_KEY.len).then(|| self.bytes(event.key))
    }

    fn write(&mut self, bytes: &[u8]) -> Span {
        let start = u32::try_from(self.arena.len()).expect("a buffer holds under 4 GiB");
        self.arena.extend_from_slice(bytes);
        Span {
            start,
            len: bytes.len() as u32,
        }
    }

    /// The index of `range` in the table: consecutive events mostly share one.
    fn range_index(&mut self, range: &Bound<'_, PendingRange>) -> u32 {
        match self.ranges.last() {
            Some(last) if last.is(range) => {}
            _ => self.ranges.push(range.clone().unbind()),
        }
        (self.ranges.len() - 1) as u32
    }

    /// Writes a new event's bytes and range; the caller places the event.
    fn make(&mut self, new: &NewEvent<'_, '_>) -> Event {
        Event {
            uid: self.write(new.uid.as_bytes()),
            value: self.write(new.value),
            key: new.key.map_or(NO_KEY, |k| self.write(k)),
            ts: new.ts,
            offset: new.offset,
            range: self.range_index(new.range),
            uid_chars: new.uid_chars as u32,
            live: true,
        }
    }

    /// Appends a copy of `from`'s event (its bytes and range come along).
    fn copy(&mut self, py: Python<'_>, from: &Store, event: &Event) {
        let copied = Event {
            uid: self.write(from.bytes(event.uid)),
            value: self.write(from.bytes(event.value)),
            key: from.key(event).map_or(NO_KEY, |k| self.write(k)),
            range: self.range_index(from.ranges[event.range as usize].bind(py)),
            ..*event
        };
        self.events.push(copied);
    }

    fn live(&self) -> impl Iterator<Item = &Event> {
        self.events.iter().filter(|e| e.live)
    }

    fn range<'py>(&self, py: Python<'py>, event: &Event) -> &Bound<'py, PendingRange> {
        self.ranges[event.range as usize].bind(py)
    }

    /// The event as an Entry (entry.rs), for Python callers and tests.
    fn entry(&self, py: Python<'_>, event: &Event, add: bool) -> PyResult<Py<Entry>> {
        let entry = Entry {
            add,
            value: PyBytes::new(py, self.bytes(event.value)).unbind(),
            key: self.key(event).map(|k| PyBytes::new(py, k).unbind()),
            offset: event.offset,
            ts_ms: event.ts,
            range: self.range(py, event).clone().unbind(),
            size: event.value.len as usize,
        };
        Py::new(py, entry)
    }

    /// Per range, whether its partition is in `partitions`.
    fn ranges_in(&self, py: Python<'_>, partitions: &Partitions) -> Vec<bool> {
        self.ranges
            .iter()
            .map(|r| r.bind(py).borrow().within(partitions))
            .collect()
    }
}

/// One action of a cohort's buffer: the latest event per uid, in arrival order. The Python
/// object is a pointer: a burst of cohorts spreads its small objects over pymalloc's arenas,
/// which a few leftovers then pin, while the state (`Events`) lives in the malloc heap that
/// heap.release_heap trims.
#[pyclass(module = "streamer._fastpath")]
pub struct Held(Box<Events>);

impl std::ops::Deref for Held {
    type Target = Events;

    fn deref(&self) -> &Events {
        &self.0
    }
}

impl std::ops::DerefMut for Held {
    fn deref_mut(&mut self) -> &mut Events {
        &mut self.0
    }
}

/// What `Held` holds.
#[derive(Default)]
pub struct Events {
    add: bool, // which action: add_members (true) or remove_members
    store: Store,
    index: HashTable<u32>, // positions in store.events of the live events, by uid
    hasher: DefaultHashBuilder,
    live: usize,
    live_arena: usize, // arena bytes of live events (the rest is garbage)
    est_bytes: usize,  // sum of live members' bytes in a body beyond the envelope
    value_bytes: u64,  // sum of live events' value sizes
}

/// What a put superseded: its value size (its range is already acknowledged).
pub struct Superseded {
    pub size: u64,
    pub entry: Option<Py<Entry>>, // asked for by Python callers
}

impl Events {
    fn find(&self, uid: &str) -> Option<usize> {
        let hash = self.hasher.hash_one(uid);
        let store = &self.store;
        self.index
            .find(hash, |&p| store.uid(&store.events[p as usize]) == uid)
            .map(|&p| p as usize)
    }

    fn index_last(&mut self) {
        let position = (self.store.events.len() - 1) as u32;
        let store = &self.store;
        let hasher = &self.hasher;
        let hash = hasher.hash_one(store.uid(&store.events[position as usize]));
        self.index.insert_unique(hash, position, |&p| {
            hasher.hash_one(store.uid(&store.events[p as usize]))
        });
    }

    fn count_in(&mut self, event: &Event) {
        self.live += 1;
        self.live_arena += event.arena_bytes();
        self.est_bytes += event.member_bytes();
        self.value_bytes += event.value.len as u64;
    }

    fn count_out(&mut self, event: &Event) {
        self.live -= 1;
        self.live_arena -= event.arena_bytes();
        self.est_bytes -= event.member_bytes();
        self.value_bytes -= event.value.len as u64;
    }

    /// Removes the live event of `uid`; returns it (its bytes stay readable until compaction).
    fn remove(&mut self, uid: &str) -> Option<Event> {
        let hash = self.hasher.hash_one(uid);
        let store = &self.store;
        let found = self
            .index
            .find_entry(hash, |&p| store.uid(&store.events[p as usize]) == uid)
            .ok()?;
        let (position, _) = found.remove();
        let event = &mut self.store.events[position as usize];
        event.live = false;
        let event = *event;
        self.count_out(&event);
        Some(event)
    }

    /// Superseded events leave garbage behind; rewrite the store once garbage outweighs what
    /// is live, so memory stays proportional to the events held (amortised O(1) per put).
    fn compact_if_wasteful(&mut self, py: Python<'_>) {
        let dead_events = self.store.events.len() - self.live;
        let dead_bytes = self.store.arena.len() - self.live_arena;
        if (dead_bytes > SLACK_BYTES && dead_bytes > self.live_arena)
            || (dead_events > SLACK_EVENTS && dead_events > self.live)
        {
            self.rebuild(py, |_| true);
        }
    }

    /// Holds a copy of `from`'s event (a uid this action does not hold yet).
    fn hold_copy(&mut self, py: Python<'_>, from: &Store, event: &Event) {
        self.store.copy(py, from, event);
        let copied = *self.store.events.last().expect("just pushed");
        self.count_in(&copied);
        self.index_last();
    }

    /// Keeps only the live events `keep` accepts, in order, in a fresh store.
    fn rebuild(&mut self, py: Python<'_>, mut keep: impl FnMut(&Event) -> bool) {
        let old = std::mem::take(&mut self.store);
        *self = Events {
            add: self.add,
            hasher: std::mem::take(&mut self.hasher),
            ..Events::default()
        };
        for event in old.live().filter(|e| keep(e)) {
            self.hold_copy(py, &old, event);
        }
    }

    /// Holds one event of this action; `other` is the buffer's other action (None: not made
    /// yet, buffer.rs). The event it supersedes (this uid's previous event, of either action)
    /// is settled at once: its winner is held.
    pub fn put(
        &mut self,
        other: Option<&mut Events>,
        new: &NewEvent<'_, '_>,
        want_entry: bool,
    ) -> PyResult<Option<Superseded>> {
        let py = new.range.py();
        self.compact_if_wasteful(py);
        if let Some(position) = self.find(new.uid) {
            // the same action again: the later event wins, in the earlier one's place
            let old = self.store.events[position];
            let entry = self.superseded(py, &old, want_entry)?;
            let event = self.store.make(new);
            self.count_out(&old);
            self.count_in(&event);
            self.store.events[position] = event;
            return Ok(Some(entry));
        }
        let event = self.store.make(new);
        self.store.events.push(event);
        self.count_in(&event);
        self.index_last();
        let Some(other) = other.filter(|o| o.live > 0) else {
            return Ok(None);
        };
        other.compact_if_wasteful(py);
        match other.remove(new.uid) {
            // the uid moved from the other action
            Some(old) => Ok(Some(other.superseded(py, &old, want_entry)?)),
            None => Ok(None),
        }
    }

    fn superseded(&self, py: Python<'_>, old: &Event, want_entry: bool) -> PyResult<Superseded> {
        self.store.range(py, old).borrow_mut().ack(1);
        let entry = if want_entry {
            Some(self.store.entry(py, old, self.add)?)
        } else {
            None
        };
        Ok(Superseded {
            size: old.value.len as u64,
            entry,
        })
    }

    /// Moves the live events into bodies: see `seal` below.
    fn take_bodies(
        &mut self,
        py: Python<'_>,
        head: &[u8],
        tail: &[u8],
        max_bytes: usize,
        keep_last_from: usize,
    ) -> (Vec<(Vec<u8>, Members)>, Option<Members>) {
        let live: Vec<Event> = self.store.live().copied().collect();
        let Packed {
            mut bodies,
            too_large,
        } = body::pack(
            head,
            tail,
            live.iter().map(|e| self.store.uid(e)),
            max_bytes,
        );
        let mut taken = vec![true; live.len()];
        if keep_last_from > 0 && bodies.len() >= keep_last_from {
            let (_, last) = bodies.pop().expect("at least one body");
            for &i in &last {
                taken[i] = false;
            }
        }
        let members = |indices: &[usize]| {
            let mut m = Members::new(self.add);
            for &i in indices {
                m.store.copy(py, &self.store, &live[i]);
            }
            m
        };
        let sent = bodies
            .into_iter()
            .map(|(data, indices)| (data, members(&indices)))
            .collect();
        let refused = (!too_large.is_empty()).then(|| members(&too_large));
        // rebuild visits the live events in the order of `live`
        let mut position = 0;
        self.rebuild(py, |_| {
            position += 1;
            !taken[position - 1]
        });
        (sent, refused)
    }
}

impl Held {
    pub fn new(add: bool) -> Self {
        Held(Box::new(Events {
            add,
            ..Events::default()
        }))
    }
}

impl Events {
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn holds(&self, uid: &str) -> bool {
        self.find(uid).is_some()
    }

    pub fn est_bytes(&self) -> usize {
        self.est_bytes
    }

    /// Forgets the events of these partitions, unsettled; returns (events, value bytes).
    pub fn drop_within(&mut self, py: Python<'_>, partitions: &Partitions) -> (usize, u64) {
        let lost = self.store.ranges_in(py, partitions);
        let (live, value_bytes) = (self.live, self.value_bytes);
        if lost.iter().any(|&l| l) {
            self.rebuild(py, |e| !lost[e.range as usize]);
        }
        (live - self.live, value_bytes - self.value_bytes)
    }

    pub fn holds_within(&self, py: Python<'_>, partitions: &Partitions) -> bool {
        let within = self.store.ranges_in(py, partitions);
        self.store.live().any(|e| within[e.range as usize])
    }

    /// uid -> Entry of every held event, in order.
    pub fn entries<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for event in self.store.live() {
            out.set_item(
                self.store.uid(event),
                self.store.entry(py, event, self.add)?,
            )?;
        }
        Ok(out)
    }
}

#[pymethods]
impl Held {
    #[getter]
    fn add(&self) -> bool {
        self.add
    }

    fn __len__(&self) -> usize {
        self.live
    }

    fn __contains__(&self, uid: &str) -> bool {
        self.holds(uid)
    }

    /// A lower bound of the members' bytes in a body (len(uid) never exceeds its escaped UTF-8).
    #[getter(est_bytes)]
    fn py_est_bytes(&self) -> usize {
        self.est_bytes
    }

    /// uid -> Entry of every held event, in order.
    #[pyo3(name = "entries")]
    fn py_entries<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.entries(py)
    }

    /// Packs the held events into bodies of at most max_bytes (`head` + members + `tail`), in
    /// order, and takes them out: (body, members) per body, and the members that fit in no body
    /// on their own (or None). The last body stays held when there are at least
    /// `keep_last_from` bodies (0: never), to be filled by later events.
    #[allow(clippy::type_complexity)]
    fn seal<'py>(
        &mut self,
        py: Python<'py>,
        head: &[u8],
        tail: &[u8],
        max_bytes: usize,
        keep_last_from: usize,
    ) -> PyResult<(Vec<(Bound<'py, PyBytes>, Members)>, Option<Members>)> {
        let (bodies, refused) = self.take_bodies(py, head, tail, max_bytes, keep_last_from);
        let bodies = bodies
            .into_iter()
            .map(|(data, members)| (PyBytes::new(py, &data), members))
            .collect();
        Ok((bodies, refused))
    }

    /// Forgets the events of these partitions (redelivered to their new owner), unsettled;
    /// returns (events, value bytes) forgotten.
    fn drop_partitions(&mut self, py: Python<'_>, partitions: Partitions) -> (usize, u64) {
        self.drop_within(py, &partitions)
    }

    fn holds_any(&self, py: Python<'_>, partitions: Partitions) -> bool {
        self.holds_within(py, &partitions)
    }
}

/// The events one request body applies (or one delivery dead-letters), in body order.
#[pyclass(frozen, module = "streamer._fastpath")]
pub struct Members {
    store: Store,
    add: bool,
}

impl Members {
    fn new(add: bool) -> Self {
        Members {
            store: Store::default(),
            add,
        }
    }

    fn slice(&self, py: Python<'_>, events: &[Event]) -> Members {
        let mut out = Members::new(self.add);
        for event in events {
            out.store.copy(py, &self.store, event);
        }
        out
    }
}

#[pymethods]
impl Members {
    fn __len__(&self) -> usize {
        self.store.events.len()
    }

    #[getter]
    fn add(&self) -> bool {
        self.add
    }

    /// Sum of the events' value sizes.
    #[getter]
    fn value_bytes(&self) -> u64 {
        self.store.events.iter().map(|e| e.value.len as u64).sum()
    }

    fn uids(&self) -> Vec<&str> {
        self.store
            .events
            .iter()
            .map(|e| self.store.uid(e))
            .collect()
    }

    /// The events as Entry objects, in order.
    fn entries<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let entries = self
            .store
            .events
            .iter()
            .map(|e| self.store.entry(py, e, self.add))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, entries)
    }

    /// The request body carrying exactly these members.
    fn body<'py>(&self, py: Python<'py>, head: &[u8], tail: &[u8]) -> Bound<'py, PyBytes> {
        let data = body::join(
            head,
            tail,
            self.store.events.iter().map(|e| self.store.uid(e)),
        );
        PyBytes::new(py, &data)
    }

    /// The first half and the rest (a request split after a 413 or a 400 about members).
    fn halves(&self, py: Python<'_>) -> (Members, Members) {
        let (first, second) = self.store.events.split_at(self.store.events.len() / 2);
        (self.slice(py, first), self.slice(py, second))
    }

    /// These events are done (applied by the API, or dead-lettered): each range gets its
    /// events back, one update per range. Returns (events, value bytes).
    fn settle(&self, py: Python<'_>) -> PyResult<(usize, u64)> {
        let mut counts = vec![0i64; self.store.ranges.len()];
        let mut value_bytes = 0;
        for event in &self.store.events {
            counts[event.range as usize] += 1;
            value_bytes += event.value.len as u64;
        }
        for (range, &count) in self.store.ranges.iter().zip(&counts) {
            if count > 0 {
                range.bind(py).borrow_mut().ack(count);
            }
        }
        Ok((self.store.events.len(), value_bytes))
    }

    /// Ages of the events at `now_ms`, for a histogram with these ascending upper bounds in
    /// seconds: (events within each bound, events, sum of the ages in seconds). Event times in
    /// the future (clock skew) count as age 0.
    fn ages(&self, now_ms: f64, bounds: Vec<f64>) -> (Vec<u64>, usize, f64) {
        let mut within = vec![0u64; bounds.len()];
        let mut total_ms = 0.0;
        for event in &self.store.events {
            let age_ms = (now_ms - event.ts as f64).max(0.0);
            total_ms += age_ms;
            let age = age_ms / 1000.0; // compared in seconds, as Histogram.observe() does
            for (count, &bound) in within.iter_mut().zip(&bounds).rev() {
                if age > bound {
                    break; // bounds ascend: no smaller bound holds it either
                }
                *count += 1;
            }
        }
        (within, self.store.events.len(), total_ms / 1000.0)
    }

    /// (topic, partition, offset, key, value) of each event, for its dead letter.
    #[allow(clippy::type_complexity)]
    fn origins<'py>(
        &self,
        py: Python<'py>,
    ) -> Vec<(
        String,
        i64,
        i64,
        Option<Bound<'py, PyBytes>>,
        Bound<'py, PyBytes>,
    )> {
        self.store
            .events
            .iter()
            .map(|e| {
                let (topic, partition) = self.store.range(py, e).borrow().tp.clone();
                let key = self.store.key(e).map(|k| PyBytes::new(py, k));
                let value = PyBytes::new(py, self.store.bytes(e.value));
                (topic, partition, e.offset, key, value)
            })
            .collect()
    }

    fn holds_any(&self, py: Python<'_>, partitions: Partitions) -> bool {
        let within = self.store.ranges_in(py, &partitions);
        self.store.events.iter().any(|e| within[e.range as usize])
    }

    /// Puts these events back into their cohort's buffer (`own`: their action, `other`: the
    /// buffer's other one) after a stopped delivery: those of `released` partitions are dropped
    /// (their new owner has them), those whose uid the buffer holds again are settled (the
    /// later event wins). Returns (events, value bytes) no longer held by either way.
    fn requeue(
        &self,
        py: Python<'_>,
        mut own: PyRefMut<'_, Held>,
        other: PyRef<'_, Held>,
        released: Partitions,
    ) -> PyResult<(usize, u64)> {
        let gone_ranges = self.store.ranges_in(py, &released);
        let (mut events, mut bytes) = (0, 0);
        for event in &self.store.events {
            let uid = self.store.uid(event);
            let dropped = gone_ranges[event.range as usize];
            if dropped || own.find(uid).is_some() || other.find(uid).is_some() {
                if !dropped {
                    self.store.range(py, event).borrow_mut().ack(1);
                }
                events += 1;
                bytes += event.value.len as u64;
                continue;
            }
            own.compact_if_wasteful(py);
            own.hold_copy(py, &self.store, event);
        }
        Ok((events, bytes))
    }
}
