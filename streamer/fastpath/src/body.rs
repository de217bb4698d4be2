//! Cohort Sync request bodies: `head` + members joined by commas + `tail`, packed in order
//! close to the size limit and never over it. A member is {"uid":<uid as JSON>}, written as
//! orjson writes it (serde_json escapes the same characters the same way).

const MEMBER_OPEN: &[u8] = b"{\"uid\":";
const MEMBER_CLOSE: &[u8] = b"}";
const SEPARATOR: u8 = b',';
/// Bytes one member adds to a body beyond its uid's characters: the member's frame, the uid's
/// quotes and the separating comma (more when the uid has characters JSON escapes).
pub const MEMBER_OVERHEAD: usize = MEMBER_OPEN.len() + 2 + MEMBER_CLOSE.len() + 1;

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
            body.push(SEPARATOR);
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
            body.push(SEPARATOR);
        }
        member(&mut body, uid);
    }
    body.extend_from_slice(tail);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &[u8] = b"{\"add\":[";
    const TAIL: &[u8] = b"]}";

    fn members(body: &[u8]) -> Vec<String> {
        let json: serde_json::Value = serde_json::from_slice(body).expect("a body is JSON");
        json["add"]
            .as_array()
            .expect("members")
            .iter()
            .map(|m| m["uid"].as_str().expect("a uid").to_owned())
            .collect()
    }

    #[test]
    fn member_overhead_is_what_a_plain_uid_adds_beyond_its_characters() {
        for uid in ["", "u", "user-00042"] {
            let mut one = Vec::new();
            member(&mut one, uid);
            assert_eq!(one.len() + 1, uid.len() + MEMBER_OVERHEAD); // + its comma
        }
    }

    #[test]
    fn members_are_escaped_like_json_strings() {
        for uid in ["q\"", "back\\slash", "new\nline", "ü", "\u{1}"] {
            let mut one = Vec::new();
            member(&mut one, uid);
            let parsed: serde_json::Value = serde_json::from_slice(&one).expect("JSON");
            assert_eq!(parsed["uid"], uid);
        }
        let mut one = Vec::new();
        member(&mut one, "q\"\n");
        assert_eq!(one, b"{\"uid\":\"q\\\"\\n\"}");
    }

    #[test]
    fn pack_fills_bodies_in_order_and_never_over_the_limit() {
        let uids: Vec<String> = (0..500).map(|i| format!("u{i}")).collect();
        for max_bytes in [40, 64, 100, 1000, 100_000] {
            let packed = pack(HEAD, TAIL, uids.iter().map(String::as_str), max_bytes);
            assert!(packed.too_large.is_empty());
            let mut carried: Vec<usize> = Vec::new();
            for (body, indices) in &packed.bodies {
                assert!(body.len() <= max_bytes, "{} > {max_bytes}", body.len());
                let expected: Vec<&str> = indices.iter().map(|&i| uids[i].as_str()).collect();
                assert_eq!(members(body), expected);
                carried.extend(indices.iter().copied());
            }
            assert_eq!(carried, (0..uids.len()).collect::<Vec<_>>());
            // full: the next member would not have fitted in any body but the last
            for pair in packed.bodies.windows(2) {
                let (body, next) = (&pair[0].0, &uids[pair[1].1[0]]);
                assert!(body.len() + 1 + next.len() + MEMBER_OVERHEAD - 1 > max_bytes);
            }
        }
    }

    #[test]
    fn a_uid_that_fits_no_body_alone_is_set_apart() {
        let uids = ["a", &"x".repeat(100), "b"];
        let packed = pack(HEAD, TAIL, uids.into_iter(), 60);
        assert_eq!(packed.too_large, vec![1]);
        let carried: Vec<usize> = packed.bodies.iter().flat_map(|(_, i)| i.clone()).collect();
        assert_eq!(carried, vec![0, 2]);
    }

    #[test]
    fn nothing_to_pack_is_no_body() {
        let packed = pack(HEAD, TAIL, std::iter::empty(), 100);
        assert!(packed.bodies.is_empty() && packed.too_large.is_empty());
    }

    #[test]
    fn join_writes_the_body_pack_wrote() {
        let uids = ["a", "b\"", "ü"];
        let packed = pack(HEAD, TAIL, uids.into_iter(), 1000);
        assert_eq!(packed.bodies.len(), 1);
        assert_eq!(join(HEAD, TAIL, uids.into_iter()), packed.bodies[0].0);
    }
}
