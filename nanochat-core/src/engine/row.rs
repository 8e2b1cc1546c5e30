//! The state of one generated row: its tokens, the tokens the engine must force next (a
//! calculator result), and the python-block state machine of nanochat's tool use.

use std::collections::VecDeque;

use crate::tokenizer::Tokenizer;
use crate::tools::calculator;
use crate::Result;

/// The special tokens the engine acts on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Specials {
    pub bos: u32,
    pub assistant_end: u32,
    pub python_start: u32,
    pub python_end: u32,
    pub output_start: u32,
    pub output_end: u32,
}

impl Specials {
    pub fn of(tok: &Tokenizer) -> Result<Specials> {
        Ok(Specials {
            bos: tok.get_bos_token_id(),
            assistant_end: tok.encode_special("<|assistant_end|>")?,
            python_start: tok.encode_special("<|python_start|>")?,
            python_end: tok.encode_special("<|python_end|>")?,
            output_start: tok.encode_special("<|output_start|>")?,
            output_end: tok.encode_special("<|output_end|>")?,
        })
    }

    /// Whether `token` ends a row (`<|assistant_end|>` or `<|bos|>`).
    pub fn is_terminal(&self, token: u32) -> bool {
        token == self.assistant_end || token == self.bos
    }
}

#[derive(Debug, Default)]
pub(crate) struct RowState {
    /// Tokens to emit before sampling again (mask 0).
    pub forced: VecDeque<u32>,
    in_python: bool,
    python_tokens: Vec<u32>,
    pub completed: bool,
}

impl RowState {
    /// Takes in the token emitted for this row: ends the row on a terminal token, and runs the
    /// tool state machine: the tokens between `<|python_start|>` and `<|python_end|>` are
    /// decoded and given to the calculator; a result is queued as
    /// `<|output_start|> result <|output_end|>`. Anything the calculator refuses is not
    /// evaluated and nothing is forced.
    pub fn accept(&mut self, token: u32, sp: &Specials, tok: &Tokenizer) {
        if sp.is_terminal(token) {
            self.completed = true;
        }
        if token == sp.python_start {
            self.in_python = true;
            self.python_tokens.clear();
        } else if token == sp.python_end && self.in_python {
            self.in_python = false;
            if !self.python_tokens.is_empty() {
                let expr = tok.decode(&self.python_tokens).unwrap_or_default();
                if let Some(result) = calculator(&expr) {
                    self.forced.push_back(sp.output_start);
                    self.forced.extend(tok.encode(&result));
                    self.forced.push_back(sp.output_end);
                }
            }
            self.python_tokens.clear();
        } else if self.in_python {
            self.python_tokens.push(token);
        }
    }
}
