//! Cohort Sync request bodies: `head` + members joined by commas + `tail`, packed in order
//! close to the size limit and never over it. A member is {"uid":<uid as JSON>}, written as
//! orjson writes it (serde_json escapes the same characters the same way).

const MEMBER_OPEN: &[u8] = b"{\"uid\":";
const MEMBER_CLOSE: &[u8] = b"}";

/// Bodies with the indices of the uids each carries, and the indices of uids that fit in no
/// body on their own.
pub struct Packed {
    pub bodies: Vec<(Vec<u8>, Vec<usize>)>,
    pub too_large: Vec<usize>,
}

fn member(out: &mut Vec<u8>, uid: &str) {
    out.extend_from_slice(MEMBER_OPEN);
    serde_json::to_writer(&mut *out, uid).expect("writing to a Vec cannot fail");
    out.extend_from_slice(MEMBER_CLOSE);
}

fn fresh(head: &[u8], max_bytes: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(max_bytes);
    body.extend_from_slice(head);
    body
}

/// Packs uids into bodies of at most `max_bytes`, filled in order.
pub fn pack<'a>(
    head: &[u8],
    tail: &[u8],
    uids: impl Iterator<Item = &'a str>,
    max_bytes: usize,
) -> Packed {
    let mut packed = Packed {
        bodies: Vec::new(),
        too_large: Vec::new(),
    };
    let mut body = fresh(head, max_bytes);
    let mut carried = Vec::new();
    let mut scratch = Vec::new();
    for (i, uid) in uids.enumerate() {
        scratch.clear();
        member(&mut scratch, uid);
        if head.len() + scratch.len() + tail.len() > max_bytes {
            packed.too_large.push(i);
            continue;
        }
        if !carried.is_empty() && body.len() + 1 + scratch.len() + tail.len() > max_bytes {
            body.extend_from_slice(tail);
            packed.bodies.push((body, std::mem::take(&mut carried)));
            body = fresh(head, max_bytes);
        }
        if !carried.is_empty() {
            body.push(b',');
        }
        body.extend_from_slice(&scratch);
        carried.push(i);
    }
    if !carried.is_empty() {
        body.extend_from_slice(tail);
        packed.bodies.push((body, carried));
    }
    packed
}

/// One body carrying all of `uids` (a part of a body that fitted, so it fits too).
pub fn join<'a>(head: &[u8], tail: &[u8], uids: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let mut body = head.to_vec();
    for (i, uid) in uids.enumerate() {
        if i > 0 {
            body.push(b',');
        }
        member(&mut body, uid);
    }
    body.extend_from_slice(tail);
    body
}
