//! nanochat's safe calculator: arithmetic on numbers with `+ - * / ( )` (commas in numbers are
//! removed; `**` is refused), and `'text'.count('x')`. Anything else is not evaluated (`None`).
//! Results print as Python would: integers stay integers unless divided, floats keep a `.0`.
//!
//! A small recursive-descent parser, never `eval`: there is no way from the input to anything
//! but these operations. Inputs are length-limited and deep nesting is refused, so hostile
//! expressions cost bounded time and stack.

/// Longest expression evaluated.
pub const MAX_EXPRESSION_LEN: usize = 512;
/// Deepest parenthesis nesting evaluated.
const MAX_DEPTH: usize = 64;

/// Evaluates a calculator expression, as nanochat's `use_calculator` does; `None` when it is
/// not one the calculator accepts or has no finite value.
pub fn calculator(expr: &str) -> Option<String> {
    let expr = expr.trim();
    if expr.is_empty() || expr.len() > MAX_EXPRESSION_LEN {
        return None;
    }
    if expr.contains(".count(") {
        return count(expr);
    }
    let cleaned: String = expr.chars().filter(|&c| c != ',').collect();
    if cleaned.contains("**") || !cleaned.chars().all(|c| "0123456789+-*/.() ".contains(c)) {
        return None;
    }
    let mut p = Parser {
        s: cleaned.as_bytes(),
        i: 0,
        depth: 0,
    };
    let v = p.expr()?;
    p.skip_ws();
    if p.i != p.s.len() {
        return None;
    }
    v.render()
}

/// `'text'.count('x')` with single or double quotes; the text may not contain its quote.
fn count(expr: &str) -> Option<String> {
    let (text, rest) = quoted(expr)?;
    let rest = rest.strip_prefix(".count(")?;
    let (needle, rest) = quoted(rest)?;
    if rest != ")" || needle.is_empty() {
        return None;
    }
    Some(text.matches(needle).count().to_string())
}

/// A string literal at the start of `s` and what follows it.
fn quoted(s: &str) -> Option<(&str, &str)> {
    let q = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let end = s[1..].find(q)? + 1;
    let inner = &s[1..end];
    if inner.contains('\\') {
        return None;
    }
    Some((inner, &s[end + 1..]))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn f(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    fn render(self) -> Option<String> {
        match self {
            Num::Int(i) => Some(i.to_string()),
            Num::Float(f) if !f.is_finite() => None,
            Num::Float(f) => {
                // Python's str(float): shortest round-trip digits, `.0` on integral values,
                // exponent form for very large or small magnitudes.
                if f != 0.0 && (f.abs() >= 1e16 || f.abs() < 1e-4) {
                    let s = format!("{f:e}");
                    let (mant, exp) = s.split_once('e')?;
                    let exp: i32 = exp.parse().ok()?;
                    let mant = if mant.contains('.') {
                        mant.to_string()
                    } else {
                        format!("{mant}.0")
                    };
                    let mant = mant.trim_end_matches(".0");
                    Some(format!(
                        "{mant}e{}{:02}",
                        if exp < 0 { '-' } else { '+' },
                        exp.abs()
                    ))
                } else if f.fract() == 0.0 {
                    Some(format!("{f:.1}"))
                } else {
                    Some(format!("{f}"))
                }
            }
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i] == b' ' {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    /// expr := term (('+' | '-') term)*
    fn expr(&mut self) -> Option<Num> {
        self.left_assoc(*b"+-", Self::term)
    }

    /// term := factor (('*' | '/') factor)*
    fn term(&mut self) -> Option<Num> {
        self.left_assoc(*b"*/", Self::factor)
    }

    /// operand ((ops[0] | ops[1]) operand)*, folded from the left.
    fn left_assoc(&mut self, ops: [u8; 2], operand: fn(&mut Self) -> Option<Num>) -> Option<Num> {
        let mut v = operand(self)?;
        while let Some(op) = self.peek().filter(|c| ops.contains(c)) {
            self.i += 1;
            let r = operand(self)?;
            v = arith(v, r, op)?;
        }
        Some(v)
    }

    /// factor := ('+' | '-') factor | '(' expr ')' | number
    fn factor(&mut self) -> Option<Num> {
        match self.peek()? {
            b'-' | b'+' => {
                let neg = self.s[self.i] == b'-';
                self.i += 1;
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return None;
                }
                let v = self.factor()?;
                self.depth -= 1;
                Some(if neg {
                    match v {
                        Num::Int(i) => Num::Int(i.checked_neg()?),
                        Num::Float(f) => Num::Float(-f),
                    }
                } else {
                    v
                })
            }
            b'(' => {
                self.i += 1;
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return None;
                }
                let v = self.expr()?;
                if self.peek()? != b')' {
                    return None;
                }
                self.i += 1;
                self.depth -= 1;
                Some(v)
            }
            _ => self.number(),
        }
    }

    fn number(&mut self) -> Option<Num> {
        let start = self.i;
        while self.i < self.s.len() && (self.s[self.i].is_ascii_digit() || self.s[self.i] == b'.') {
            self.i += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        if text.is_empty() || text.matches('.').count() > 1 || text == "." {
            return None;
        }
        if text.contains('.') {
            text.parse::<f64>().ok().map(Num::Float)
        } else {
            text.parse::<i128>().ok().map(Num::Int)
        }
    }
}

fn arith(a: Num, b: Num, op: u8) -> Option<Num> {
    let r = match (a, b, op) {
        (_, _, b'/') => {
            let d = b.f();
            if d == 0.0 {
                return None;
            }
            Num::Float(a.f() / d)
        }
        (Num::Int(x), Num::Int(y), b'+') => Num::Int(x.checked_add(y)?),
        (Num::Int(x), Num::Int(y), b'-') => Num::Int(x.checked_sub(y)?),
        (Num::Int(x), Num::Int(y), b'*') => Num::Int(x.checked_mul(y)?),
        (x, y, b'+') => Num::Float(x.f() + y.f()),
        (x, y, b'-') => Num::Float(x.f() - y.f()),
        (x, y, b'*') => Num::Float(x.f() * y.f()),
        _ => return None,
    };
    match r {
        Num::Float(f) if !f.is_finite() => None,
        Num::Int(i) if i.unsigned_abs() > 10u128.pow(30) => None,
        r => Some(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn arithmetic_like_python() {
        let cases = [
            ("1+2", "3"),
            ("2 * (3 + 4)", "14"),
            ("10 / 4", "2.5"),
            ("8 / 2", "4.0"),
            ("1,234 * 2", "2468"),
            ("-3 - -2", "-1"),
            ("0.1 + 0.2", "0.30000000000000004"),
            ("1 / 3", "0.3333333333333333"),
            ("(((7)))", "7"),
            ("2.5 * 4", "10.0"),
            ("1e3", ""),
        ];
        for (e, want) in cases {
            let got = calculator(e);
            if want.is_empty() {
                assert_eq!(got, None, "{e}");
            } else {
                assert_eq!(got.as_deref(), Some(want), "{e}");
            }
        }
    }

    #[test]
    fn string_counts() {
        assert_eq!(calculator("'strawberry'.count('r')").as_deref(), Some("3"));
        assert_eq!(calculator("\"banana\".count(\"an\")").as_deref(), Some("2"));
        assert_eq!(calculator("'abc'.count('z')").as_deref(), Some("0"));
    }

    #[test]
    fn hostile_inputs_are_refused() {
        for e in [
            "__import__('os').system('rm -rf /')",
            "2**100",
            "1/0",
            "1 / (2 - 2)",
            "open('x')",
            "'a'.count('a'); import os",
            "'a\\'.count('a')",
            "",
            "()",
            "1 +",
            "1..2",
            "9999999999999999999999999999999 * 9999999999999999999999999",
            &"(".repeat(200),
            &"1+".repeat(400),
            "'abc'.count('')",
        ] {
            assert_eq!(calculator(e), None, "{e:?} should not evaluate");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "[0-9+\\-*/(). ,']{0,80}") {
            let _ = calculator(&s);
        }

        #[test]
        fn integer_sums_are_exact(a in -1_000_000i64..1_000_000, b in -1_000_000i64..1_000_000) {
            prop_assert_eq!(calculator(&format!("{a} + {b}")), Some((a + b).to_string()));
            prop_assert_eq!(calculator(&format!("{a} * {b}")), Some((a * b).to_string()));
        }
    }
}
