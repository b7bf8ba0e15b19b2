//! Measurement state that the hot loops update without allocating: a log-linear latency histogram
//! (HDR-style, 128 sub-buckets per power of two, so ≤ 0.8 % relative error) and a sequence tracker
//! (one bitmap per producer) that finds lost, duplicated and reordered messages. Both merge, so
//! every consumer keeps its own and the coordinator adds them up at the end.

/// Sub-bucket bits: values below `2 << SUB_BITS` are exact, larger ones keep 7 significant bits.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// Enough buckets for any u64.
const BUCKETS: usize = ((63 - SUB_BITS as usize) << SUB_BITS) + (2 << SUB_BITS);

/// Histogram of u64 values (nanoseconds here).
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

fn index(v: u64) -> usize {
    if v < 2 * SUB {
        return v as usize;
    }
    let shift = 63 - v.leading_zeros() - SUB_BITS;
    ((shift as usize) << SUB_BITS) + (v >> shift) as usize
}

/// The lowest value that falls into bucket `i`.
fn lower_bound(i: usize) -> u64 {
    if i < (2 * SUB) as usize {
        return i as u64;
    }
    let shift = (i >> SUB_BITS) - 1;
    (((i as u64) & (SUB - 1)) + SUB) << shift
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

impl Histogram {
    #[inline]
    pub fn record(&mut self, v: u64) {
        if let Some(c) = self.counts.get_mut(index(v)) {
            *c += 1;
        }
        self.total += 1;
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0..=1): the midpoint of the bucket holding it, capped at the max.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let lo = lower_bound(i);
                let hi = if i + 1 < BUCKETS {
                    lower_bound(i + 1)
                } else {
                    u64::MAX
                };
                return (lo + (hi - lo) / 2).min(self.max);
            }
        }
        self.max
    }
}

/// Seen sequence numbers of one producer.
#[derive(Clone, Default)]
struct Seen {
    words: Vec<u64>,
    distinct: u64,
    /// Highest sequence number + 1 (0: none seen).
    end: u64,
    /// Last sequence number seen, for the reorder count.
    last: Option<u64>,
}

/// Loss, duplicate and order bookkeeping for the messages one consumer (or one queue) received.
#[derive(Clone, Default)]
pub struct SeqTracker {
    producers: Vec<Seen>,
    pub duplicates: u64,
    pub out_of_order: u64,
}

/// Sequence numbers at or above this are treated as corrupt rather than grown into (512 MiB).
pub const MAX_SEQ: u64 = 1 << 32;

impl SeqTracker {
    /// Record one message. Returns false (and records nothing) for an impossible producer or
    /// sequence number, which the caller counts as an invalid body.
    #[inline]
    pub fn record(&mut self, producer: u16, seq: u64, producers: u16) -> bool {
        if producer >= producers || seq >= MAX_SEQ {
            return false;
        }
        let p = producer as usize;
        if self.producers.len() <= p {
            self.producers
                .resize_with(producers as usize, Seen::default);
        }
        let Some(s) = self.producers.get_mut(p) else {
            return false;
        };
        let w = (seq / 64) as usize;
        if s.words.len() <= w {
            let want = (w + 1).max(s.words.len() * 2).max(1024);
            s.words.resize(want, 0);
        }
        if let Some(last) = s.last {
            if seq < last {
                self.out_of_order += 1;
            }
        }
        s.last = Some(seq);
        s.end = s.end.max(seq + 1);
        let bit = 1u64 << (seq % 64);
        match s.words.get_mut(w) {
            Some(word) if *word & bit != 0 => self.duplicates += 1,
            Some(word) => {
                *word |= bit;
                s.distinct += 1;
            }
            None => return false,
        }
        true
    }

    /// Fold another consumer's record of the same queue into this one; a message both saw is a
    /// duplicate.
    pub fn merge(&mut self, other: &SeqTracker) {
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        if self.producers.len() < other.producers.len() {
            self.producers
                .resize_with(other.producers.len(), Seen::default);
        }
        for (a, b) in self.producers.iter_mut().zip(&other.producers) {
            if a.words.len() < b.words.len() {
                a.words.resize(b.words.len(), 0);
            }
            for (x, y) in a.words.iter_mut().zip(&b.words) {
                let both = (*x & *y).count_ones() as u64;
                self.duplicates += both;
                a.distinct += y.count_ones() as u64 - both;
                *x |= *y;
            }
            a.end = a.end.max(b.end);
        }
    }

    /// Distinct messages seen from every producer.
    #[cfg(test)]
    pub fn distinct(&self) -> u64 {
        self.producers.iter().map(|s| s.distinct).sum()
    }

    /// Messages missing: for producer `p`, `sent(p)` if the sender's count is known, else the
    /// highest sequence seen + 1, minus what arrived.
    pub fn lost(&self, sent: impl Fn(usize) -> Option<u64>, producers: usize) -> u64 {
        (0..producers)
            .map(|p| {
                let s = self.producers.get(p);
                let distinct = s.map_or(0, |s| s.distinct);
                let expected = sent(p).unwrap_or_else(|| s.map_or(0, |s| s.end));
                expected.saturating_sub(distinct)
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_tight() {
        for v in (0..100_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let i = index(v);
            assert!(lower_bound(i) <= v, "{v}");
            assert!(i + 1 >= BUCKETS || lower_bound(i + 1) > v, "{v}");
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
        assert_eq!(index(255) + 1, index(256));
    }

    #[test]
    fn quantiles_within_one_percent() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        for (q, want) in [(0.5, 50_000_000f64), (0.99, 99_000_000f64)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.01, "q{q}: {got}");
        }
        assert_eq!(h.max(), 100_000_000);
        let mut g = Histogram::default();
        g.record(5);
        g.merge(&h);
        assert_eq!(g.count(), 100_001);
        assert_eq!(g.quantile(0.0), 5);
    }

    #[test]
    fn tracker_finds_loss_duplicates_and_reorder() {
        let mut a = SeqTracker::default();
        for s in [0, 1, 2, 4, 4, 3] {
            assert!(a.record(0, s, 2));
        }
        assert!(!a.record(2, 0, 2));
        assert!(!a.record(0, MAX_SEQ, 2));
        assert_eq!((a.distinct(), a.duplicates, a.out_of_order), (5, 1, 1));
        let mut b = SeqTracker::default();
        b.record(0, 7, 2);
        b.record(0, 4, 2);
        b.record(1, 0, 2);
        a.merge(&b);
        assert_eq!(a.distinct(), 7);
        assert_eq!(a.duplicates, 2);
        // Producer 0 sent 10 (0..=9): 5, 6, 8, 9 missing; producer 1's count unknown: none.
        assert_eq!(a.lost(|p| (p == 0).then_some(10), 2), 4);
        assert_eq!(a.lost(|_| None, 2), 2);
    }
}
