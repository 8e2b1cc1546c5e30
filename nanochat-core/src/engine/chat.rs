//! Chat on top of the engine: a reply to a conversation, streamed as text that is only ever
//! cut at whole UTF-8 characters.

use super::stop::StopMatcher;
use super::{Engine, FinishReason, GenerateParams};
use crate::tokenizer::chat::{Conversation, Message};
use crate::tokenizer::Tokenizer;
use crate::{CoreError, Result};

/// Turns a growing token sequence into text increments: a byte-level token can end inside a
/// multi-byte character, which decodes as U+FFFD until the rest arrives; such a tail is held
/// back until it is complete (or the stream ends). Only the tokens since the last complete
/// piece are decoded again, so a reply costs linear time.
#[derive(Debug, Default)]
pub struct TextStream {
    pending: Vec<u32>,
}

impl TextStream {
    /// An empty stream (nothing held back).
    pub fn new() -> TextStream {
        TextStream::default()
    }

    /// Adds a token; returns the new text that is now complete (possibly empty).
    pub fn push(&mut self, tok: &Tokenizer, token: u32) -> Result<String> {
        self.pending.push(token);
        let text = tok.decode(&self.pending)?;
        if text.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        self.pending.clear();
        Ok(text)
    }

    /// Whatever is still held back (at the end of a stream).
    pub fn finish(&mut self, tok: &Tokenizer) -> Result<String> {
        let text = tok.decode(&self.pending)?;
        self.pending.clear();
        Ok(text)
    }
}

/// The prompt that asks for the assistant's next message after `conv` (which ends with a user
/// message; a leading system message is merged into the first user turn): the conversation
/// rendered in the chat format, then `<|assistant_start|>`.
pub fn completion_prompt(tok: &Tokenizer, conv: &Conversation) -> Result<Vec<u32>> {
    let mut with_slot = conv.clone();
    with_slot.messages.push(Message::assistant(""));
    tok.render_for_completion(&with_slot)
}

/// What [`Engine::stream_text`] produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// The reply's text (stop string and terminal token excluded).
    pub text: String,
    /// Why generation ended.
    pub finish: FinishReason,
    /// Tokens generated (the terminal token excluded).
    pub tokens: usize,
}

impl Engine {
    /// The prompt that asks for the assistant's next message after `conv` (which ends with a
    /// user message; a leading system message is merged into the first user turn).
    pub fn completion_prompt(&self, conv: &Conversation) -> Result<Vec<u32>> {
        completion_prompt(&self.tokenizer, conv)
    }

    /// One sample after `prompt`, as text: `on_text` receives it as it is generated (whole
    /// characters only) and may stop it by returning an error (which is returned).
    pub fn stream_text(
        &self,
        prompt: &[u32],
        params: &GenerateParams,
        on_text: impl FnMut(&str) -> Result<()>,
    ) -> Result<Completion> {
        self.stream_text_until(prompt, params, || false, on_text)
    }

    /// [`Engine::stream_text`] that also stops, with [`CoreError::Cancelled`], as soon as
    /// `stop()` is true: checked before the prefill and at every token, text or not.
    pub fn stream_text_until(
        &self,
        prompt: &[u32],
        params: &GenerateParams,
        stop: impl Fn() -> bool,
        mut on_text: impl FnMut(&str) -> Result<()>,
    ) -> Result<Completion> {
        let params = GenerateParams {
            num_samples: 1,
            ..params.clone()
        };
        let mut choices =
            self.stream_choices_until(prompt, &params, &[], stop, |_, text| on_text(text))?;
        Ok(choices.remove(0))
    }

    /// `params.num_samples` replies after `prompt`, sampled independently from one prefill (the
    /// choices of an OpenAI request): `on_text(index, text)` receives each choice's text as it
    /// is generated (whole characters only, never any part of a matched stop string) and may
    /// stop everything by returning an error (which is returned). A choice ends at its
    /// terminal token or at the first of `stop_strings` (the match excluded), both with
    /// [`FinishReason::Stop`]; else when the stream does (`max_tokens` or a full context).
    /// Stops with [`CoreError::Cancelled`] as soon as `stop()` is true (checked before the
    /// prefill and at every token). Returns the choices in order.
    pub fn stream_choices_until(
        &self,
        prompt: &[u32],
        params: &GenerateParams,
        stop_strings: &[String],
        stop: impl Fn() -> bool,
        mut on_text: impl FnMut(usize, &str) -> Result<()>,
    ) -> Result<Vec<Completion>> {
        if stop() {
            return Err(CoreError::Cancelled);
        }
        let mut stream = self.generate(prompt, params)?;
        let mut choices: Vec<Choice> = (0..params.num_samples)
            .map(|_| Choice::new(stop_strings))
            .collect();
        for column in stream.by_ref() {
            if stop() {
                return Err(CoreError::Cancelled);
            }
            let column = column?;
            for (i, c) in choices.iter_mut().enumerate() {
                if c.finish.is_some() {
                    continue;
                }
                let token = column.tokens[i];
                if self.specials.is_terminal(token) {
                    c.end(&self.tokenizer, FinishReason::Stop, |t| on_text(i, t))?;
                    continue;
                }
                c.tokens += 1;
                let piece = c.text.push(&self.tokenizer, token)?;
                let piece = c.stops.push(&piece);
                c.send(&piece, |t| on_text(i, t))?;
                if c.stops.matched() {
                    c.finish = Some(FinishReason::Stop);
                }
            }
            if choices.iter().all(|c| c.finish.is_some()) {
                break;
            }
        }
        let end = stream.finish_reason().unwrap_or(FinishReason::Stop);
        for (i, c) in choices.iter_mut().enumerate() {
            if c.finish.is_none() {
                c.end(&self.tokenizer, end, |t| on_text(i, t))?;
            }
        }
        Ok(choices
            .into_iter()
            .map(|c| Completion {
                text: c.reply,
                finish: c.finish.unwrap_or(end),
                tokens: c.tokens,
            })
            .collect())
    }

    /// The assistant's reply to `conv` (which ends with a user message), one sample: `on_text`
    /// receives the text as it is generated (whole characters only); returns the whole reply
    /// (without `<|assistant_end|>`) and why it stopped.
    pub fn reply(
        &self,
        conv: &Conversation,
        params: &GenerateParams,
        on_text: impl FnMut(&str) -> Result<()>,
    ) -> Result<(String, FinishReason)> {
        let prompt = self.completion_prompt(conv)?;
        let c = self.stream_text(&prompt, params, on_text)?;
        Ok((c.text, c.finish))
    }
}

/// One choice being generated: its text so far, what is held back, why it ended.
struct Choice {
    text: TextStream,
    stops: StopMatcher,
    reply: String,
    tokens: usize,
    finish: Option<FinishReason>,
}

impl Choice {
    fn new(stop_strings: &[String]) -> Choice {
        Choice {
            text: TextStream::new(),
            stops: StopMatcher::new(stop_strings),
            reply: String::new(),
            tokens: 0,
            finish: None,
        }
    }

    fn send(&mut self, piece: &str, on_text: impl FnOnce(&str) -> Result<()>) -> Result<()> {
        if !piece.is_empty() {
            on_text(piece)?;
            self.reply.push_str(piece);
        }
        Ok(())
    }

    /// Ends the choice: what the text stream and the stop matcher still hold is sent.
    fn end(
        &mut self,
        tok: &Tokenizer,
        reason: FinishReason,
        on_text: impl FnOnce(&str) -> Result<()>,
    ) -> Result<()> {
        let rest = self.text.finish(tok)?;
        let mut piece = self.stops.push(&rest);
        if self.stops.matched() {
            self.finish = Some(FinishReason::Stop);
        } else {
            piece.push_str(&self.stops.finish());
            self.finish = Some(reason);
        }
        self.send(&piece, on_text)
    }
}
