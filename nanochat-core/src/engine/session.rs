//! A chat session (the loop of nanochat's `chat_cli.py`, without its terminal): the
//! conversation so far, what a typed line asks for, and one turn's reply. The caller keeps
//! the input and output.

use serde_json::{json, Value};

use super::{Engine, FinishReason, GenerateParams};
use crate::tokenizer::chat::{Conversation, Message};
use crate::Result;

/// What a line typed in the chat asks for (surrounding whitespace ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input<'a> {
    /// A blank line: nothing to do.
    Empty,
    /// `quit` or `exit`: end the session.
    Quit,
    /// `clear`: start a new conversation.
    Clear,
    /// A message to the assistant (trimmed).
    Message(&'a str),
}

impl Input<'_> {
    /// Reads one typed line.
    pub fn parse(line: &str) -> Input<'_> {
        match line.trim() {
            "" => Input::Empty,
            "quit" | "exit" => Input::Quit,
            "clear" => Input::Clear,
            text => Input::Message(text),
        }
    }
}

/// One reply as raw token ids (`chat-cli -p ... --json`): for comparing devices token for
/// token.
#[derive(Clone, Debug, PartialEq)]
pub struct IdsReply {
    /// The decoded reply (its terminal token included when it emitted one).
    pub reply: String,
    /// The generated token ids.
    pub tokens: Vec<u32>,
    /// Why generation stopped.
    pub finish: FinishReason,
}

impl IdsReply {
    /// The one JSON object `chat-cli --json` prints: `reply`, `tokens`, `finish_reason`.
    pub fn to_json(&self) -> Value {
        json!({
            "reply": self.reply,
            "tokens": self.tokens,
            "finish_reason": self.finish.as_str(),
        })
    }
}

/// A conversation with one engine and fixed sampling settings: each turn adds the user's
/// message and the assistant's reply; a failed turn leaves the conversation as it was.
pub struct ChatSession<'e> {
    engine: &'e Engine,
    params: GenerateParams,
    conv: Conversation,
}

impl<'e> ChatSession<'e> {
    /// A new, empty conversation with `engine`, sampling with `params`.
    pub fn new(engine: &'e Engine, params: GenerateParams) -> ChatSession<'e> {
        ChatSession {
            engine,
            params,
            conv: Conversation::new(Vec::new()),
        }
    }

    /// The messages so far.
    pub fn conversation(&self) -> &Conversation {
        &self.conv
    }

    /// The model's context length in tokens (a reply stops when it is full).
    pub fn block_size(&self) -> usize {
        self.engine.model().config().block_size
    }

    /// Forgets every message.
    pub fn clear(&mut self) {
        self.conv.messages.clear();
    }

    /// Sends `text` as the user's message: `on_text` receives the reply as it is generated
    /// (see [`Engine::reply`]); returns the whole reply and why it stopped. On an error the
    /// unanswered message is forgotten.
    pub fn turn(
        &mut self,
        text: &str,
        on_text: impl FnMut(&str) -> Result<()>,
    ) -> Result<(String, FinishReason)> {
        let (engine, params) = (self.engine, self.params.clone());
        self.exchange(text, |conv| engine.reply(conv, &params, on_text), |r| &r.0)
    }

    /// Sends `text` as the user's message and returns the reply's raw ids (see
    /// [`Engine::generate_ids`]) with their decoded text. On an error the unanswered message
    /// is forgotten.
    pub fn turn_ids(&mut self, text: &str) -> Result<IdsReply> {
        let (engine, params) = (self.engine, self.params.clone());
        let generate = |conv: &Conversation| {
            let prompt = engine.completion_prompt(conv)?;
            let (tokens, finish) = engine.generate_ids(&prompt, &params)?;
            let reply = engine.tokenizer().decode(&tokens)?;
            Ok(IdsReply {
                reply,
                tokens,
                finish,
            })
        };
        self.exchange(text, generate, |r| &r.reply)
    }

    /// Adds the user's `text`, answers it with `answer` and adds the reply (`reply_of` its
    /// text); removes the user's message again when `answer` fails.
    fn exchange<T>(
        &mut self,
        text: &str,
        answer: impl FnOnce(&Conversation) -> Result<T>,
        reply_of: impl FnOnce(&T) -> &String,
    ) -> Result<T> {
        self.conv.messages.push(Message::user(text));
        match answer(&self.conv) {
            Ok(out) => {
                let reply = Message::assistant_from_reply(reply_of(&out));
                self.conv.messages.push(reply);
                Ok(out)
            }
            Err(e) => {
                self.conv.messages.pop();
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::engine;
    use crate::CoreError;

    fn greedy(max_tokens: usize) -> GenerateParams {
        GenerateParams {
            max_tokens,
            temperature: 0.0,
            ..Default::default()
        }
    }

    #[test]
    fn typed_lines_are_commands_or_messages() {
        assert_eq!(Input::parse("  \n"), Input::Empty);
        assert_eq!(Input::parse("quit"), Input::Quit);
        assert_eq!(Input::parse(" exit\n"), Input::Quit);
        assert_eq!(Input::parse("clear"), Input::Clear);
        assert_eq!(Input::parse("  hi there \n"), Input::Message("hi there"));
        assert_eq!(Input::parse("clear it"), Input::Message("clear it"));
    }

    #[test]
    fn turns_add_both_messages_and_clear_forgets_them() {
        let e = engine(128, 7);
        let mut s = ChatSession::new(&e, greedy(6));
        let mut streamed = String::new();
        let (reply, _) = s
            .turn("Hello there", |t| {
                streamed.push_str(t);
                Ok(())
            })
            .unwrap();
        assert_eq!(streamed, reply);
        // The same turn straight from the engine gives the same reply.
        let conv = Conversation::new(vec![Message::user("Hello there")]);
        let (direct, _) = e.reply(&conv, &greedy(6), |_| Ok(())).unwrap();
        assert_eq!(reply, direct);
        let mut want = conv.clone();
        want.messages.push(Message::assistant_from_reply(&reply));
        assert_eq!(s.conversation(), &want);
        s.clear();
        assert!(s.conversation().messages.is_empty());
        assert_eq!(s.block_size(), 128);
    }

    #[test]
    fn a_failed_turn_leaves_the_conversation_as_it_was() {
        let e = engine(128, 7);
        let mut s = ChatSession::new(&e, greedy(6));
        s.turn("first", |_| Ok(())).unwrap();
        let before = s.conversation().clone();
        let err = s
            .turn("second", |_| {
                Err(CoreError::invalid("stdout", "closed", "open"))
            })
            .unwrap_err();
        assert!(err.to_string().contains("stdout"), "{err}");
        assert_eq!(s.conversation(), &before);
    }

    #[test]
    fn turn_ids_are_the_raw_stream_of_the_prompt() {
        let e = engine(128, 7);
        let mut s = ChatSession::new(&e, greedy(5));
        let got = s.turn_ids("Hi").unwrap();
        let conv = Conversation::new(vec![Message::user("Hi")]);
        let prompt = e.completion_prompt(&conv).unwrap();
        let (tokens, finish) = e.generate_ids(&prompt, &greedy(5)).unwrap();
        assert_eq!(got.tokens, tokens);
        assert_eq!(got.finish, finish);
        assert_eq!(got.reply, e.tokenizer().decode(&tokens).unwrap());
        let j = got.to_json();
        assert_eq!(j["tokens"], json!(tokens));
        assert_eq!(j["finish_reason"], finish.as_str());
        assert_eq!(s.conversation().messages.len(), 2);
    }
}
