//! Stop strings (OpenAI's `stop`): a reply ends at the first match, which is not part of it.
//! Text is streamed through a [`StopMatcher`], which holds back any tail that could be the
//! start of a stop string, so no streamed piece ever contains any part of a matched one.

/// Cuts a growing text at the first stop string.
///
/// "First" is the match that is complete first as the text grows (the earliest end; of two
/// ending at the same place, the longer one), so the result does not depend on how the text
/// is split into pieces: the pieces [`StopMatcher::push`] and [`StopMatcher::finish`] return
/// always concatenate to the same text as one `push` of the whole.
#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
    matched: bool,
}

impl StopMatcher {
    /// A matcher of these stop strings (empty ones never match).
    pub fn new(stops: &[String]) -> StopMatcher {
        StopMatcher {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
            matched: false,
        }
    }

    /// Whether a stop string has matched (later text is dropped).
    pub fn matched(&self) -> bool {
        self.matched
    }

    /// Adds generated text; returns what is now safe to send (possibly empty): everything but
    /// a tail that could begin a stop string, or, at a match, the text before it.
    pub fn push(&mut self, text: &str) -> String {
        if self.matched {
            return String::new();
        }
        if self.stops.is_empty() {
            return text.to_string();
        }
        self.held.push_str(text);
        // The match that ends first (then the longer one). A match cannot begin in text sent
        // before: that text was never a beginning of a stop string.
        let mut first: Option<(usize, usize)> = None;
        for s in &self.stops {
            if let Some(start) = self.held.find(s.as_str()) {
                let end = start + s.len();
                if first.is_none_or(|(e, st)| end < e || (end == e && start < st)) {
                    first = Some((end, start));
                }
            }
        }
        if let Some((_, start)) = first {
            self.matched = true;
            self.held.truncate(start);
            return std::mem::take(&mut self.held);
        }
        let cut = self.unsafe_tail();
        let rest = self.held.split_off(cut);
        std::mem::replace(&mut self.held, rest)
    }

    /// Where the longest tail of the held text that is the beginning of a stop string starts
    /// (the held text's length when there is none).
    fn unsafe_tail(&self) -> usize {
        let longest = self.stops.iter().map(|s| s.len()).max().unwrap_or(0);
        let from = self.held.len().saturating_sub(longest);
        (from..self.held.len())
            .filter(|&i| self.held.is_char_boundary(i))
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.held.len())
    }

    /// At the end of the text: whatever is still held back (nothing after a match).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The text up to the first stop string, found one character at a time: the first place
    /// where some stop string ends, cut before the longest one ending there.
    fn reference(text: &str, stops: &[String]) -> (String, bool) {
        let ends = text
            .char_indices()
            .map(|(i, c)| i + c.len_utf8())
            .collect::<Vec<_>>();
        for end in ends {
            let before = &text[..end];
            let longest = stops
                .iter()
                .filter(|s| !s.is_empty() && before.ends_with(s.as_str()))
                .map(|s| s.len())
                .max();
            if let Some(len) = longest {
                return (text[..end - len].to_string(), true);
            }
        }
        (text.to_string(), false)
    }

    fn run(pieces: &[&str], stops: &[String]) -> (Vec<String>, bool) {
        let mut m = StopMatcher::new(stops);
        let mut out: Vec<String> = pieces.iter().map(|p| m.push(p)).collect();
        out.push(m.finish());
        (out, m.matched())
    }

    #[test]
    fn examples() {
        let stops = vec!["\n\n".to_string(), "User:".to_string()];
        let (out, matched) = run(&["Hello", " wor", "ld\n", "\nmore"], &stops);
        assert_eq!(out, vec!["Hello", " wor", "ld", "", ""]);
        assert!(matched);
        // A held-back beginning that does not complete is sent later.
        let (out, matched) = run(&["a Us", "ed car"], &stops);
        assert_eq!(out, vec!["a ", "Used car", ""]);
        assert!(!matched);
        let (out, _) = run(&["ends with Use"], &stops);
        assert_eq!(out, vec!["ends with ", "Use"]);
        // The match complete first wins: "c" ends before "abcd" would.
        let stops = vec!["abcd".to_string(), "c".to_string()];
        assert_eq!(run(&["xabcd"], &stops).0.concat(), "xab");
        assert_eq!(run(&["xa", "b", "cd"], &stops).0.concat(), "xab");
        // Multi-byte characters are never split.
        let stops = vec!["\u{e9}t\u{e9}".to_string()];
        let (out, _) = run(&["caf\u{e9}", " \u{e9}", "t\u{e9} x"], &stops);
        assert_eq!(out, vec!["caf", "\u{e9} ", "", ""]);
        // No stop strings: pieces pass through.
        assert_eq!(run(&["a", "b"], &[]).0, vec!["a", "b", ""]);
    }

    fn text_strategy() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop::sample::select(vec!['a', 'b', 'c', '\u{e9}', '\u{1F600}', '\n']),
            0..40,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    proptest! {
        /// However the text is split, the streamed pieces concatenate to the text up to the
        /// first stop string; when one matched, no piece holds any part of it (all that was
        /// sent is exactly the text before it).
        #[test]
        fn streaming_equals_whole_text(
            text in text_strategy(),
            stops in proptest::collection::vec(text_strategy().prop_map(|s| s.chars().take(3).collect::<String>()), 1..5),
            cuts in proptest::collection::vec(0usize..64, 0..12),
        ) {
            let (expected, expect_match) = reference(&text, &stops);
            let bounds: Vec<usize> = {
                let chars: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
                let mut b: Vec<usize> = cuts.iter().map(|c| chars[c % chars.len()]).collect();
                b.push(0);
                b.push(text.len());
                b.sort();
                b.dedup();
                b
            };
            let pieces: Vec<&str> = bounds.windows(2).map(|w| &text[w[0]..w[1]]).collect();
            let (out, matched) = run(&pieces, &stops);
            prop_assert_eq!(out.concat(), expected.clone());
            prop_assert_eq!(matched, expect_match);
            let (whole, _) = run(&[&text], &stops);
            prop_assert_eq!(whole.concat(), expected.clone());
            // Sent text is always a prefix of the final text: nothing sent is ever taken back.
            let mut sent = String::new();
            for piece in &out {
                sent.push_str(piece);
                prop_assert!(expected.starts_with(&sent));
            }
        }
    }
}
