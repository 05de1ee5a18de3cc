//! OPEN amounts in integer base units.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Decimal places of OPEN (and gOPEN): 1 OPEN = 10^18 base units.
pub const DECIMALS: u32 = 18;

/// One whole OPEN in base units.
pub const ONE_OPEN: u128 = 1_000_000_000_000_000_000;

/// An amount of OPEN (or gOPEN) in base units.
///
/// All arithmetic is checked and returns `None` (or an [`AmountError`]) on
/// overflow or underflow: there is no silent wrapping and no floating point.
/// In JSON an amount is a decimal string of base units (`"1500000000000000000"`)
/// because JSON numbers cannot carry 128 bits; [`Amount::parse_open`] and
/// [`Amount::to_open_string`] convert to and from human OPEN (`"1.5"`).
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Amount(pub u128);

/// Why an amount could not be parsed or computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// The text is not a non-negative decimal number.
    #[error("invalid amount {0:?}: expected a non-negative decimal like 12 or 0.5")]
    Syntax(String),
    /// More than 18 decimal places.
    #[error("invalid amount {0:?}: OPEN has at most 18 decimal places")]
    TooPrecise(String),
    /// The value does not fit in 128 bits of base units.
    #[error("amount {0:?} is too large")]
    Overflow(String),
}

impl Amount {
    /// Zero.
    pub const ZERO: Amount = Amount(0);

    /// `n` whole OPEN. Panics on overflow: use only for constants and tests.
    pub const fn open(n: u64) -> Self {
        Amount(n as u128 * ONE_OPEN)
    }

    /// Base units.
    pub const fn base_units(self) -> u128 {
        self.0
    }

    /// Whether this is zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self + rhs`, or `None` on overflow.
    pub fn checked_add(self, rhs: Amount) -> Option<Amount> {
        self.0.checked_add(rhs.0).map(Amount)
    }

    /// `self - rhs`, or `None` if `rhs > self`.
    pub fn checked_sub(self, rhs: Amount) -> Option<Amount> {
        self.0.checked_sub(rhs.0).map(Amount)
    }

    /// `self * n`, or `None` on overflow.
    pub fn checked_mul(self, n: u128) -> Option<Amount> {
        self.0.checked_mul(n).map(Amount)
    }

    /// `floor(self * num / den)` without intermediate overflow for any
    /// `num <= den` (the common case: a basis-point or weight share).
    /// Returns `None` if `den == 0` or the result overflows.
    pub fn mul_div_floor(self, num: u128, den: u128) -> Option<Amount> {
        if den == 0 {
            return None;
        }
        // (q*den + r) * num / den = q*num + r*num/den, with r < den.
        let q = self.0 / den;
        let r = self.0 % den;
        let whole = q.checked_mul(num)?;
        let part = mul_div_u128(r, num, den)?;
        whole.checked_add(part).map(Amount)
    }

    /// Parses human OPEN: `"12"`, `"0.5"`, `"1_000.25"`.
    pub fn parse_open(s: &str) -> Result<Amount, AmountError> {
        let clean: String = s.trim().chars().filter(|c| *c != '_').collect();
        let syntax = || AmountError::Syntax(s.to_string());
        let (int, frac) = match clean.split_once('.') {
            Some((i, f)) => (i, f),
            None => (clean.as_str(), ""),
        };
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(syntax());
        }
        if frac.len() > DECIMALS as usize {
            return Err(AmountError::TooPrecise(s.to_string()));
        }
        let overflow = || AmountError::Overflow(s.to_string());
        let int_v: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| overflow())?
        };
        let mut frac_v: u128 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| syntax())?
        };
        frac_v *= 10u128.pow(DECIMALS - frac.len() as u32);
        int_v
            .checked_mul(ONE_OPEN)
            .and_then(|v| v.checked_add(frac_v))
            .map(Amount)
            .ok_or_else(overflow)
    }

    /// Human OPEN with trailing zeros trimmed: `1.5`, `12`, `0.000000000000000001`.
    pub fn to_open_string(self) -> String {
        let int = self.0 / ONE_OPEN;
        let frac = self.0 % ONE_OPEN;
        if frac == 0 {
            return int.to_string();
        }
        let f = format!("{frac:018}");
        format!("{int}.{}", f.trim_end_matches('0'))
    }
}

/// `floor(a * b / d)` for `a < d`, computed in 256 bits so it cannot overflow
/// in the intermediate product. `None` only if the quotient exceeds `u128`.
fn mul_div_u128(a: u128, b: u128, d: u128) -> Option<u128> {
    // 128x128 -> 256-bit product as (hi, lo).
    let (a_hi, a_lo) = (a >> 64, a & u64::MAX as u128);
    let (b_hi, b_lo) = (b >> 64, b & u64::MAX as u128);
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let hh = a_hi * b_hi;
    let mid = (ll >> 64) + (lh & u64::MAX as u128) + (hl & u64::MAX as u128);
    let lo = (ll & u64::MAX as u128) | (mid << 64);
    let hi = hh + (lh >> 64) + (hl >> 64) + (mid >> 64);
    if hi == 0 {
        return Some(lo / d);
    }
    if hi >= d {
        return None;
    }
    // Long division of the 256-bit (hi, lo) by d, one bit at a time.
    let mut rem = hi;
    let mut q: u128 = 0;
    for i in (0..128).rev() {
        let carry = rem >> 127;
        rem = (rem << 1) | ((lo >> i) & 1);
        q <<= 1;
        if carry == 1 || rem >= d {
            rem = rem.wrapping_sub(d);
            q |= 1;
        }
    }
    Some(q)
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} OPEN", self.to_open_string())
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({})", self.to_open_string())
    }
}

impl FromStr for Amount {
    type Err = AmountError;
    /// Parses human OPEN (see [`Amount::parse_open`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Amount::parse_open(s)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Str(String),
            Num(u64),
        }
        match Repr::deserialize(d)? {
            Repr::Str(s) => s
                .parse::<u128>()
                .map(Amount)
                .map_err(|_| serde::de::Error::custom(format!("invalid base-unit amount {s:?}"))),
            Repr::Num(n) => Ok(Amount(n as u128)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_and_print() {
        assert_eq!(
            Amount::parse_open("1.5").unwrap(),
            Amount(1_500_000_000_000_000_000)
        );
        assert_eq!(Amount::parse_open("12").unwrap(), Amount::open(12));
        assert_eq!(Amount::parse_open(".25").unwrap().to_open_string(), "0.25");
        assert_eq!(Amount(1).to_open_string(), "0.000000000000000001");
        assert!(matches!(
            Amount::parse_open("1.0000000000000000001"),
            Err(AmountError::TooPrecise(_))
        ));
        assert!(matches!(
            Amount::parse_open("-1"),
            Err(AmountError::Syntax(_))
        ));
        assert!(matches!(
            Amount::parse_open("1e5"),
            Err(AmountError::Syntax(_))
        ));
        assert!(matches!(
            Amount::parse_open(""),
            Err(AmountError::Syntax(_))
        ));
        assert!(matches!(
            Amount::parse_open("999999999999999999999999"),
            Err(AmountError::Overflow(_))
        ));
    }

    #[test]
    fn mul_div_wide_operands() {
        let m = u128::MAX;
        assert_eq!(Amount(m).mul_div_floor(m, m), Some(Amount(m)));
        assert_eq!(Amount(m).mul_div_floor(m - 1, m), Some(Amount(m - 1)));
        assert_eq!(Amount(m - 7).mul_div_floor(3, m), Some(Amount(2)));
        assert_eq!(Amount(m).mul_div_floor(2, 1), None);
        assert_eq!(Amount(5).mul_div_floor(1, 0), None);
    }

    #[test]
    fn json_is_base_unit_string() {
        let a = Amount::open(3);
        let j = serde_json::to_string(&a).unwrap();
        assert_eq!(j, "\"3000000000000000000\"");
        assert_eq!(serde_json::from_str::<Amount>(&j).unwrap(), a);
    }

    proptest! {
        #[test]
        fn mul_div_matches_wide_reference(a in any::<u128>(), num in any::<u64>(), den in 1u64..) {
            let got = Amount(a).mul_div_floor(num as u128, den as u128);
            // Reference with u128 pieces: a*num/den where num, den < 2^64.
            let q = a / den as u128;
            let r = a % den as u128;
            let expect = q.checked_mul(num as u128)
                .and_then(|w| w.checked_add(r * num as u128 / den as u128));
            prop_assert_eq!(got.map(|x| x.0), expect);
        }

        #[test]
        fn open_string_round_trips(v in any::<u128>()) {
            let a = Amount(v);
            prop_assert_eq!(Amount::parse_open(&a.to_open_string()).unwrap(), a);
        }
    }
}
