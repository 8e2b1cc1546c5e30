//! Chat on top of the engine: a reply to a conversation, streamed as text that is only ever
//! cut at whole UTF-8 characters.

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
    pub text: String,
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
        if stop() {
            return Err(CoreError::Cancelled);
        }
        let mut stream = self.generate(prompt, &params)?;
        let mut text = TextStream::new();
        let mut reply = String::new();
        let mut tokens = 0;
        for column in stream.by_ref() {
            if stop() {
                return Err(CoreError::Cancelled);
            }
            let token = column?.tokens[0];
            if self.specials.is_terminal(token) {
                break;
            }
            tokens += 1;
            let piece = text.push(&self.tokenizer, token)?;
            if !piece.is_empty() {
                on_text(&piece)?;
                reply.push_str(&piece);
            }
        }
        let rest = text.finish(&self.tokenizer)?;
        if !rest.is_empty() {
            on_text(&rest)?;
            reply.push_str(&rest);
        }
        Ok(Completion {
            text: reply,
            finish: stream.finish_reason().unwrap_or(FinishReason::Stop),
            tokens,
        })
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
