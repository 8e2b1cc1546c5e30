//! HumanEval (OpenAI's 164 hand-written Python problems), as nanochat's tasks/humaneval.py: the
//! user gives the prompt (a signature and docstring), the reference reply is the prompt plus the
//! canonical solution, and a completion is judged by running it with the problem's tests in the
//! sandboxed `python3` of [`crate::tools::sandbox`].
//!
//! Data: `eval/humaneval.jsonl` ([`EvalData`]: fetched by scripts/fetch_data.sh, or the
//! committed sample), one problem per line with the official fields: `{"task_id", "prompt",
//! "canonical_solution", "test", "entry_point"}`. Problems keep the file's order (nanochat
//! shuffles the Hugging Face set with seed 42 first; slice with [`super::TaskSlice`] instead).

use std::collections::HashMap;
use std::path::Path;

use super::eval_data::{read_eval_file, EvalData};
use super::{content_text, Task};
use crate::tokenizer::chat::{Conversation, Message};
use crate::tools::sandbox::{run_python, SandboxLimits, SandboxOutcome};
use crate::{CoreError, Result};

/// One HumanEval problem (the official fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HumanEvalProblem {
    /// `HumanEval/0`...
    pub task_id: String,
    /// The start of the program: imports, the signature and the docstring.
    pub prompt: String,
    /// The body that completes the prompt.
    pub canonical_solution: String,
    /// Python defining `check(candidate)`, which asserts on the candidate's answers.
    pub test: String,
    /// The name of the function under test.
    pub entry_point: String,
}

/// The HumanEval task (see the module docs): problems, looked up by prompt, and the sandbox limits
/// that judge a completion.
pub struct HumanEval {
    problems: Vec<HumanEvalProblem>,
    /// Prompt text -> problem index: a conversation is judged from its user message alone.
    by_prompt: HashMap<String, usize>,
    limits: SandboxLimits,
}

impl HumanEval {
    /// The fetched set (`$NANOCHAT_DATA_DIR/eval/humaneval.jsonl`; missing: an error naming
    /// scripts/fetch_data.sh) or the committed sample.
    pub fn load(data: EvalData) -> Result<HumanEval> {
        let (text, source) = read_eval_file("eval", "humaneval.jsonl", data)?;
        HumanEval::parse(&text, &source)
    }

    /// A JSONL file of HumanEval problems.
    pub fn from_file(path: &Path) -> Result<HumanEval> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CoreError::io_or_missing(
                path,
                e,
                "fetch the evaluation sets with scripts/fetch_data.sh",
            )
        })?;
        HumanEval::parse(&text, &path.display().to_string())
    }

    /// Problems from JSONL text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<HumanEval> {
        HumanEval::from_problems(parse(text, source)?, source)
    }

    /// The set of `problems`; none, or two with one prompt, is [`CoreError::File`] naming
    /// `source`.
    fn from_problems(problems: Vec<HumanEvalProblem>, source: &str) -> Result<HumanEval> {
        if problems.is_empty() {
            return Err(CoreError::file(
                source,
                "no HumanEval problems (fetch them with scripts/fetch_data.sh)",
            ));
        }
        let mut by_prompt = HashMap::new();
        for (i, p) in problems.iter().enumerate() {
            if let Some(j) = by_prompt.insert(p.prompt.clone(), i) {
                return Err(CoreError::file(
                    source,
                    format!(
                        "{} and {} have the same prompt: a conversation could not tell them apart",
                        problems[j].task_id, p.task_id
                    ),
                ));
            }
        }
        Ok(HumanEval {
            problems,
            by_prompt,
            limits: SandboxLimits::default(),
        })
    }

    /// The same problems, run under other sandbox limits (default: [`SandboxLimits::default`],
    /// 5 s and 512 MiB a program).
    pub fn with_limits(mut self, limits: SandboxLimits) -> HumanEval {
        self.limits = limits;
        self
    }

    /// The problems, in file order.
    pub fn problems(&self) -> &[HumanEvalProblem] {
        &self.problems
    }

    /// The problem a conversation (from [`Task::get_example`]) asks: found by its user message.
    pub fn problem_of(&self, conversation: &Conversation) -> Option<&HumanEvalProblem> {
        let prompt = conversation.messages.iter().find(|m| m.role == "user")?;
        let i = *self.by_prompt.get(&content_text(&prompt.content))?;
        Some(&self.problems[i])
    }

    /// Runs a completion of the conversation's problem with its tests, for the details
    /// (traceback, timeout); [`Task::evaluate`] is whether it passed. An error when the
    /// conversation is not one of this set's or the sandbox cannot run.
    pub fn run(&self, conversation: &Conversation, completion: &str) -> Result<SandboxOutcome> {
        let problem = self.problem_of(conversation).ok_or_else(|| {
            let prompt = conversation
                .messages
                .iter()
                .find(|m| m.role == "user")
                .map(|m| content_text(&m.content))
                .unwrap_or_default();
            CoreError::Unknown {
                kind: "HumanEval prompt",
                name: prompt.chars().take(60).collect(),
                expected: "the prompt of one of this set's problems".into(),
            }
        })?;
        run_python(&HumanEval::check_program(problem, completion), &self.limits)
    }

    /// The program that judges a completion, as nanochat builds it: the prompt's imports, the
    /// completion's code ([`HumanEval::extract_program`]), the tests, `check(<entry point>)`.
    pub fn check_program(problem: &HumanEvalProblem, completion: &str) -> String {
        format!(
            "{}\n\n{}\n\n{}\ncheck({})",
            HumanEval::extract_imports(&problem.prompt),
            HumanEval::extract_program(completion),
            problem.test,
            problem.entry_point
        )
    }

    /// The code of a completion (nanochat's `extract_program`): the first fenced block
    /// (```` ```python ```` or ```` ``` ````, as the regex ```` ```(?:python)?\s*\n(.*?)\n``` ````
    /// finds it), else the whole completion; whitespace-trimmed.
    pub fn extract_program(completion: &str) -> String {
        let mut from = 0;
        while let Some(k) = completion[from..].find("```") {
            let open = from + k;
            let after = &completion[open + 3..];
            let block = after
                .strip_prefix("python")
                .and_then(fenced_body)
                .or_else(|| fenced_body(after));
            if let Some(body) = block {
                return body.trim().to_string();
            }
            from = open + 1;
        }
        completion.trim().to_string()
    }

    /// The `import` and `from` lines at the start of a prompt (nanochat's `extract_imports`:
    /// blank and comment lines are skipped, the first other line ends them), one per line.
    pub fn extract_imports(prompt: &str) -> String {
        let mut imports = Vec::new();
        for line in prompt.split('\n') {
            let s = line.trim();
            if s.starts_with("import ") || s.starts_with("from ") {
                imports.push(s);
            } else if !s.is_empty() && !s.starts_with('#') {
                break;
            }
        }
        imports.join("\n")
    }
}

/// After an opening fence (and its optional `python`): `\s*\n(.*?)\n```` anchored at the start,
/// with the regex's backtracking: the body starts after the last newline of the leading
/// whitespace that leaves a closing fence after it, and ends at the first `\n```` then.
fn fenced_body(s: &str) -> Option<&str> {
    let ws = s.len() - s.trim_start().len();
    s[..ws]
        .char_indices()
        .filter(|&(_, c)| c == '\n')
        .map(|(i, _)| i + 1)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .find_map(|start| s[start..].find("\n```").map(|end| &s[start..start + end]))
}

/// Each non-empty line a problem; a bad line is an error naming the source, the line and the
/// field (serde's own messages leave out the field of a wrong type).
fn parse(text: &str, source: &str) -> Result<Vec<HumanEvalProblem>> {
    let bad = |line: usize, why: String| CoreError::File {
        path: source.to_string(),
        why: format!("line {line}: {why}"),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let v: serde_json::Value =
                serde_json::from_str(l).map_err(|e| bad(i + 1, format!("not JSON: {e}")))?;
            let field = |name: &str| -> Result<String> {
                match v.get(name) {
                    Some(serde_json::Value::String(s)) => Ok(s.clone()),
                    Some(_) => Err(bad(i + 1, format!("field `{name}` is not a string"))),
                    None => Err(bad(i + 1, format!("no field `{name}`"))),
                }
            };
            if !v.is_object() {
                return Err(bad(i + 1, "not a JSON object".into()));
            }
            Ok(HumanEvalProblem {
                task_id: field("task_id")?,
                prompt: field("prompt")?,
                canonical_solution: field("canonical_solution")?,
                test: field("test")?,
                entry_point: field("entry_point")?,
            })
        })
        .collect()
}

impl Task for HumanEval {
    fn name(&self) -> String {
        "HumanEval".into()
    }
    fn num_examples(&self) -> usize {
        self.problems.len()
    }
    /// User: the prompt; assistant: the prompt, a newline and the canonical solution.
    fn get_example(&self, i: usize) -> Result<Conversation> {
        let p = super::example_item(&self.problems, i, "HumanEval")?;
        Ok(Conversation {
            messages: vec![
                Message::user(&p.prompt),
                Message::assistant(&format!("{}\n{}", p.prompt, p.canonical_solution)),
            ],
        })
    }
    /// Whether the completion's code passes the problem's tests in the sandbox: only when the
    /// sandbox's harness sees the program return ([`Outcome::Passed`]); leaving early with
    /// status 0 ([`Outcome::LeftEarly`]) is no pass. False too when the conversation is not
    /// one of this set's or the sandbox cannot run (logged).
    ///
    /// [`Outcome::Passed`]: crate::tools::sandbox::Outcome::Passed
    /// [`Outcome::LeftEarly`]: crate::tools::sandbox::Outcome::LeftEarly
    fn evaluate(&self, conversation: &Conversation, completion: &str) -> bool {
        match self.run(conversation, completion) {
            Ok(outcome) => outcome.status.passed(),
            Err(e) => {
                tracing::warn!("HumanEval: not evaluated: {e}");
                false
            }
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::tasks::{content_text, EvalType};
    use crate::tools::sandbox::Outcome;

    fn problems_jsonl() -> String {
        let p0 = serde_json::json!({
            "task_id": "HumanEval/0",
            "prompt": "from typing import List\n\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n    \"\"\" Check if in given list of numbers, are any two numbers closer to each other than\n    given threshold.\n    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)\n    False\n    >>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)\n    True\n    \"\"\"\n",
            "canonical_solution": "    for idx, elem in enumerate(numbers):\n        for idx2, elem2 in enumerate(numbers):\n            if idx != idx2:\n                distance = abs(elem - elem2)\n                if distance < threshold:\n                    return True\n\n    return False\n",
            "test": "\n\nMETADATA = {\n    'author': 'jt',\n    'dataset': 'test'\n}\n\n\ndef check(candidate):\n    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True\n    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05) == False\n    assert candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.95) == True\n    assert candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.8) == False\n    assert candidate([1.0, 2.0, 3.0, 4.0, 5.0, 2.0], 0.1) == True\n    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 1.0) == True\n    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 0.5) == False\n\n",
            "entry_point": "has_close_elements"
        });
        let p2 = serde_json::json!({
            "task_id": "HumanEval/2",
            "prompt": "\n\ndef truncate_number(number: float) -> float:\n    \"\"\" Given a positive floating point number, it can be decomposed into\n    and integer part (largest integer smaller than given number) and decimals\n    (leftover part always smaller than 1).\n\n    Return the decimal part of the number.\n    >>> truncate_number(3.5)\n    0.5\n    \"\"\"\n",
            "canonical_solution": "    return number % 1.0\n",
            "test": "\n\nMETADATA = {\n    'author': 'jt',\n    'dataset': 'test'\n}\n\n\ndef check(candidate):\n    assert candidate(3.5) == 0.5\n    assert abs(candidate(1.33) - 0.33) < 1e-6\n    assert abs(candidate(123.456) - 0.456) < 1e-6\n",
            "entry_point": "truncate_number"
        });
        format!("{p0}\n{p2}\n")
    }

    fn tiny() -> HumanEval {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("humaneval.jsonl");
        std::fs::write(&path, problems_jsonl()).unwrap();
        HumanEval::from_file(&path).unwrap()
    }

    #[test]
    fn examples_are_prompt_then_prompt_and_solution() {
        let he = tiny();
        assert_eq!(he.name(), "HumanEval");
        assert_eq!(he.eval_type(), EvalType::Generative);
        assert_eq!(he.num_examples(), 2);
        let c = he.get_example(1).unwrap();
        assert_eq!(c.messages.len(), 2);
        assert_eq!(c.messages[0].role, "user");
        let p = &he.problems()[1];
        assert_eq!(content_text(&c.messages[0].content), p.prompt);
        assert_eq!(
            content_text(&c.messages[1].content),
            format!("{}\n{}", p.prompt, p.canonical_solution)
        );
        assert_eq!(he.problem_of(&c).unwrap().task_id, "HumanEval/2");
        assert!(he.get_example(2).is_err());
    }

    #[test]
    fn canonical_solutions_pass_and_wrong_ones_fail() {
        let he = tiny();
        for i in 0..he.num_examples() {
            let c = he.get_example(i).unwrap();
            let reference = content_text(&c.messages[1].content);
            let out = he.run(&c, &reference).unwrap();
            assert_eq!(out.status, Outcome::Passed, "{i}: {out:?}");
        }
        let c = he.get_example(1).unwrap();
        let wrong = "def truncate_number(number: float) -> float:\n    return number\n";
        let out = he.run(&c, wrong).unwrap();
        assert_eq!(out.status, Outcome::Failed { exit_code: 1 }, "{out:?}");
        assert!(out.stderr.contains("AssertionError"), "{}", out.stderr);
        assert!(!he.evaluate(&c, wrong));
        // Not even defining the entry point.
        assert!(!he.evaluate(&c, "print('hello')"));
        // Leaving before the tests run is no pass.
        assert!(!he.evaluate(&c, "import sys\nsys.exit(0)"));
    }

    #[test]
    fn a_chatty_fenced_completion_without_imports_passes() {
        let he = tiny();
        let c = he.get_example(0).unwrap();
        // `List` comes from the prompt's imports, prepended to the extracted block.
        let completion = "Sure! Here it is:\n\n```python\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n    s = sorted(numbers)\n    return any(b - a < threshold for a, b in zip(s, s[1:]))\n```\n\nThis sorts first, so it runs in O(n log n).";
        assert!(he.evaluate(&c, completion));
    }

    #[test]
    fn a_hanging_completion_times_out() {
        let he = tiny().with_limits(SandboxLimits {
            timeout: std::time::Duration::from_millis(700),
            ..SandboxLimits::default()
        });
        let c = he.get_example(1).unwrap();
        let out = he
            .run(
                &c,
                "def truncate_number(number):\n    while True:\n        pass\n",
            )
            .unwrap();
        assert_eq!(out.status, Outcome::TimedOut);
    }

    #[test]
    fn foreign_conversations_are_not_judged() {
        let he = tiny();
        let c = Conversation {
            messages: vec![Message::user("what?"), Message::assistant("x")],
        };
        assert!(he.problem_of(&c).is_none());
        assert!(matches!(
            he.run(&c, "pass"),
            Err(CoreError::Unknown { kind: "HumanEval prompt", name, .. }) if name == "what?"
        ));
        assert!(!he.evaluate(&c, "pass"));
    }

    #[test]
    fn bad_files_name_file_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("he.jsonl");
        let first = problems_jsonl().lines().next().unwrap().to_string();
        let mut v: serde_json::Value = serde_json::from_str(&first).unwrap();
        v.as_object_mut().unwrap().remove("entry_point");
        let cases = [
            (
                format!("{first}\n\n{v}\n"),
                "line 3: no field `entry_point`",
            ),
            (
                first.replace("\"test\":", "\"test\": 7, \"x\":"),
                "line 1: field `test` is not a string",
            ),
            (format!("{first}\n{{oops\n"), "line 2: not JSON"),
            ("[1, 2]\n".to_string(), "line 1: not a JSON object"),
            (String::new(), "no HumanEval problems"),
            (format!("{first}\n{first}\n"), "the same prompt"),
        ];
        for (text, want) in cases {
            std::fs::write(&path, text).unwrap();
            let e = HumanEval::from_file(&path).err().expect(want).to_string();
            assert!(e.contains(want), "{e}");
            assert!(e.contains("he.jsonl"), "{e}");
        }
        let e = HumanEval::from_file(&dir.path().join("missing.jsonl"))
            .err()
            .unwrap();
        assert!(matches!(e, CoreError::Missing { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("scripts/fetch_data.sh") && e.contains("missing.jsonl"),
            "{e}"
        );
    }

    #[test]
    fn program_extraction_follows_nanochat() {
        let ex = HumanEval::extract_program;
        assert_eq!(ex("  def f():\n    return 1\n"), "def f():\n    return 1");
        assert_eq!(
            ex("text\n```python\ndef f(): pass\n```\nmore"),
            "def f(): pass"
        );
        assert_eq!(ex("```\nx = 1\n```"), "x = 1");
        assert_eq!(ex("```python  \n\n  x = 1\n```"), "x = 1");
        // The first block wins.
        assert_eq!(ex("```python\na = 1\n```\n```python\nb = 2\n```"), "a = 1");
        // Other tags do not open a block; the regex then tries every later fence (checked
        // against Python's `re`: the closing fence opens a "block" here).
        assert_eq!(ex("```py\nx = 1\n```\n```\ny = 2\n```"), "```\ny = 2");
        assert_eq!(ex("````python\nq\n```"), "q");
        assert_eq!(ex("```python\n\n\n```\nz"), "");
        assert_eq!(ex("```py\nx = 1\n```"), "```py\nx = 1\n```");
        // An unclosed block is no block.
        assert_eq!(ex("```python\nx = 1\n"), "```python\nx = 1");
        assert_eq!(ex("```python\n\n```"), "");
    }

    #[test]
    fn imports_are_the_leading_import_lines() {
        let im = HumanEval::extract_imports;
        assert_eq!(
            im("from typing import List\n\n\ndef f(x: List[int]):\n    import os\n"),
            "from typing import List"
        );
        assert_eq!(
            im("# header\nimport math\n  from typing import Tuple\n\ndef f(): pass\nimport re\n"),
            "import math\nfrom typing import Tuple"
        );
        assert_eq!(im("\n\ndef truncate_number(number: float) -> float:\n"), "");
        let p = HumanEvalProblem {
            task_id: "t".into(),
            prompt: "import math\n\ndef f():\n".into(),
            canonical_solution: String::new(),
            test: "def check(c):\n    assert c() == 1\n".into(),
            entry_point: "f".into(),
        };
        assert_eq!(
            HumanEval::check_program(&p, "```python\ndef f():\n    return 1\n```"),
            "import math\n\ndef f():\n    return 1\n\ndef check(c):\n    assert c() == 1\n\ncheck(f)"
        );
    }

    /// A problem whose prompt opens a string on its import line, so that whatever a model
    /// writes (the reference reply too: it repeats that line, closing the string, then opens
    /// another) is inert text, and whose tests close it and exit with status 0 before `check`.
    fn leaving_problem() -> HumanEval {
        let p = serde_json::json!({
            "task_id": "Leave/0",
            "prompt": "import posix; _inert = \"\"\"\n\"\"\"\ndef leave(x: int) -> int:\n",
            "canonical_solution": "    return x\n",
            "test": "\"\"\"\nposix._exit(0)\n\n\ndef check(candidate):\n    assert candidate(1) == 2\n",
            "entry_point": "leave"
        });
        HumanEval::parse(&format!("{p}\n"), "leave.jsonl").unwrap()
    }

    #[test]
    fn a_program_that_leaves_before_its_tests_scores_zero() {
        let he = leaving_problem();
        let c = he.get_example(0).unwrap();
        let reference = content_text(&c.messages[1].content);
        for completion in [
            reference.as_str(),
            "def leave(x):\n    return x\n",
            "anything",
        ] {
            let out = he.run(&c, completion).unwrap();
            assert_eq!(out.status, Outcome::LeftEarly { exit_code: 0 }, "{out:?}");
            assert!(!he.evaluate(&c, completion), "{completion}");
        }
        // Through chat-eval's scoring: a model answering the reference scores 0%, not 100%.
        let tok = crate::tokenizer::tests::small_tokenizer();
        let oracle = crate::eval::fake::OracleModel::new(tok, &[&he]).unwrap();
        let accuracy = crate::eval::evaluate_task(&oracle, tok, &he).unwrap();
        assert_eq!(accuracy, 0.0);
    }

    /// Every canonical solution of the committed sample passes its tests.
    #[test]
    fn committed_sample_canonical_solutions_pass() {
        let he = match HumanEval::load(EvalData::Samples) {
            Ok(he) => he,
            Err(e) => {
                eprintln!("skipped: no committed HumanEval sample ({e})");
                return;
            }
        };
        for i in 0..he.num_examples() {
            let c = he.get_example(i).unwrap();
            let out = he.run(&c, &content_text(&c.messages[1].content)).unwrap();
            assert_eq!(
                out.status,
                Outcome::Passed,
                "{}: {}",
                he.problems()[i].task_id,
                out.stderr
            );
        }
        eprintln!("{} canonical solutions pass", he.num_examples());
    }
}
