//! What an analysis keeps per connection: whole while the connection is heard from, packed
//! while it is quiet ([`crate::event::Sink::quiet`]).
//!
//! A long-lived channel spends most of its life waiting, and a capture point may see a hundred
//! thousand of them. Its figures are then mostly zeros, empty queues and default windows, which
//! postcard's varints pack into a byte each: `health`'s 1,112 bytes per connection into about
//! 190.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Figures that pack larger than this stay whole: a connection's next packet would unpack them
/// again, and a crafted capture could have each of its packets, a second apart, rebuild
/// thousands of stream windows. A quiet connection's figures pack into a few hundred bytes.
pub const MAX_PACKED: usize = 4096;

#[derive(Debug)]
pub enum Kept<T> {
    /// Boxed, so that a table of them, mostly packed, is not sized for the whole figures.
    Whole(Box<T>),
    Packed(Box<[u8]>),
}

impl<T: Serialize + DeserializeOwned + Clone> Kept<T> {
    pub fn new(figures: T) -> Self {
        Kept::Whole(Box::new(figures))
    }

    /// The figures, made whole if they were packed. Packed bytes that do not read back would
    /// be a bug (they are this program's own): the figures start again from `fresh` rather
    /// than the run stopping.
    pub fn whole_or(&mut self, fresh: impl FnOnce() -> T) -> &mut T {
        if let Kept::Packed(bytes) = self {
            let figures = unpack(bytes);
            debug_assert!(figures.is_some(), "packed figures that do not read back");
            *self = Kept::new(figures.unwrap_or_else(fresh));
        }
        match self {
            Kept::Whole(figures) => figures,
            Kept::Packed(_) => unreachable!("made whole above"),
        }
    }

    /// Packs the figures, by way of `scratch` so that the box is made at its size at once;
    /// those that pack larger than [`MAX_PACKED`] stay whole.
    pub fn pack(&mut self, scratch: &mut Vec<u8>) {
        let Kept::Whole(figures) = self else {
            return;
        };
        scratch.clear();
        if let Ok(bytes) = postcard::to_extend(&**figures, std::mem::take(scratch)) {
            if bytes.len() <= MAX_PACKED {
                *self = Kept::Packed(bytes.as_slice().into());
            }
            *scratch = bytes;
        }
    }

    /// The figures, whole; none if packed bytes do not read back (see [`whole_or`]).
    ///
    /// [`whole_or`]: Self::whole_or
    pub fn into_whole(self) -> Option<T> {
        match self {
            Kept::Whole(figures) => Some(*figures),
            Kept::Packed(bytes) => unpack(&bytes),
        }
    }

    /// The figures as they stand, without changing how they are kept.
    pub fn get(&self) -> Option<Cow<'_, T>> {
        match self {
            Kept::Whole(figures) => Some(Cow::Borrowed(figures)),
            Kept::Packed(bytes) => unpack(bytes).map(Cow::Owned),
        }
    }

    pub fn is_packed(&self) -> bool {
        matches!(self, Kept::Packed(_))
    }
}

fn unpack<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    postcard::from_bytes(bytes).ok()
}

/// Figures by connection, each packed while its connection is quiet. In no order: whoever
/// reports them sorts the connections.
#[derive(Debug)]
pub struct PerConn<T> {
    /// Every frame of `health` looks up its connection: SipHash was a fifth of the analysis.
    conns: HashMap<u64, Kept<T>, foldhash::fast::RandomState>,
    /// Where figures are packed.
    scratch: Vec<u8>,
}

impl<T> Default for PerConn<T> {
    fn default() -> Self {
        PerConn {
            conns: HashMap::default(),
            scratch: Vec::new(),
        }
    }
}

impl<T: Serialize + DeserializeOwned + Clone> PerConn<T> {
    /// Connection `conn`'s figures, made whole if they were packed, or `fresh` ones.
    pub fn whole(&mut self, conn: u64, fresh: impl Fn() -> T) -> &mut T {
        self.conns
            .entry(conn)
            .or_insert_with(|| Kept::new(fresh()))
            .whole_or(fresh)
    }

    /// Connection `conn` has gone quiet ([`crate::event::Sink::quiet`]): its figures are
    /// packed until it is heard from again.
    pub fn quiet(&mut self, conn: u64) {
        if let Some(kept) = self.conns.get_mut(&conn) {
            kept.pack(&mut self.scratch);
        }
    }

    pub fn insert(&mut self, conn: u64, figures: T) {
        self.conns.insert(conn, Kept::new(figures));
    }

    /// Connection `conn`'s figures, whole, taken out (see [`Kept::into_whole`]).
    pub fn remove(&mut self, conn: u64) -> Option<T> {
        self.conns.remove(&conn)?.into_whole()
    }

    /// Connection `conn`'s figures as they stand (see [`Kept::get`]).
    pub fn get(&self, conn: u64) -> Option<Cow<'_, T>> {
        self.conns.get(&conn)?.get()
    }

    /// The connections with figures, in no order.
    pub fn conns(&self) -> impl Iterator<Item = u64> + '_ {
        self.conns.keys().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Takes in the figures of connections not here (another thread's).
    pub fn absorb(&mut self, other: PerConn<T>) {
        self.conns.extend(other.conns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Figures {
        calls: u64,
        since: Option<i64>,
        names: Vec<(Cow<'static, str>, u64)>,
    }

    #[test]
    fn packed_figures_come_back_the_same_and_small() {
        let figures = Figures {
            calls: 3,
            since: Some(1_700_000_000_000_000_000),
            names: vec![("OK".into(), 2), ("UNAVAILABLE".into(), 1)],
        };
        let mut kept = Kept::new(figures.clone());
        let mut scratch = Vec::new();
        kept.pack(&mut scratch);
        match &kept {
            // A byte for the count, 9 for the time, then the names and their counts.
            Kept::Packed(bytes) => assert_eq!(bytes.len(), 1 + 1 + 9 + 1 + 3 + 1 + 12 + 1),
            Kept::Whole(_) => panic!("not packed"),
        }
        assert_eq!(kept.get().as_deref(), Some(&figures));
        kept.whole_or(|| unreachable!()).calls += 1;
        assert!(!kept.is_packed());
        assert_eq!(kept.into_whole().map(|f| f.calls), Some(4));
    }

    #[test]
    fn large_figures_stay_whole() {
        let figures = Figures {
            calls: 0,
            since: None,
            names: (0..MAX_PACKED as u64).map(|n| ("x".into(), n)).collect(),
        };
        let mut kept = Kept::new(figures.clone());
        kept.pack(&mut Vec::new());
        assert!(!kept.is_packed());
        assert_eq!(kept.get().as_deref(), Some(&figures));
    }

    #[test]
    fn unreadable_bytes_start_the_figures_again() {
        let mut kept: Kept<Figures> = Kept::Packed(Box::new([0xff; 3]));
        assert!(kept.get().is_none());
        let fresh = || Figures {
            calls: 0,
            since: None,
            names: Vec::new(),
        };
        if cfg!(debug_assertions) {
            // A bug, not input: debug builds say so.
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                kept.whole_or(fresh);
            }));
            assert!(caught.is_err());
        } else {
            assert_eq!(kept.whole_or(fresh).calls, 0);
        }
    }
}
