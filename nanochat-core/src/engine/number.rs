//! Numbers of a request checked as they were written: a JSON number's text is read as an exact
//! decimal and compared with its field's range before it is converted to any machine type, so
//! `-1` is not wrapped into a `usize`, `2.00000001` is not rounded to the `f32` 2.0, and
//! `1e309` (past `f64`) is still a number that is out of range. The same checks serve the
//! command-line flags (`-t`, `-k`, `-m`, `-n`).

use std::cmp::Ordering;

use super::request::RequestError;

/// The inclusive range of a numeric field, and whether it takes integers only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Lowest value allowed.
    pub lo: i128,
    /// Highest value allowed.
    pub hi: i128,
    /// Whether only integers are allowed (else any decimal in range).
    pub integer: bool,
}

impl Limit {
    /// Integers from `lo` to `hi`, both included.
    pub const fn integers(lo: i128, hi: i128) -> Limit {
        Limit {
            lo,
            hi,
            integer: true,
        }
    }

    /// Any decimal from `lo` to `hi`, both included.
    pub const fn numbers(lo: i128, hi: i128) -> Limit {
        Limit {
            lo,
            hi,
            integer: false,
        }
    }

    /// `1-200`, or `-2 to 2` when the low end is negative.
    pub fn range(&self) -> String {
        if self.lo < 0 {
            format!("{} to {}", self.lo, self.hi)
        } else {
            format!("{}-{}", self.lo, self.hi)
        }
    }

    /// What a value must be: `an integer in 1-200` or `a number in 0-2`.
    pub fn expected(&self) -> String {
        let kind = if self.integer {
            "an integer"
        } else {
            "a number"
        };
        format!("{kind} in {}", self.range())
    }

    /// Checks the number written as `text` (JSON syntax; a leading `+`, `.5` and `5.` are also
    /// read, for command-line flags). Errors: [`RequestError::OutOfRange`] naming `field` and
    /// the range when the text is not a finite number, is outside the range, or is fractional
    /// where an integer is meant.
    pub fn check(&self, field: &str, text: &str) -> Result<Decimal, RequestError> {
        let out = || RequestError::OutOfRange {
            field: field.to_string(),
            value: shorten(text),
            expected: self.expected(),
        };
        let d = Decimal::parse(text).ok_or_else(out)?;
        let inside = d.cmp(&Decimal::from_i128(self.lo)) != Ordering::Less
            && d.cmp(&Decimal::from_i128(self.hi)) != Ordering::Greater;
        if !inside || (self.integer && !d.is_integer()) {
            return Err(out());
        }
        Ok(d)
    }

    /// [`Limit::check`], then the value as an `f64` (exact for integers, nearest otherwise).
    pub fn float(&self, field: &str, text: &str) -> Result<f64, RequestError> {
        let d = self.check(field, text)?;
        Ok(d.to_f64())
    }

    /// [`Limit::check`] of an integer limit, then the value. The limit must lie in `u64`.
    pub fn int(&self, field: &str, text: &str) -> Result<u64, RequestError> {
        debug_assert!(self.integer && self.lo >= 0 && self.hi <= u64::MAX as i128);
        let d = self.check(field, text)?;
        Ok(d.to_i128() as u64)
    }
}

/// At most 40 characters of a value, for an error message.
fn shorten(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &t[..i]),
        None => t.to_string(),
    }
}

/// A decimal number exactly as written: `digits` x 10^`exp`, with no leading or trailing zero
/// digits (zero has no digits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    exp: i64,
}

/// Exponents are clamped to this size: a number that far from 1 compares the same either way.
const EXP_CLAMP: i64 = 1 << 40;

impl Decimal {
    /// Reads `[+-]digits[.digits][(e|E)[+-]digits]` (at least one digit before the exponent).
    /// `None` for anything else (`inf`, `NaN`, a string).
    pub fn parse(text: &str) -> Option<Decimal> {
        let s = text.trim().as_bytes();
        let mut i = 0;
        let negative = match s.first() {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let mut digits = Vec::new();
        let mut exp: i64 = 0;
        let mut seen = false;
        while i < s.len() && s[i].is_ascii_digit() {
            digits.push(s[i] - b'0');
            seen = true;
            i += 1;
        }
        if i < s.len() && s[i] == b'.' {
            i += 1;
            while i < s.len() && s[i].is_ascii_digit() {
                digits.push(s[i] - b'0');
                exp -= 1;
                seen = true;
                i += 1;
            }
        }
        if !seen {
            return None;
        }
        if i < s.len() && (s[i] == b'e' || s[i] == b'E') {
            i += 1;
            let sign = match s.get(i) {
                Some(b'-') => {
                    i += 1;
                    -1
                }
                Some(b'+') => {
                    i += 1;
                    1
                }
                _ => 1,
            };
            let start = i;
            let mut e: i64 = 0;
            while i < s.len() && s[i].is_ascii_digit() {
                e = (e * 10 + (s[i] - b'0') as i64).min(EXP_CLAMP);
                i += 1;
            }
            if i == start {
                return None;
            }
            exp = (exp + sign * e).clamp(-EXP_CLAMP, EXP_CLAMP);
        }
        if i != s.len() {
            return None;
        }
        let lead = digits.iter().take_while(|&&d| d == 0).count();
        digits.drain(..lead);
        while digits.last() == Some(&0) {
            digits.pop();
            exp += 1;
        }
        if digits.is_empty() {
            exp = 0;
        }
        Some(Decimal {
            negative: negative && !digits.is_empty(),
            digits,
            exp,
        })
    }

    /// The exact decimal of an integer.
    pub fn from_i128(v: i128) -> Decimal {
        Decimal::parse(&v.to_string()).expect("an integer's text is a number")
    }

    /// Whether it has no fractional part.
    pub fn is_integer(&self) -> bool {
        self.exp >= 0
    }

    /// The value of an integer within `i128` (callers check the range first).
    fn to_i128(&self) -> i128 {
        let mut v: i128 = 0;
        for &d in &self.digits {
            v = v * 10 + d as i128;
        }
        for _ in 0..self.exp {
            v *= 10;
        }
        if self.negative {
            -v
        } else {
            v
        }
    }

    /// The nearest `f64` (of a value in a small range; callers check the range first).
    fn to_f64(&self) -> f64 {
        let digits: String = self.digits.iter().map(|d| (b'0' + d) as char).collect();
        let sign = if self.negative { "-" } else { "" };
        format!("{sign}0{digits}e{}", self.exp)
            .parse()
            .expect("a decimal's text is a float")
    }

    /// The position of the leading digit: 10^(magnitude-1) <= |self| < 10^magnitude.
    fn magnitude(&self) -> i64 {
        self.digits.len() as i64 + self.exp
    }

    fn cmp_abs(&self, other: &Decimal) -> Ordering {
        match (self.digits.is_empty(), other.digits.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        self.magnitude()
            .cmp(&other.magnitude())
            .then_with(|| self.digits.cmp(&other.digits))
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Decimal) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Decimal) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_abs(other),
            (true, true) => other.cmp_abs(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn decimals_compare_exactly() {
        assert_eq!(d("2"), d("2.000"));
        assert_eq!(d("2"), d("0.2e1"));
        assert_eq!(d("-0"), d("0.0e5"));
        assert!(d("2.00000001") > d("2"));
        assert!(d("2.0000000000000000000001") > d("2"));
        assert!(d("1.9999999999999999999999") < d("2"));
        assert!(d("1e309") > d("4096"));
        assert!(d("-1e309") < d("0"));
        assert!(d("1e-400") > d("0") && d("1e-400") < d("1"));
        assert!(d("-0.5") < d("0.5"));
        assert!(d("-3") < d("-2"));
        assert!(d("100") > d("99.99"));
        assert!(d("1e99999999999999999999999") > d("1e308"));
        assert!(d("4096.0").is_integer() && d("4.096e3").is_integer());
        assert!(!d("2.5").is_integer() && !d("1e-1").is_integer());
        for bad in ["", "-", "inf", "NaN", "1e", "1.2.3", "\"5\"", "0x10", "1e+"] {
            assert_eq!(Decimal::parse(bad), None, "{bad}");
        }
        assert_eq!(d(".5"), d("0.5"));
        assert_eq!(d("+5."), d("5"));
    }

    #[test]
    fn limits_name_the_field_and_range() {
        let top_k = Limit::integers(1, 200);
        let temperature = Limit::numbers(0, 2);
        assert_eq!(top_k.int("top_k", "200"), Ok(200));
        assert_eq!(top_k.int("top_k", "2e2"), Ok(200));
        assert_eq!(top_k.int("top_k", "7.0"), Ok(7));
        assert_eq!(temperature.float("temperature", "2"), Ok(2.0));
        assert_eq!(temperature.float("temperature", "0.6"), Ok(0.6));
        assert_eq!(temperature.float("temperature", "-0"), Ok(0.0));
        for (limit, text) in [
            (top_k, "0"),
            (top_k, "-1"),
            (top_k, "201"),
            (top_k, "2.5"),
            (top_k, "1e309"),
            (top_k, "99999999999999999999999999999999999999999"),
            (top_k, "inf"),
            (temperature, "2.00000001"),
            (temperature, "2.0000000000000000000001"),
            (temperature, "-1e-30"),
            (temperature, "NaN"),
        ] {
            let field = if limit.integer {
                "top_k"
            } else {
                "temperature"
            };
            let e = limit.check(field, text).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("{field}: ")) && e.contains(&limit.expected()),
                "{text}: {e}"
            );
        }
        assert_eq!(
            top_k.check("top_k", "-1").unwrap_err().to_string(),
            "top_k: -1 is not an integer in 1-200"
        );
        let long = "9".repeat(100);
        assert!(top_k.check("top_k", &long).unwrap_err().to_string().len() < 100);
        let penalty = Limit::numbers(-2, 2);
        assert_eq!(penalty.range(), "-2 to 2");
    }
}
