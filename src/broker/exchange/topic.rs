//! Binding trie for topic exchanges.
//!
//! A topic pattern such as `stock.*.nyse` or `audit.#` is a list of words
//! separated by `.`: `*` matches exactly one word of the routing key, `#`
//! matches zero or more, anything else matches literally. Testing every binding
//! on every publish costs O(bindings), so patterns live in a trie keyed by word:
//! routing walks the key once, following at each node the literal child for
//! the current word (one hash lookup) plus the `*` and `#` children, so its cost
//! depends on key length and matching branches, not on the number of bindings.
//!
//! Words are split as RabbitMQ's `split_topic_key` does: empty words are real
//! (`a..b` is `a`, ``, `b`; `a.` is `a`, ``), but the empty key or pattern has
//! *zero* words, so `#` and the empty pattern match the empty key and `*` does
//! not. Keys are raw bytes and need not be UTF-8.
//!
//! With several `#`s (`#.a.#.a.#.x`) one node can be reached at the same key
//! position along exponentially many paths, so routing remembers, for each `#`
//! node below another `#`, the earliest position it was expanded from and never
//! expands it again from a later one. Routing stays polynomial and reports each
//! binding at most once; the memo map is created lazily, so keys that meet no
//! nested `#` (the common case) route without allocating.

use std::collections::HashMap;

/// Topic-exchange bindings: `(pattern, dest)` pairs organised as a word trie.
#[derive(Debug)]
pub struct TopicTrie<T> {
    root: Node<T>,
    len: usize,
}

#[derive(Debug)]
struct Node<T> {
    dests: Vec<T>,                      // bindings whose pattern ends here, in bind order
    words: HashMap<Box<[u8]>, Node<T>>, // literal-word children
    star: Option<Box<Node<T>>>,         // `*` child
    hash: Option<Box<Node<T>>>,         // `#` child
}

impl<T: PartialEq> Node<T> {
    fn new() -> Self {
        Node {
            dests: Vec::new(),
            words: HashMap::new(),
            star: None,
            hash: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.dests.is_empty() && self.words.is_empty() && self.star.is_none() && self.hash.is_none()
    }

    fn child_mut(&mut self, word: &[u8]) -> Option<&mut Node<T>> {
        match word {
            b"*" => self.star.as_deref_mut(),
            b"#" => self.hash.as_deref_mut(),
            _ => self.words.get_mut(word),
        }
    }

    fn child_or_insert(&mut self, word: &[u8]) -> &mut Node<T> {
        match word {
            b"*" => self.star.get_or_insert_with(|| Box::new(Node::new())),
            b"#" => self.hash.get_or_insert_with(|| Box::new(Node::new())),
            _ => self.words.entry(word.into()).or_insert_with(Node::new),
        }
    }

    /// Removes `dest` at the end of `words`; prunes emptied nodes on the way back.
    fn remove<'p>(&mut self, mut words: impl Iterator<Item = &'p [u8]>, dest: &T) -> bool {
        let Some(word) = words.next() else {
            let Some(i) = self.dests.iter().position(|d| d == dest) else {
                return false;
            };
            // `remove`, not `swap_remove`: keeps routing order = binding order.
            self.dests.remove(i);
            return true;
        };
        let Some(child) = self.child_mut(word) else {
            return false;
        };
        let removed = child.remove(words, dest);
        if child.is_empty() {
            // The subtrie holds no binding any more: prune it.
            match word {
                b"*" => self.star = None,
                b"#" => self.hash = None,
                _ => drop(self.words.remove(word)),
            }
        }
        removed
    }

    /// Removes every dest matching `pred` below this node; returns the count.
    fn retain(&mut self, pred: &impl Fn(&T) -> bool) -> usize {
        let before = self.dests.len();
        self.dests.retain(|d| !pred(d));
        let mut removed = before - self.dests.len();
        self.words.retain(|_, child| {
            removed += child.retain(pred);
            !child.is_empty()
        });
        for slot in [&mut self.star, &mut self.hash] {
            removed += slot.as_mut().map_or(0, |child| child.retain(pred));
            if slot.as_ref().is_some_and(|child| child.is_empty()) {
                *slot = None;
            }
        }
        removed
    }
}

/// Words of a pattern or key, RabbitMQ style: the empty string has no words.
fn words(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    s.split(|&b| b == b'.').filter(move |_| !s.is_empty())
}

/// Splits the first word off a non-empty remainder; `None` = no words left.
fn next_word(rest: &[u8]) -> (&[u8], Option<&[u8]>) {
    match rest.iter().position(|&b| b == b'.') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    }
}

/// Key position as a number that decreases as routing advances through the key.
fn position(rest: Option<&[u8]>) -> usize {
    rest.map_or(0, |r| r.len() + 1)
}

/// State of one `route` call.
struct Router<'a, T, F> {
    out: &'a mut F,
    /// For `#` nodes below another `#`: the earliest position (largest
    /// `position` value) from which the node has been fully expanded.
    expanded: HashMap<*const Node<T>, usize>,
}

impl<T, F: FnMut(&T)> Router<'_, T, F> {
    /// Matches the remaining key `rest` against the subtrie at `node`.
    /// `nested` is true once a `#` lies on the path, i.e. when the same node may
    /// be reached at several key positions.
    fn walk(&mut self, node: &Node<T>, rest: Option<&[u8]>, nested: bool) {
        match rest {
            None => node.dests.iter().for_each(&mut *self.out),
            Some(r) => {
                let (word, next) = next_word(r);
                if let Some(child) = node.words.get(word) {
                    self.walk(child, next, nested);
                }
                if let Some(child) = &node.star {
                    self.walk(child, next, nested);
                }
            }
        }
        if let Some(child) = &node.hash {
            self.expand_hash(child, rest, nested);
        }
    }

    /// `node` follows a `#` that starts at `rest`: the `#` may swallow any
    /// number of words, so continue matching from every later position.
    fn expand_hash(&mut self, node: &Node<T>, rest: Option<&[u8]>, nested: bool) {
        let start = position(rest);
        // Outside any `#` each node is reached exactly once (literals and `*`
        // consume exactly one word), so only nested `#` nodes need the memo.
        let covered = match nested.then(|| self.expanded.insert(node, start)) {
            Some(Some(prev)) if prev >= start => {
                self.expanded.insert(node, prev); // already covered from `prev` on
                return;
            }
            Some(prev) => prev,
            None => None,
        };
        // Stop where the earlier expansion took over (`None` < any `Some`).
        let mut cur = rest;
        while covered < Some(position(cur)) {
            self.walk(node, cur, true);
            let Some(r) = cur else { break };
            cur = next_word(r).1;
        }
    }
}

impl<T: Clone + PartialEq> Default for TopicTrie<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + PartialEq> TopicTrie<T> {
    pub fn new() -> Self {
        TopicTrie {
            root: Node::new(),
            len: 0,
        }
    }

    /// Adds a binding; returns false if `(pattern, dest)` was already bound.
    pub fn insert(&mut self, pattern: &str, dest: T) -> bool {
        let mut node = &mut self.root;
        for word in words(pattern.as_bytes()) {
            node = node.child_or_insert(word);
        }
        if node.dests.contains(&dest) {
            return false;
        }
        node.dests.push(dest);
        self.len += 1;
        true
    }

    /// Removes a binding; returns true if it was present.
    pub fn remove(&mut self, pattern: &str, dest: &T) -> bool {
        let removed = self.root.remove(words(pattern.as_bytes()), dest);
        self.len -= usize::from(removed);
        removed
    }

    /// Removes every binding whose dest satisfies `pred` (e.g. a deleted
    /// queue); returns how many bindings were removed.
    pub fn remove_dest(&mut self, pred: impl Fn(&T) -> bool) -> usize {
        let removed = self.root.retain(&pred);
        self.len -= removed;
        removed
    }

    /// Calls `out` with the dest of every binding matching `routing_key`.
    /// Each binding is reported at most once, but a dest bound with several
    /// matching patterns is reported once per pattern: the caller dedups.
    pub fn route(&self, routing_key: &[u8], out: &mut impl FnMut(&T)) {
        let rest = (!routing_key.is_empty()).then_some(routing_key);
        let expanded = HashMap::new();
        Router { out, expanded }.walk(&self.root, rest, false);
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of `(pattern, dest)` bindings.
    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn trie(bindings: &[(&str, &'static str)]) -> TopicTrie<&'static str> {
        let mut t = TopicTrie::new();
        bindings.iter().for_each(|&(p, d)| assert!(t.insert(p, d)));
        t
    }

    /// Sorted dests, duplicates kept so "reported once per binding" is checked.
    fn routed<T: Clone + Ord>(t: &TopicTrie<T>, key: impl AsRef<[u8]>) -> Vec<T> {
        let mut v = Vec::new();
        t.route(key.as_ref(), &mut |d: &T| v.push(d.clone()));
        v.sort_unstable();
        v
    }

    #[test]
    fn rabbitmq_tutorial_five() {
        let t = trie(&[("*.orange.*", "q1"), ("*.*.rabbit", "q2"), ("lazy.#", "q2")]);
        assert_eq!(routed(&t, "quick.orange.rabbit"), ["q1", "q2"]);
        assert_eq!(routed(&t, "lazy.orange.elephant"), ["q1", "q2"]);
        assert_eq!(routed(&t, "quick.orange.fox"), ["q1"]);
        assert_eq!(routed(&t, "lazy.brown.fox"), ["q2"]);
        // Bound twice, both patterns match: reported twice, the caller dedups.
        assert_eq!(routed(&t, "lazy.pink.rabbit"), ["q2", "q2"]);
        assert_eq!(routed(&t, "lazy.orange.male.rabbit"), ["q2"]);
        for key in ["quick.brown.fox", "orange", "quick.orange.male.rabbit", ""] {
            assert!(routed(&t, key).is_empty(), "{key}");
        }
    }

    /// The bindings and expectations of RabbitMQ's own topic exchange test.
    #[test]
    fn rabbitmq_test_suite_table() {
        // Comma separated so that t17, the empty pattern, can be written.
        let patterns = concat!(
            "a.b.c,a.*.c,a.#.b,a.b.b.c,#,#.#,#.b,*.*,a.*,*.b.c,a.#,a.#.#,b.b.c,",
            "a.b.b,a.b,b.c,,*.*.*,vodka.martini,a.b.c,*.#,#.*.#,*.#.#,#.#.#,*,#.b.#"
        );
        let mut t = TopicTrie::new();
        for (i, p) in (1..).zip(patterns.split(',')) {
            assert!(t.insert(p, i));
        }
        for (key, ids) in [
            ("", &[5, 6, 17, 24][..]),
            (
                "a.b.c",
                &[1, 2, 5, 6, 10, 11, 12, 18, 20, 21, 22, 23, 24, 26],
            ),
            ("a.b", &[3, 5, 6, 7, 8, 9, 11, 12, 15, 21, 22, 23, 24, 26]),
            ("a.b.b", &[3, 5, 6, 7, 11, 12, 14, 18, 21, 22, 23, 24, 26]),
            ("b.c.c", &[5, 6, 18, 21, 22, 23, 24, 26]),
            ("a.a.a.a.a", &[5, 6, 11, 12, 21, 22, 23, 24]),
            ("vodka.gin", &[5, 6, 8, 21, 22, 23, 24]),
            ("vodka.martini", &[5, 6, 8, 19, 21, 22, 23, 24]),
            ("b.b.c", &[5, 6, 10, 13, 18, 21, 22, 23, 24, 26]),
            ("nothing.here.at.all", &[5, 6, 21, 22, 23, 24]),
            ("oneword", &[5, 6, 21, 22, 23, 24, 25]),
        ] {
            assert_eq!(routed(&t, key), ids, "key {key:?}");
        }
    }

    #[test]
    fn edge_cases() {
        let t = trie(&[("#", "#"), ("*", "*"), ("", "empty"), ("a.#.b", "a#b")]);
        assert_eq!(routed(&t, ""), ["#", "empty"]); // "" has zero words, so no "*"
        assert_eq!(routed(&t, "x"), ["#", "*"]);
        assert_eq!(routed(&t, "a.b"), ["#", "a#b"]);
        assert_eq!(routed(&t, "a.x.y.b"), ["#", "a#b"]);
        assert_eq!(routed(&t, "a.b.c"), ["#"]);
        let t = trie(&[("a.#", "a#"), ("a.*", "a*"), ("a.", "a."), ("*.*", "**")]);
        assert_eq!(routed(&t, "a"), ["a#"]);
        assert_eq!(routed(&t, "a."), ["**", "a#", "a*", "a."]); // words "a", ""
        assert_eq!(routed(&t, "."), ["**"]); // words "", ""
        let t = trie(&[("a.*.b", "1"), ("a..b", "2"), ("a.b", "3"), ("*.x", "4")]);
        assert_eq!(routed(&t, "a..b"), ["1", "2"]);
        assert_eq!(routed(&t, b"\xff.x"), ["4"]); // keys need not be UTF-8
                                                  // Many `#`s against a long key: must not go exponential.
        let t = trie(&[("#.#.#.#.#.#.#.#.#.#.x", "x"), ("#.a.#.a.#.#.a.#.b", "b")]);
        let long = vec!["a"; 120].join(".");
        assert!(routed(&t, &long).is_empty());
        assert_eq!(routed(&t, format!("{long}.x")), ["x"]);
        assert_eq!(routed(&t, format!("{long}.b")), ["b"]);
    }

    #[test]
    fn insert_remove_prune() {
        let mut t = TopicTrie::default();
        assert!(t.insert("a.*.#", "q1") && t.insert("a.*.#", "q2") && t.insert("b", "q1"));
        assert!(!t.insert("a.*.#", "q1"));
        assert_eq!(t.len(), 3);
        assert!(!t.remove("a.*", &"q1") && !t.remove("a.*.#", &"q3"));
        assert!(t.remove("a.*.#", &"q1"));
        assert_eq!(routed(&t, "a.b.c"), ["q2"]);
        assert_eq!(t.remove_dest(|d| *d == "q1"), 1);
        assert!(t.remove("a.*.#", &"q2"));
        assert!(t.is_empty() && t.root.is_empty()); // emptied nodes were pruned
    }

    /// Straightforward recursive matcher over word lists, used as the oracle.
    fn reference(p: &[&str], k: &[&str]) -> bool {
        match p.split_first() {
            None => k.is_empty(),
            Some((&"#", p)) => (0..=k.len()).any(|i| reference(p, &k[i..])),
            Some((&"*", p)) => !k.is_empty() && reference(p, &k[1..]),
            Some((w, p)) => k.first() == Some(w) && reference(p, &k[1..]),
        }
    }

    fn split(s: &str) -> Vec<&str> {
        s.split('.').filter(|_| !s.is_empty()).collect() // "" has no words
    }

    fn joined(words: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(words), 0..max).prop_map(|w| w.join("."))
    }

    proptest! {
        #[test]
        fn matches_reference(
            patterns in prop::collection::vec(joined(&["a", "b", "", "*", "#"], 6), 1..24),
            keys in prop::collection::vec(joined(&["a", "b", ""], 7), 1..8),
            drop in prop::collection::vec(any::<bool>(), 24),
        ) {
            let mut t = TopicTrie::new();
            for (i, p) in patterns.iter().enumerate() {
                prop_assert!(t.insert(p, i));
            }
            let mut live = vec![true; patterns.len()];
            // Check all bindings, then after dropping some, then after dropping all.
            for round in 0..3 {
                for key in &keys {
                    let mut hits = vec![0; patterns.len()];
                    t.route(key.as_bytes(), &mut |&i: &usize| hits[i] += 1);
                    for (i, p) in patterns.iter().enumerate() {
                        let want = live[i] && reference(&split(p), &split(key));
                        prop_assert_eq!(hits[i], usize::from(want), "{:?} vs {:?}", p, key);
                    }
                }
                for (i, p) in patterns.iter().enumerate() {
                    if live[i] && (round == 1 || drop[i]) {
                        prop_assert!(t.remove(p, &i));
                        live[i] = false;
                    }
                }
            }
            prop_assert!(t.is_empty() && t.root.is_empty());
        }
    }
}
