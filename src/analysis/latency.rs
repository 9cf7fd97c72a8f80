//! Latencies of calls, for percentiles: every one kept up to [`EXACT`], then counted in buckets
//! a 1024th of their value wide.
//!
//! Why buckets and not a sample: two sets of latencies (two threads' calls) merge into exactly
//! what one set of all of them would be, in any order, so `stats` reports the same figures on
//! any number of threads; and the memory stays small (a method's latencies spread over a few
//! thousand buckets at most), where a sample of the same precision would hold every value.

/// Latencies kept one by one, for exact percentiles.
pub const EXACT: usize = 100_000;

/// Bits of a latency's value kept below its leading one: buckets are 1/1024 of their value
/// wide (under 0.1%). Values under 2048 ns have a bucket each.
const MANTISSA_BITS: u32 = 10;
const LINEAR: u64 = 2 << MANTISSA_BITS;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Latencies {
    /// Every latency, in nanoseconds, in no order.
    Exact(Vec<i64>),
    /// (bucket, count), sorted by bucket; the largest latency exactly.
    Buckets { counts: Vec<(u32, u64)>, max: i64 },
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies::Exact(Vec::new())
    }
}

/// The bucket of a latency. A negative one (a clock that went back) counts as 0.
fn bucket(ns: i64) -> u32 {
    let v = ns.max(0) as u64;
    if v < LINEAR {
        return v as u32;
    }
    let exp = 63 - v.leading_zeros();
    let mantissa = (v >> (exp - MANTISSA_BITS)) & ((1 << MANTISSA_BITS) - 1);
    let group = exp - (MANTISSA_BITS + 1);
    (LINEAR + (u64::from(group) << MANTISSA_BITS) + mantissa) as u32
}

/// The value a bucket stands for: the middle of the values it holds.
fn value(bucket: u32) -> i64 {
    let b = u64::from(bucket);
    if b < LINEAR {
        return b as i64;
    }
    let group = (b - LINEAR) >> MANTISSA_BITS;
    let mantissa = (b - LINEAR) & ((1 << MANTISSA_BITS) - 1);
    let shift = group + 1;
    let low = ((1 << MANTISSA_BITS) + mantissa) << shift;
    (low + (1 << shift) / 2).min(i64::MAX as u64) as i64
}

impl Latencies {
    pub fn is_empty(&self) -> bool {
        match self {
            Latencies::Exact(v) => v.is_empty(),
            Latencies::Buckets { counts, .. } => counts.is_empty(),
        }
    }

    pub fn push(&mut self, ns: i64) {
        match self {
            Latencies::Exact(v) if v.len() < EXACT => v.push(ns),
            Latencies::Exact(_) => {
                self.switch_to_buckets();
                self.push(ns);
            }
            Latencies::Buckets { counts, max } => {
                *max = (*max).max(ns);
                add(counts, bucket(ns), 1);
            }
        }
    }

    /// Takes in another set, as if its latencies had been pushed here.
    pub fn merge(&mut self, other: Latencies) {
        match other {
            Latencies::Exact(mut theirs) => match self {
                Latencies::Exact(mine) if mine.len() + theirs.len() <= EXACT => {
                    mine.append(&mut theirs)
                }
                _ => {
                    for ns in theirs {
                        self.switch_to_buckets();
                        self.push(ns);
                    }
                }
            },
            Latencies::Buckets {
                counts: theirs,
                max: their_max,
            } => {
                self.switch_to_buckets();
                if let Latencies::Buckets { counts, max } = self {
                    *max = (*max).max(their_max);
                    for (b, n) in theirs {
                        add(counts, b, n);
                    }
                }
            }
        }
    }

    /// Keeps no more than `n` latencies one by one: past that, buckets. Whether a set ends in
    /// buckets depends only on how many it holds, not on when this is asked, so parts of a set
    /// limited on their own merge into what the whole set limited gives.
    pub fn limit_exact(&mut self, n: usize) {
        if matches!(self, Latencies::Exact(v) if v.len() > n) {
            self.switch_to_buckets();
        }
    }

    fn switch_to_buckets(&mut self) {
        let Latencies::Exact(v) = self else {
            return;
        };
        let mut v = std::mem::take(v);
        v.sort_unstable();
        let max = v.last().copied().unwrap_or(0).max(0);
        let mut counts: Vec<(u32, u64)> = Vec::new();
        for ns in v {
            let b = bucket(ns);
            match counts.last_mut() {
                Some((last, n)) if *last == b => *n += 1,
                _ => counts.push((b, 1)),
            }
        }
        *self = Latencies::Buckets { counts, max };
    }

    /// Percentile `p` (0-100), by the nearest rank: exact while every latency is kept, then
    /// the middle of its bucket (within 0.05%); the maximum is always exact.
    pub fn percentile(&self, p: f64) -> Option<i64> {
        match self {
            Latencies::Exact(v) if v.is_empty() => None,
            Latencies::Exact(v) => {
                let mut v = v.clone();
                v.sort_unstable();
                let rank = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
                Some(v[rank.min(v.len() - 1)])
            }
            Latencies::Buckets { counts, max } => {
                let total: u64 = counts.iter().map(|(_, n)| n).sum();
                if total == 0 {
                    return None;
                }
                let rank = ((p / 100.0) * (total as f64 - 1.0)).round() as u64;
                if rank >= total - 1 {
                    return Some(*max);
                }
                let mut seen = 0;
                for &(b, n) in counts {
                    seen += n;
                    if seen > rank {
                        return Some(value(b).min(*max));
                    }
                }
                Some(*max)
            }
        }
    }
}

fn add(counts: &mut Vec<(u32, u64)>, b: u32, n: u64) {
    match counts.binary_search_by_key(&b, |&(k, _)| k) {
        Ok(i) => counts[i].1 += n,
        Err(i) => counts.insert(i, (b, n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value falls in a bucket whose middle is within 0.05% of it, and buckets grow
    /// with their values.
    #[test]
    fn buckets_are_narrow_and_ordered() {
        let mut xs: Vec<i64> = (0..62)
            .flat_map(|e| {
                let v = 1i64 << e;
                [v, v + 1, v + v / 3, v + v / 2, v + v / 2 + 1, 2 * v - 1]
            })
            .collect();
        xs.sort_unstable();
        let mut last = 0;
        for x in xs {
            let b = bucket(x);
            assert!(b >= last, "{x}");
            last = b;
            let mid = value(b);
            let err = (mid - x).abs() as f64 / x as f64;
            assert!(err <= 0.0005, "{x} → {mid}");
        }
        assert_eq!(bucket(-5), 0);
        assert_eq!(value(bucket(2047)), 2047);
        let top = value(bucket(i64::MAX));
        assert!((i64::MAX - top) as f64 / i64::MAX as f64 <= 0.0005);
    }

    /// Exact up to the limit; past it, merged parts give what one set of them all gives,
    /// whatever the split and order.
    #[test]
    fn merges_are_the_same_as_one_set() {
        let values: Vec<i64> = (0..250_000)
            .map(|i: i64| (i * 7919) % 1_000_003 * 1000 + 17)
            .collect();
        let mut one = Latencies::default();
        for &v in &values {
            one.push(v);
        }
        assert!(matches!(one, Latencies::Buckets { .. }));
        for split in [1, 50_000, 99_999, 100_000, 180_000] {
            let (a, b) = values.split_at(split);
            let mut x = Latencies::default();
            let mut y = Latencies::default();
            a.iter().for_each(|&v| x.push(v));
            b.iter().rev().for_each(|&v| y.push(v));
            let mut yx = y.clone();
            x.merge(y);
            yx.merge(Latencies::Exact(a.to_vec()));
            assert_eq!(x, one, "split at {split}");
            assert_eq!(yx, one, "split at {split}, other way");
        }
        // Exact percentiles under the limit.
        let mut small = Latencies::default();
        (1..=100).for_each(|v| small.push(v * 1_000_000));
        let mut half = Latencies::Exact((101..=200).map(|v| v * 1_000_000).collect());
        half.merge(small);
        assert_eq!(half.percentile(50.0), Some(101_000_000));
        assert_eq!(half.percentile(100.0), Some(200_000_000));
        // Past it: within a bucket of the exact figure, the maximum exact.
        let mut sorted = values.clone();
        sorted.sort_unstable();
        for p in [50.0, 90.0, 99.0] {
            let exact = sorted[((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize];
            let got = one.percentile(p).unwrap();
            assert!((got - exact).abs() as f64 <= exact as f64 / 1000.0, "p{p}");
        }
        assert_eq!(one.percentile(100.0), sorted.last().copied());
    }

    proptest::proptest! {
        /// Any latencies (negative and huge ones too), split anyhow and merged in any order,
        /// count as one set of them; a bucketed percentile is within 0.05% of the exact one.
        #[test]
        fn bucket_merges_and_percentiles_hold_for_any_values(
            values in proptest::collection::vec(proptest::prelude::any::<i64>(), 1..300),
            cuts in proptest::collection::vec(0usize..300, 0..5),
            p in 0.0f64..=100.0,
        ) {
            let bucketed = |v: &[i64]| {
                let mut l = Latencies::Exact(v.to_vec());
                l.switch_to_buckets();
                l
            };
            let whole = bucketed(&values);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(values.len())).collect();
            cuts.sort_unstable();
            let mut parts = Vec::new();
            let mut from = 0;
            for c in cuts.into_iter().chain([values.len()]) {
                parts.push(bucketed(&values[from..c]));
                from = c;
            }
            let mut merged = Latencies::default();
            for part in parts.into_iter().rev() {
                merged.merge(part);
            }
            proptest::prop_assert_eq!(&merged, &whole);
            let mut sorted: Vec<i64> = values.iter().map(|&v| v.max(0)).collect();
            sorted.sort_unstable();
            let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
            let exact = sorted[rank];
            let got = whole.percentile(p).unwrap();
            let err = (got as f64 - exact as f64).abs();
            proptest::prop_assert!(err <= exact as f64 / 2000.0 + 1.0, "{} against {}", got, exact);
        }
    }
}
