//! Input accounting: what a command read, how much of it its caps and ratios let it use, and the
//! warning it prints when more than 1% is left unused — no input is dropped without the user
//! being told.

use serde::Serialize;

use super::loader::{conversation_max_tokens, Packing};
use crate::tasks::Task;
use crate::tokenizer::Tokenizer;
use crate::Result;

/// Share of the input a command may leave unused before it warns.
pub const UNUSED_WARN_SHARE: f64 = 0.01;

/// The warning for `unused` of `total` units (characters, tokens) left out by `cause` (the flag
/// and its value), when that is more than [`UNUSED_WARN_SHARE`] of `total`: `"warning: {cause}
/// leaves {unused} of the {total} {unit} unused ({percent}%): {remedy}"`. `None` at or under the
/// limit, or when `total` is 0.
pub fn unused_warning(
    total: usize,
    unused: usize,
    unit: &str,
    cause: &str,
    remedy: &str,
) -> Option<String> {
    if total == 0 || (unused as f64) <= UNUSED_WARN_SHARE * total as f64 {
        return None;
    }
    Some(format!(
        "warning: {cause} leaves {unused} of the {total} {unit} unused ({:.1}%): {remedy}",
        100.0 * unused as f64 / total as f64
    ))
}

/// One text source of a [`DataLoader`](super::DataLoader) and how much of it a run reads
/// ([`DataLoader::source_usage`](super::DataLoader::source_usage)).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SourceUsage {
    /// Documents in the source.
    pub documents: usize,
    /// Characters of those documents.
    pub chars: usize,
    /// Its tokens in the stream (`<|bos|>` per document included); `None` when the run never
    /// reaches it (it is then not tokenized).
    pub tokens: Option<usize>,
    /// Tokens of it the run reads (at most `tokens`: a run longer than the stream reads it all).
    pub used_tokens: usize,
}

impl SourceUsage {
    /// Share of its tokens the run reads, in [0, 1] (1 for a source with no tokens).
    pub fn share_used(&self) -> f64 {
        match self.tokens {
            Some(0) => 1.0,
            Some(n) => self.used_tokens as f64 / n as f64,
            None => 0.0,
        }
    }

    /// Characters the run reads: [`share_used`](Self::share_used) of `chars`, rounded.
    pub fn used_chars(&self) -> usize {
        (self.share_used() * self.chars as f64).round() as usize
    }
}

/// A conversation task and how much of it a fine-tuning run reads
/// ([`conversation_usage`]): `tokens = truncated_tokens + used_tokens + unread`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConversationUsage {
    /// Conversations (examples) in the task.
    pub conversations: usize,
    /// Tokens of all its conversations, rendered whole.
    pub tokens: usize,
    /// Tokens cut from conversations longer than the loader keeps: T + 1 (padded, one
    /// conversation per row) or 4 (T + 1) (packed).
    pub truncated_tokens: usize,
    /// Tokens of what is kept that the run reads.
    pub used_tokens: usize,
}

impl ConversationUsage {
    /// Kept tokens the run never reaches.
    pub fn unread_tokens(&self) -> usize {
        self.tokens - self.truncated_tokens - self.used_tokens
    }
}

/// What a run of `micro_batches` B x T micro-batches from the start of
/// [`DataLoader::conversations`](super::DataLoader::conversations)`(task, packing, ..)` reads:
/// every conversation is rendered whole to count what the loader's truncation cuts, and what
/// the run reaches of the rest (packed: `micro_batches * B * T + 1` tokens of the stream;
/// padded: `micro_batches * B` conversations). Errors: a conversation that cannot be rendered.
pub fn conversation_usage(
    task: &dyn Task,
    tokenizer: &Tokenizer,
    packing: Packing,
    batch: usize,
    seq: usize,
    micro_batches: usize,
) -> Result<ConversationUsage> {
    let keep = match packing {
        Packing::Packed => conversation_max_tokens(seq),
        Packing::Padded => seq + 1,
    };
    let mut usage = ConversationUsage {
        conversations: task.num_examples(),
        tokens: 0,
        truncated_tokens: 0,
        used_tokens: 0,
    };
    let mut kept = Vec::with_capacity(usage.conversations);
    for i in 0..usage.conversations {
        let (ids, _) = tokenizer.render_conversation(&task.get_example(i)?, usize::MAX)?;
        usage.tokens += ids.len();
        usage.truncated_tokens += ids.len().saturating_sub(keep);
        kept.push(ids.len().min(keep));
    }
    usage.used_tokens = match packing {
        Packing::Packed => kept
            .iter()
            .sum::<usize>()
            .min(micro_batches.saturating_mul(batch * seq).saturating_add(1)),
        Packing::Padded => kept.iter().take(micro_batches.saturating_mul(batch)).sum(),
    };
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_only_over_one_percent() {
        assert_eq!(
            unused_warning(1000, 10, "characters", "--x 1", "raise --x"),
            None
        );
        assert_eq!(
            unused_warning(0, 0, "characters", "--x 1", "raise --x"),
            None
        );
        assert_eq!(
            unused_warning(1000, 11, "characters", "--x 1", "raise --x").unwrap(),
            "warning: --x 1 leaves 11 of the 1000 characters unused (1.1%): raise --x"
        );
    }

    #[test]
    fn share_and_used_chars() {
        let u = |tokens, used_tokens| SourceUsage {
            documents: 2,
            chars: 1000,
            tokens,
            used_tokens,
        };
        assert_eq!(u(Some(400), 100).share_used(), 0.25);
        assert_eq!(u(Some(400), 100).used_chars(), 250);
        assert_eq!(u(None, 0).used_chars(), 0);
        assert_eq!(u(Some(0), 0).share_used(), 1.0);
    }

    #[test]
    fn conversation_usage_counts_truncation_and_reach() {
        use crate::tasks::CustomJson;
        let tok = crate::tokenizer::tests::small_tokenizer();
        let task = CustomJson::identity().unwrap();
        let lens: Vec<usize> = (0..task.num_examples())
            .map(|i| {
                let conv = task.get_example(i).unwrap();
                tok.render_conversation(&conv, usize::MAX).unwrap().0.len()
            })
            .collect();
        let total: usize = lens.iter().sum();
        let seq = 40;
        // Padded: rows keep T + 1 tokens; 3 micro-batches of 2 rows reach 6 conversations.
        let u = conversation_usage(&task, tok, Packing::Padded, 2, seq, 3).unwrap();
        let cut: usize = lens.iter().map(|&n| n.saturating_sub(seq + 1)).sum();
        assert!(
            cut > 0,
            "some identity conversations are longer than 41 tokens"
        );
        let used: usize = lens[..6].iter().map(|&n| n.min(seq + 1)).sum();
        assert_eq!(
            u,
            ConversationUsage {
                conversations: lens.len(),
                tokens: total,
                truncated_tokens: cut,
                used_tokens: used
            }
        );
        assert_eq!(u.unread_tokens(), total - cut - used);
        // Packed: conversations keep 4 (T + 1) tokens; 3 micro-batches read 3 * 2 * 40 + 1.
        let u = conversation_usage(&task, tok, Packing::Packed, 2, seq, 3).unwrap();
        let cut: usize = lens.iter().map(|&n| n.saturating_sub(4 * (seq + 1))).sum();
        assert_eq!((u.truncated_tokens, u.used_tokens), (cut, 241));
        // A run longer than the task reads all that is kept.
        let u = conversation_usage(&task, tok, Packing::Padded, 2, seq, 10_000).unwrap();
        assert_eq!(u.unread_tokens(), 0);
    }
}
