//! An index over headers-exchange bindings, so routing does not test every binding. An `all`
//! binding can only match a message that carries its first criterion with an equal value, so it
//! is filed under a hash of that (name, value); routing looks up each header of the message and
//! checks only those candidates (plus `any` bindings and bindings with nothing indexable, which
//! are still scanned). Candidates are always confirmed with `headers::matches`, so a hash
//! collision costs a check, never a wrong route.

use super::headers::{self, XMatch};
use amq_protocol::types::{AMQPValue, FieldTable};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// One binding.
#[derive(Debug, Clone)]
struct Entry<T> {
    xm: XMatch,
    args: FieldTable,
    dest: T,
}

/// Headers bindings of one exchange.
#[derive(Debug)]
pub struct HeadersIndex<T> {
    scan: Vec<Entry<T>>,
    by_value: HashMap<u64, Vec<Entry<T>>>,
}

impl<T> Default for HeadersIndex<T> {
    fn default() -> Self {
        HeadersIndex {
            scan: Vec::new(),
            by_value: HashMap::new(),
        }
    }
}

/// Hash of (name, value) under the equality `headers::matches` uses: integers of any width,
/// timestamps and integral floats by number; other floats by value; strings and byte arrays by
/// bytes; booleans. Anything else (void, decimal, arrays, tables) is not indexed.
fn value_hash(name: &str, v: &AMQPValue) -> Option<u64> {
    use AMQPValue as V;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    let int = match v {
        V::ShortShortInt(n) => Some(i128::from(*n)),
        V::ShortShortUInt(n) => Some(i128::from(*n)),
        V::ShortInt(n) => Some(i128::from(*n)),
        V::ShortUInt(n) => Some(i128::from(*n)),
        V::LongInt(n) => Some(i128::from(*n)),
        V::LongUInt(n) => Some(i128::from(*n)),
        V::LongLongInt(n) => Some(i128::from(*n)),
        V::Timestamp(n) => Some(i128::from(*n)),
        _ => None,
    };
    let float = match v {
        V::Float(f) => Some(f64::from(*f)),
        V::Double(f) => Some(*f),
        _ => None,
    };
    match (int, float) {
        (Some(i), _) => (1u8, i).hash(&mut h),
        (_, Some(f)) if f.fract() == 0.0 && f.abs() < 1e38 => (1u8, f as i128).hash(&mut h),
        (_, Some(f)) => (2u8, f.to_bits()).hash(&mut h),
        _ => match v {
            V::ShortString(s) => (3u8, s.as_str().as_bytes()).hash(&mut h),
            V::LongString(s) => (3u8, s.as_bytes()).hash(&mut h),
            V::ByteArray(b) => (3u8, b.as_slice()).hash(&mut h),
            V::Boolean(b) => (4u8, *b).hash(&mut h),
            _ => return None,
        },
    }
    Some(h.finish())
}

/// The bucket an `all` binding goes in: its first criterion with an indexable value.
fn bucket(xm: XMatch, args: &FieldTable) -> Option<u64> {
    let with_x = match xm {
        XMatch::All => false,
        XMatch::AllWithX => true,
        XMatch::Any | XMatch::AnyWithX => return None,
    };
    args.inner()
        .iter()
        .filter(|(k, _)| k.as_str() != "x-match" && (with_x || !k.as_str().starts_with("x-")))
        .find_map(|(k, v)| value_hash(k.as_str(), v))
}

impl<T: Clone + PartialEq> HeadersIndex<T> {
    pub fn insert(&mut self, xm: XMatch, args: FieldTable, dest: T) {
        let e = Entry { xm, args, dest };
        match bucket(xm, &e.args) {
            Some(b) => self.by_value.entry(b).or_default().push(e),
            None => self.scan.push(e),
        }
    }

    /// Remove the binding with these arguments to `dest`; true if it was there.
    pub fn remove(&mut self, args: &FieldTable, dest: &T) -> bool {
        let hit = |e: &Entry<T>| &e.dest == dest && &e.args == args;
        if let Some(i) = self.scan.iter().position(hit) {
            self.scan.remove(i);
            return true;
        }
        for (b, list) in self.by_value.iter_mut() {
            if let Some(i) = list.iter().position(hit) {
                list.remove(i);
                if list.is_empty() {
                    let b = *b;
                    self.by_value.remove(&b);
                }
                return true;
            }
        }
        false
    }

    /// Remove every binding to `dest`.
    pub fn remove_dest(&mut self, dest: &T) {
        self.scan.retain(|e| &e.dest != dest);
        self.by_value.retain(|_, list| {
            list.retain(|e| &e.dest != dest);
            !list.is_empty()
        });
    }

    pub fn is_empty(&self) -> bool {
        self.scan.is_empty() && self.by_value.is_empty()
    }

    /// Call `out` for every binding the message's headers match (a destination may repeat).
    pub fn route(&self, hdrs: Option<&FieldTable>, out: &mut impl FnMut(&T)) {
        for e in &self.scan {
            if headers::matches(e.xm, &e.args, hdrs) {
                out(&e.dest);
            }
        }
        let Some(h) = hdrs else { return };
        if self.by_value.is_empty() {
            return;
        }
        for (k, v) in h.inner() {
            let Some(list) = value_hash(k.as_str(), v).and_then(|b| self.by_value.get(&b)) else {
                continue;
            };
            for e in list {
                if headers::matches(e.xm, &e.args, hdrs) {
                    out(&e.dest);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::LongString;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn value(kind: u8, n: i64) -> AMQPValue {
        match kind % 6 {
            0 => AMQPValue::LongInt(n as i32),
            1 => AMQPValue::LongLongInt(n),
            2 => AMQPValue::Double(n as f64),
            3 => AMQPValue::LongString(LongString::from(format!("v{n}").into_bytes())),
            4 => AMQPValue::Boolean(n % 2 == 0),
            _ => AMQPValue::Void,
        }
    }

    fn table(entries: &[(u8, u8, i64)], x_match: Option<&str>) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, kind, n) in entries {
            let name = if k % 5 == 0 {
                format!("x-k{k}")
            } else {
                format!("k{}", k % 4)
            };
            t.insert(name.into(), value(*kind, *n % 3));
        }
        if let Some(m) = x_match {
            t.insert(
                "x-match".into(),
                AMQPValue::LongString(LongString::from(m.as_bytes().to_vec())),
            );
        }
        t
    }

    proptest! {
        /// The index routes exactly like checking every binding.
        #[test]
        fn index_routes_like_a_scan(
            bindings in proptest::collection::vec((0u8..4, proptest::collection::vec((0u8..10, 0u8..6, 0i64..3), 0..4)), 0..30),
            msg in proptest::collection::vec((0u8..10, 0u8..5, 0i64..3), 0..6),
            remove in proptest::collection::vec(any::<bool>(), 30),
        ) {
            let modes = ["all", "any", "all-with-x", "any-with-x"];
            let mut idx: HeadersIndex<usize> = HeadersIndex::default();
            let mut all: Vec<(XMatch, FieldTable, usize)> = Vec::new();
            for (i, (m, crit)) in bindings.iter().enumerate() {
                let args = table(crit, Some(modes[usize::from(*m)]));
                let xm = headers::parse_x_match(&args).expect("valid x-match");
                idx.insert(xm, args.clone(), i);
                all.push((xm, args, i));
            }
            for (i, r) in remove.iter().enumerate().take(all.len()) {
                if *r {
                    let (_, args, d) = all[i].clone();
                    prop_assert!(idx.remove(&args, &d));
                }
            }
            let kept: Vec<_> = all.iter().enumerate().filter(|(i, _)| !remove.get(*i).copied().unwrap_or(false)).map(|(_, b)| b.clone()).collect();
            let h = table(&msg, None);
            let mut got = BTreeSet::new();
            idx.route(Some(&h), &mut |d| { got.insert(*d); });
            let want: BTreeSet<usize> = kept.iter().filter(|(xm, a, _)| headers::matches(*xm, a, Some(&h))).map(|(_, _, d)| *d).collect();
            prop_assert_eq!(got, want);
        }
    }
}
