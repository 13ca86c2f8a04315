//! [`Pair`]: a size per spatial axis, written as one integer or a pair.

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A kernel size, stride, padding or dilation per spatial axis `[height,
/// width]`. In RON it is one integer for both axes, `3`, or a pair
/// `(3, 5)` (a list `[3, 5]` is read too); it is written as one integer
/// when both are equal, so files without pairs read and write as before.
/// The default is `[0, 0]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Pair(pub [u32; 2]);

impl Pair {
    /// The same value on both axes.
    pub const fn square(v: u32) -> Pair {
        Pair([v, v])
    }

    /// `[1, 1]`, the default stride and dilation.
    pub fn one() -> Pair {
        Pair([1, 1])
    }

    /// Whether both are 1.
    pub fn is_one(&self) -> bool {
        self.0 == [1, 1]
    }

    /// Whether both are 0.
    pub fn is_zero(&self) -> bool {
        self.0 == [0, 0]
    }

    /// The height value.
    pub fn h(self) -> u32 {
        self.0[0]
    }

    /// The width value.
    pub fn w(self) -> u32 {
        self.0[1]
    }
}

impl From<u32> for Pair {
    fn from(v: u32) -> Pair {
        Pair::square(v)
    }
}

impl From<(u32, u32)> for Pair {
    fn from((h, w): (u32, u32)) -> Pair {
        Pair([h, w])
    }
}

impl From<[u32; 2]> for Pair {
    fn from(v: [u32; 2]) -> Pair {
        Pair(v)
    }
}

impl fmt::Display for Pair {
    /// `3` or `(3, 5)`, as written in RON.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [h, w] = self.0;
        if h == w { write!(f, "{h}") } else { write!(f, "({h}, {w})") }
    }
}

impl Serialize for Pair {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let [h, w] = self.0;
        if h == w { s.serialize_u32(h) } else { (h, w).serialize(s) }
    }
}

const EXPECTING: &str = "a size: an integer such as 3, or a pair (height, width) such as (3, 5)";

struct PairVisitor;

impl PairVisitor {
    fn value<E: de::Error>(v: u64) -> Result<u32, E> {
        u32::try_from(v).map_err(|_| E::custom(format_args!("{v} is too large for a size (at most {})", u32::MAX)))
    }
}

impl<'de> Visitor<'de> for PairVisitor {
    type Value = Pair;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTING)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Pair, E> {
        Ok(Pair::square(Self::value(v)?))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Pair, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format_args!("{v} is negative; expected {EXPECTING}"))),
        }
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Pair, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format_args!("{v} is too large for a size (at most {})", u32::MAX))),
        }
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Pair, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) if v < 0 => Err(E::custom(format_args!("{v} is negative; expected {EXPECTING}"))),
            Err(_) => Err(E::custom(format_args!("{v} is too large for a size (at most {})", u32::MAX))),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Pair, A::Error> {
        let h: u64 = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let w: u64 = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
        if seq.next_element::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom(format_args!(
                "a pair has two values (height, width), found more; expected {EXPECTING}"
            )));
        }
        Ok(Pair([Self::value(h)?, Self::value(w)?]))
    }
}

impl<'de> Deserialize<'de> for Pair {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Pair, D::Error> {
        d.deserialize_any(PairVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Pair, String> {
        ron::from_str::<Pair>(s).map_err(|e| e.to_string())
    }

    #[test]
    fn an_int_or_a_pair() {
        assert_eq!(parse("3"), Ok(Pair([3, 3])));
        assert_eq!(parse("(3, 5)"), Ok(Pair([3, 5])));
        assert_eq!(parse("[2, 1]"), Ok(Pair([2, 1])));
        assert_eq!(parse("4294967295"), Ok(Pair::square(u32::MAX)));
        assert!(parse("4294967296").unwrap_err().contains("too large for a size"), "{:?}", parse("4294967296"));
        assert!(parse("-1").unwrap_err().contains("negative"));
        assert!(parse("(1, 2, 3)").unwrap_err().contains("two values"));
        assert!(parse("(1)").is_err());
        let e = parse("1.5").unwrap_err();
        assert!(e.contains("an integer such as 3, or a pair (height, width)"), "{e}");
        let e = parse("\"3\"").unwrap_err();
        assert!(e.contains("an integer such as 3, or a pair (height, width)"), "{e}");
    }

    #[test]
    fn equal_values_are_written_as_one_int() {
        assert_eq!(ron::to_string(&Pair([3, 3])).unwrap(), "3");
        assert_eq!(ron::to_string(&Pair([3, 5])).unwrap(), "(3,5)");
        assert_eq!(Pair([3, 5]).to_string(), "(3, 5)");
        assert_eq!(Pair([2, 2]).to_string(), "2");
    }
}
