//! The read planner: coalesce tags into the fewest read requests.
//!
//! Pure and I/O-free. For each area, tags are sorted by address and merged
//! greedily into a request while (a) the hole between the request's end and
//! the next tag is at most `max_gap` unused registers/bits and (b) the
//! request stays within `max_registers`/`max_bits` and the protocol limits
//! (125 registers, 2000 bits per read). For sorted intervals and a length
//! cap, extending the current request as far as possible is optimal in the
//! number of requests (the classic greedy interval-cover argument), which
//! the tests check against brute force on small cases.

use firmware_config::{Area, RequestLimits};

/// Protocol maximum registers per read (FC 3/4), Modbus spec 6.3/6.4.
pub const MAX_REGISTERS: u16 = 125;
/// Protocol maximum bits per read (FC 1/2), Modbus spec 6.1/6.2.
pub const MAX_BITS: u16 = 2000;

/// What the planner needs to know about a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanItem {
    pub area: Area,
    pub address: u16,
    /// Registers (or bits) the tag occupies, ≥ 1.
    pub width: u16,
}

/// One read request and the tags it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    pub area: Area,
    pub start: u16,
    pub count: u16,
    /// Indices into the planner's input slice.
    pub items: Vec<usize>,
}

impl ReadRequest {
    /// Offset of an item's first word/bit within this request's response.
    pub fn offset_of(&self, item: &PlanItem) -> usize {
        usize::from(item.address - self.start)
    }
}

/// Largest read allowed for `area` under `limits` and the protocol.
pub fn max_count(area: Area, limits: &RequestLimits) -> u16 {
    if area.is_bit() {
        limits.max_bits.clamp(1, MAX_BITS)
    } else {
        limits.max_registers.clamp(1, MAX_REGISTERS)
    }
}

/// Coalesce `items` into requests. Every item is served by exactly one
/// request that covers it entirely; requests are ordered by area, then address.
pub fn plan(items: &[PlanItem], limits: &RequestLimits) -> Vec<ReadRequest> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| (items[i].area, items[i].address, items[i].width));
    let mut out: Vec<ReadRequest> = Vec::new();
    for i in order {
        let it = items[i];
        let end = u32::from(it.address) + u32::from(it.width.max(1)); // exclusive
        if let Some(cur) = out.last_mut() {
            let cur_end = u32::from(cur.start) + u32::from(cur.count);
            let gap = u32::from(it.address).saturating_sub(cur_end);
            let new_count = end.max(cur_end) - u32::from(cur.start);
            if cur.area == it.area
                && gap <= u32::from(limits.max_gap)
                && new_count <= u32::from(max_count(it.area, limits))
            {
                cur.count = u16::try_from(new_count).unwrap_or(u16::MAX);
                cur.items.push(i);
                continue;
            }
        }
        out.push(ReadRequest {
            area: it.area,
            start: it.address,
            count: u16::try_from(end - u32::from(it.address)).unwrap_or(u16::MAX),
            items: vec![i],
        });
    }
    out
}

/// Split a request the device refused (exception 02/03/04 on a coalesced
/// read) into two smaller ones, or `None` when it serves one tag only.
///
/// A refused coalesced read most often spans registers the device does not
/// define (the planner bridged a gap), so the cut goes into the widest hole
/// between the request's tags; a request without holes is cut in the middle
/// of its tags (the device may allow fewer registers per read than we
/// assumed). Each part covers exactly its own tags, so repeated splitting
/// ends at one read per tag.
pub fn split(req: &ReadRequest, items: &[PlanItem]) -> Option<(ReadRequest, ReadRequest)> {
    if req.items.len() < 2 {
        return None;
    }
    let mut order = req.items.clone();
    order.sort_by_key(|&i| (items[i].address, items[i].width));
    // The hole before each tag: its start minus the furthest end so far.
    let mut end = 0u32;
    let mut widest = (0u32, 0usize);
    for (k, &i) in order.iter().enumerate() {
        let start = u32::from(items[i].address);
        if k > 0 {
            let hole = start.saturating_sub(end);
            if hole > widest.0 {
                widest = (hole, k);
            }
        }
        end = end.max(start + u32::from(items[i].width.max(1)));
    }
    let cut = if widest.0 > 0 {
        widest.1
    } else {
        // No hole: cut between two distinct addresses near the middle
        // (tags sharing registers stay together).
        let mid = order.len() / 2;
        let at = |k: usize| items[order[k]].address;
        (mid..order.len())
            .chain((1..mid).rev())
            .find(|&k| at(k) != at(k - 1))?
    };
    let (a, b) = order.split_at(cut);
    Some((covering(req.area, a, items), covering(req.area, b, items)))
}

/// The smallest request covering `part` (non-empty, sorted by address).
fn covering(area: Area, part: &[usize], items: &[PlanItem]) -> ReadRequest {
    let start = part
        .iter()
        .map(|&i| items[i].address)
        .min()
        .unwrap_or_default();
    let end = part
        .iter()
        .map(|&i| u32::from(items[i].address) + u32::from(items[i].width.max(1)))
        .max()
        .unwrap_or(u32::from(start) + 1);
    ReadRequest {
        area,
        start,
        count: u16::try_from(end - u32::from(start)).unwrap_or(u16::MAX),
        items: part.to_vec(),
    }
}

/// The naive plan: one request per tag (for comparison in benchmarks).
pub fn plan_per_tag(items: &[PlanItem]) -> Vec<ReadRequest> {
    items
        .iter()
        .enumerate()
        .map(|(i, it)| ReadRequest {
            area: it.area,
            start: it.address,
            count: it.width.max(1),
            items: vec![i],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use Area::*;

    fn item(area: Area, address: u16, width: u16) -> PlanItem {
        PlanItem {
            area,
            address,
            width,
        }
    }

    fn limits(max_registers: u16, max_bits: u16, max_gap: u16) -> RequestLimits {
        RequestLimits {
            max_registers,
            max_bits,
            max_gap,
        }
    }

    /// Invariants every plan must satisfy.
    fn check(items: &[PlanItem], l: &RequestLimits, plan: &[ReadRequest]) {
        let mut seen = vec![0; items.len()];
        for r in plan {
            assert!(
                r.count >= 1
                    && r.count
                        <= max_count(r.area, l)
                            .max(r.items.iter().map(|&i| items[i].width).max().unwrap())
            );
            assert!(u32::from(r.start) + u32::from(r.count) <= 65_536);
            for &i in &r.items {
                seen[i] += 1;
                let it = items[i];
                assert_eq!(it.area, r.area);
                assert!(it.address >= r.start);
                assert!(
                    u32::from(it.address) + u32::from(it.width)
                        <= u32::from(r.start) + u32::from(r.count)
                );
            }
        }
        assert!(
            seen.iter().all(|&n| n == 1),
            "every item exactly once: {seen:?}"
        );
        assert!(plan.len() <= items.len());
    }

    #[test]
    fn merges_adjacent_and_bridges_small_gaps() {
        let items = [
            item(HoldingRegister, 0, 1),
            item(HoldingRegister, 1, 2),
            item(HoldingRegister, 10, 4),
        ];
        let l = limits(125, 2000, 8);
        let p = plan(&items, &l);
        check(&items, &l, &p);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].start, p[0].count), (0, 14));
        // A gap of 7 > max_gap 6 splits.
        let l = limits(125, 2000, 6);
        let p = plan(&items, &l);
        assert_eq!(
            p.iter().map(|r| (r.start, r.count)).collect::<Vec<_>>(),
            vec![(0, 3), (10, 4)]
        );
    }

    #[test]
    fn respects_the_request_size_limit_and_never_splits_a_tag() {
        // 100 f32 tags back to back = 200 registers: two requests (124 + 76 with 125 cap).
        let items: Vec<_> = (0..100).map(|i| item(InputRegister, i * 2, 2)).collect();
        let l = limits(125, 2000, 0);
        let p = plan(&items, &l);
        check(&items, &l, &p);
        assert_eq!(p.iter().map(|r| r.count).collect::<Vec<_>>(), vec![124, 76]);
        // A configured smaller limit wins.
        let l = limits(10, 2000, 0);
        let p = plan(&items, &l);
        check(&items, &l, &p);
        assert_eq!(p.len(), 20);
        // Protocol limit wins over a larger configured one.
        let l = limits(500, 5000, 0);
        assert!(plan(&items, &l).iter().all(|r| r.count <= 125));
    }

    #[test]
    fn bits_use_the_bit_limit_and_areas_never_mix() {
        let mut items: Vec<_> = (0..3000).map(|i| item(Coil, i, 1)).collect();
        items.push(item(DiscreteInput, 0, 1));
        items.push(item(HoldingRegister, 0, 1));
        let l = limits(125, 2000, 0);
        let p = plan(&items, &l);
        check(&items, &l, &p);
        assert_eq!(
            p.iter()
                .map(|r| (r.area, r.start, r.count))
                .collect::<Vec<_>>(),
            vec![
                (Coil, 0, 2000),
                (Coil, 2000, 1000),
                (DiscreteInput, 0, 1),
                (HoldingRegister, 0, 1)
            ]
        );
    }

    #[test]
    fn overlapping_tags_share_registers() {
        // Bits of one status word plus the word itself.
        let items = [
            item(HoldingRegister, 5, 1),
            item(HoldingRegister, 5, 1),
            item(HoldingRegister, 5, 2),
        ];
        let l = limits(125, 2000, 0);
        let p = plan(&items, &l);
        check(&items, &l, &p);
        assert_eq!((p.len(), p[0].start, p[0].count), (1, 5, 2));
    }

    #[test]
    fn top_of_the_address_space() {
        let items = [
            item(HoldingRegister, 65_532, 4),
            item(HoldingRegister, 65_530, 1),
        ];
        let l = limits(125, 2000, 2);
        let p = plan(&items, &l);
        check(&items, &l, &p);
        assert_eq!((p[0].start, p[0].count), (65_530, 6));
    }

    /// Minimum number of requests by dynamic programming over sorted items:
    /// an independent oracle for the greedy planner on small inputs.
    fn optimal(items: &[PlanItem], l: &RequestLimits) -> usize {
        let mut total = 0;
        for area in [Coil, DiscreteInput, HoldingRegister, InputRegister] {
            let mut v: Vec<_> = items.iter().filter(|i| i.area == area).copied().collect();
            v.sort_by_key(|i| (i.address, i.width));
            let n = v.len();
            // best[k] = min requests covering v[k..].
            let mut best = vec![usize::MAX; n + 1];
            best[n] = 0;
            for k in (0..n).rev() {
                let start = u32::from(v[k].address);
                let mut end = start;
                for j in k..n {
                    let a = u32::from(v[j].address);
                    if j > k && a.saturating_sub(end) > u32::from(l.max_gap) {
                        break;
                    }
                    end = end.max(a + u32::from(v[j].width));
                    if end - start > u32::from(max_count(area, l)) {
                        break;
                    }
                    if best[j + 1] != usize::MAX {
                        best[k] = best[k].min(1 + best[j + 1]);
                    }
                }
            }
            total += best[0];
        }
        total
    }

    #[test]
    fn greedy_matches_the_optimum_on_random_layouts() {
        // Deterministic xorshift so failures reproduce.
        let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = |m: u64| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s % m
        };
        for _ in 0..500 {
            let n = 1 + rnd(40) as usize;
            let l = limits(1 + rnd(30) as u16, 1 + rnd(60) as u16, rnd(6) as u16);
            let items: Vec<_> = (0..n)
                .map(|_| {
                    let area = [Coil, HoldingRegister, InputRegister][rnd(3) as usize];
                    let width = if area.is_bit() {
                        1
                    } else {
                        [1, 1, 2, 4][rnd(4) as usize]
                    };
                    let width = width.min(max_count(area, &l));
                    item(area, rnd(120) as u16, width)
                })
                .collect();
            let p = plan(&items, &l);
            check(&items, &l, &p);
            assert_eq!(p.len(), optimal(&items, &l), "items {items:?} limits {l:?}");
        }
    }

    #[test]
    fn a_refused_read_is_split_at_its_widest_hole_down_to_one_tag() {
        // A meter's datasheet: 0..2 and 3 defined, 4..19 not, 20..23 defined.
        let items = [
            item(HoldingRegister, 0, 2),
            item(HoldingRegister, 20, 2),
            item(HoldingRegister, 3, 1),
            item(HoldingRegister, 22, 2),
        ];
        let l = limits(125, 2000, 16);
        let p = plan(&items, &l);
        assert_eq!(p.len(), 1, "the default gap bridges the hole");
        let (a, b) = split(&p[0], &items).unwrap();
        assert_eq!((a.start, a.count, a.items.clone()), (0, 4, vec![0, 2]));
        assert_eq!((b.start, b.count, b.items.clone()), (20, 4, vec![1, 3]));
        check(&items, &l, &[a.clone(), b.clone()]);
        // No hole left: halves, then single tags, then nothing more to split.
        let (a1, a2) = split(&a, &items).unwrap();
        assert_eq!((a1.start, a1.count, a2.start, a2.count), (0, 2, 3, 1));
        assert!(split(&a1, &items).is_none());
    }

    #[test]
    fn splitting_keeps_tags_that_share_registers_together() {
        let items = [
            item(HoldingRegister, 5, 1),
            item(HoldingRegister, 5, 2),
            item(HoldingRegister, 5, 1),
        ];
        let p = plan(&items, &limits(125, 2000, 0));
        assert!(
            split(&p[0], &items).is_none(),
            "one address: nothing to split"
        );
        let items = [
            item(HoldingRegister, 5, 1),
            item(HoldingRegister, 5, 2),
            item(HoldingRegister, 7, 1),
        ];
        let p = plan(&items, &limits(125, 2000, 0));
        let (a, b) = split(&p[0], &items).unwrap();
        assert_eq!((a.items.len(), b.items.len()), (2, 1));
        assert_eq!((a.start, a.count, b.start, b.count), (5, 2, 7, 1));
    }

    #[test]
    fn repeated_splitting_always_ends_at_one_read_per_tag() {
        let mut s: u64 = 0x2545_F491_4F6C_DD1D;
        let mut rnd = |m: u64| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s % m
        };
        for _ in 0..200 {
            let n = 1 + rnd(30) as usize;
            let items: Vec<_> = (0..n)
                .map(|_| item(InputRegister, rnd(100) as u16, [1, 2, 4][rnd(3) as usize]))
                .collect();
            let l = limits(125, 2000, 16);
            let mut work = plan(&items, &l);
            let mut done = Vec::new();
            while let Some(r) = work.pop() {
                match split(&r, &items) {
                    Some((a, b)) => {
                        assert!(a.count < r.count || b.count < r.count);
                        work.push(a);
                        work.push(b);
                    }
                    None => done.push(r),
                }
            }
            check(&items, &l, &done);
            for r in &done {
                let first = items[r.items[0]].address;
                assert!(r.items.iter().all(|&i| items[i].address == first));
            }
        }
    }

    #[test]
    fn per_tag_plan_is_one_request_each() {
        let items = [item(HoldingRegister, 0, 2), item(HoldingRegister, 2, 2)];
        assert_eq!(plan_per_tag(&items).len(), 2);
        assert_eq!(plan(&items, &limits(125, 2000, 0)).len(), 1);
    }
}
