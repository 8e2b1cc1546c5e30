//! A restricted pickle reader: the opcodes `torch.save` and `pickle.dump` emit for a state dict, an
//! optimizer state dict or a tiktoken `Encoding`, and nothing else. Nothing is ever executed:
//! a global (`GLOBAL`, `STACK_GLOBAL`) must be on the caller's allowlist, and the few callables
//! it may name are interpreted here by name (`collections.OrderedDict()`, torch's
//! `_rebuild_tensor_v2`, `_rebuild_parameter`, `_codecs.encode`). Any other opcode or global
//! is an error naming it.
//!
//! Objects live in an arena and refer to each other by index, so shared and self-referencing
//! structures cost nothing to build; [`Pickle::to_value`] turns the result into a tree with a
//! depth limit and a visit budget, so an adversarial file can neither recurse the stack away
//! nor blow up exponentially.
//!
//! Opcode semantics follow CPython's `Lib/pickle.py` (`_Unpickler`) and its documentation in
//! `Lib/pickletools.py`.

use std::collections::HashMap;

/// Why a pickle was refused; the caller adds the file name.
pub type PickleError = String;

/// An object of the pickle's arena.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<usize>),
    List(Vec<usize>),
    Dict(Vec<(usize, usize)>),
    /// An allowlisted global, `module.name`.
    Global(String),
    /// A storage named by a persistent id: `('storage', <dtype storage class>, key, location,
    /// numel)`.
    Storage {
        class: String,
        key: String,
        numel: u64,
    },
    /// `_rebuild_tensor_v2(storage, offset, size, stride, ...)`.
    Tensor {
        storage: usize,
        offset: u64,
        size: Vec<u64>,
        stride: Vec<u64>,
    },
    /// An instance of an allowlisted class (`NEWOBJ`), with the state `BUILD` gave it.
    Object {
        class: String,
        state: Option<usize>,
    },
}

/// A pickled value as a tree ([`Pickle::to_value`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Python's `None`.
    None,
    /// A `bool`.
    Bool(bool),
    /// An `int` that fits in 64 bits.
    Int(i64),
    /// A `float`.
    Float(f64),
    /// A `str`.
    Str(String),
    /// A `bytes`.
    Bytes(Vec<u8>),
    /// A `tuple` or a `list`.
    List(Vec<Value>),
    /// A `dict` or `OrderedDict`, in insertion order.
    Dict(Vec<(Value, Value)>),
    /// A tensor: which storage (its archive key and storage class), the element offset, size
    /// and stride.
    Tensor(TensorRef),
    /// An instance of an allowlisted class and its `__setstate__` state.
    Object {
        /// `module.name` of the class.
        class: String,
        /// The state `BUILD` gave it (`None` without one).
        state: Box<Value>,
    },
}

/// Where a tensor's elements are: the storage's archive key and class, and the view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorRef {
    /// The storage's name in the archive (`data/<key>`).
    pub key: String,
    /// torch's storage class (`torch.FloatStorage`, `torch.BFloat16Storage`...).
    pub class: String,
    /// Elements in the storage.
    pub storage_numel: u64,
    /// The view's first element, in elements.
    pub offset: u64,
    /// The view's shape.
    pub size: Vec<u64>,
    /// The view's strides, in elements.
    pub stride: Vec<u64>,
}

/// The storage classes `torch.save` names (the legacy typed storages it still writes).
pub const STORAGE_CLASSES: [&str; 10] = [
    "torch.FloatStorage",
    "torch.DoubleStorage",
    "torch.HalfStorage",
    "torch.BFloat16Storage",
    "torch.LongStorage",
    "torch.IntStorage",
    "torch.ShortStorage",
    "torch.CharStorage",
    "torch.ByteStorage",
    "torch.BoolStorage",
];

/// The globals a torch state dict or optimizer state may name: a subset of what
/// `torch.load(weights_only=True)` allows.
pub const TORCH_GLOBALS: [&str; 4] = [
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "_codecs.encode",
];

/// Every global a torch file may name: [`TORCH_GLOBALS`] and [`STORAGE_CLASSES`].
pub fn torch_allowed() -> Vec<&'static str> {
    TORCH_GLOBALS
        .iter()
        .chain(STORAGE_CLASSES.iter())
        .copied()
        .collect()
}

/// Most nested containers [`Pickle::to_value`] follows.
const MAX_DEPTH: usize = 64;

/// A parsed pickle: its arena and the object `STOP` returned.
pub struct Pickle {
    nodes: Vec<Node>,
    root: usize,
    /// Bytes of the pickle: [`Pickle::to_value`] copies at most a few times this many.
    len: usize,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                format!(
                    "truncated at byte {}: {n} more bytes needed, {} left",
                    self.pos,
                    self.data.len() - self.pos
                )
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, PickleError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, PickleError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("a GLOBAL name without its newline")?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| "a GLOBAL name that is not UTF-8")?;
        self.pos += n + 1;
        Ok(s)
    }
}

fn utf8(b: &[u8]) -> Result<String, PickleError> {
    String::from_utf8(b.to_vec()).map_err(|_| "a string that is not UTF-8".to_string())
}

impl Pickle {
    /// Runs the pickle in `data` with the globals in `allowed` (`module.name`). Errors name the
    /// opcode, global or structure refused, and the byte offset.
    pub fn parse(data: &[u8], allowed: &[&str]) -> Result<Pickle, PickleError> {
        let mut p = Pickle {
            nodes: Vec::new(),
            root: 0,
            len: data.len(),
        };
        let mut r = Reader { data, pos: 0 };
        let mut stack: Vec<usize> = Vec::new();
        let mut marks: Vec<usize> = Vec::new();
        let mut memo: HashMap<u32, usize> = HashMap::new();
        loop {
            let at = r.pos;
            let op = r.u8()?;
            let err = |why: String| format!("opcode 0x{op:02x} at byte {at}: {why}");
            macro_rules! pop {
                () => {
                    stack
                        .pop()
                        .ok_or_else(|| err("the stack is empty".into()))?
                };
            }
            macro_rules! pop_mark {
                () => {{
                    let m = marks.pop().ok_or_else(|| err("no MARK to pop to".into()))?;
                    if m > stack.len() {
                        return Err(err("a MARK above the stack".into()));
                    }
                    stack.split_off(m)
                }};
            }
            match op {
                // PROTO
                0x80 => {
                    let v = r.u8()?;
                    if v > 5 {
                        return Err(err(format!("pickle protocol {v} (at most 5 is known)")));
                    }
                }
                // FRAME: a length hint only.
                0x95 => {
                    r.u64()?;
                }
                // STOP
                b'.' => {
                    p.root = pop!();
                    return Ok(p);
                }
                // MARK
                b'(' => marks.push(stack.len()),
                // POP
                b'0' => {
                    pop!();
                }
                // POP_MARK
                b'1' => {
                    let _ = pop_mark!();
                }
                // DUP
                b'2' => {
                    let top = *stack.last().ok_or_else(|| err("the stack is empty".into()))?;
                    stack.push(top);
                }
                b'N' => stack.push(p.push(Node::None)),
                0x88 => stack.push(p.push(Node::Bool(true))),
                0x89 => stack.push(p.push(Node::Bool(false))),
                // BININT, BININT1, BININT2
                b'J' => {
                    let v = r.u32()? as i32 as i64;
                    stack.push(p.push(Node::Int(v)));
                }
                b'K' => {
                    let v = r.u8()? as i64;
                    stack.push(p.push(Node::Int(v)));
                }
                b'M' => {
                    let v = r.u16()? as i64;
                    stack.push(p.push(Node::Int(v)));
                }
                // LONG1, LONG4: little-endian two's complement
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        r.u8()? as usize
                    } else {
                        r.u32()? as usize
                    };
                    let b = r.take(n)?;
                    if n > 8 {
                        return Err(err(format!("an integer of {n} bytes (at most 8 supported)")));
                    }
                    let mut v: i64 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= (byte as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    stack.push(p.push(Node::Int(v)));
                }
                // BINFLOAT: big-endian
                b'G' => {
                    let v = f64::from_be_bytes(r.take(8)?.try_into().unwrap());
                    stack.push(p.push(Node::Float(v)));
                }
                // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => r.u32()? as usize,
                        0x8c => r.u8()? as usize,
                        _ => usize::try_from(r.u64()?).map_err(|_| err("too long".into()))?,
                    };
                    let s = utf8(r.take(n)?).map_err(err)?;
                    stack.push(p.push(Node::Str(s)));
                }
                // BINBYTES, SHORT_BINBYTES, BINBYTES8
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'B' => r.u32()? as usize,
                        b'C' => r.u8()? as usize,
                        _ => usize::try_from(r.u64()?).map_err(|_| err("too long".into()))?,
                    };
                    let b = r.take(n)?.to_vec();
                    stack.push(p.push(Node::Bytes(b)));
                }
                b'}' => stack.push(p.push(Node::Dict(Vec::new()))),
                b']' => stack.push(p.push(Node::List(Vec::new()))),
                b')' => stack.push(p.push(Node::Tuple(Vec::new()))),
                // TUPLE
                b't' => {
                    let items = pop_mark!();
                    stack.push(p.push(Node::Tuple(items)));
                }
                // TUPLE1..3
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if stack.len() < n {
                        return Err(err(format!("TUPLE{n} on a stack of {}", stack.len())));
                    }
                    let items = stack.split_off(stack.len() - n);
                    stack.push(p.push(Node::Tuple(items)));
                }
                // LIST
                b'l' => {
                    let items = pop_mark!();
                    stack.push(p.push(Node::List(items)));
                }
                // DICT
                b'd' => {
                    let items = pop_mark!();
                    let pairs = pairs(&items).map_err(err)?;
                    stack.push(p.push(Node::Dict(pairs)));
                }
                // APPEND
                b'a' => {
                    let v = pop!();
                    let l = *stack.last().ok_or_else(|| err("the stack is empty".into()))?;
                    match &mut p.nodes[l] {
                        Node::List(items) => items.push(v),
                        _ => return Err(err("APPEND to something not a list".into())),
                    }
                }
                // APPENDS
                b'e' => {
                    let vs = pop_mark!();
                    let l = *stack.last().ok_or_else(|| err("the stack is empty".into()))?;
                    match &mut p.nodes[l] {
                        Node::List(items) => items.extend(vs),
                        _ => return Err(err("APPENDS to something not a list".into())),
                    }
                }
                // SETITEM
                b's' => {
                    let v = pop!();
                    let k = pop!();
                    let d = *stack.last().ok_or_else(|| err("the stack is empty".into()))?;
                    p.set_items(d, vec![(k, v)]).map_err(err)?;
                }
                // SETITEMS
                b'u' => {
                    let items = pop_mark!();
                    let kv = pairs(&items).map_err(err)?;
                    let d = *stack.last().ok_or_else(|| err("the stack is empty".into()))?;
                    p.set_items(d, kv).map_err(err)?;
                }
                // BINPUT, LONG_BINPUT, MEMOIZE
                b'q' | b'r' | 0x94 => {
                    let key = match op {
                        b'q' => r.u8()? as u32,
                        b'r' => r.u32()?,
                        _ => memo.len() as u32,
                    };
                    let top = *stack.last().ok_or_else(|| err("the stack is empty".into()))?;
                    memo.insert(key, top);
                }
                // BINGET, LONG_BINGET
                b'h' | b'j' => {
                    let key = if op == b'h' {
                        r.u8()? as u32
                    } else {
                        r.u32()?
                    };
                    let v = *memo
                        .get(&key)
                        .ok_or_else(|| err(format!("memo entry {key} was never stored")))?;
                    stack.push(v);
                }
                // GLOBAL
                b'c' => {
                    let module = r.line()?.to_string();
                    let name = r.line()?;
                    let g = global(&format!("{module}.{name}"), allowed).map_err(err)?;
                    stack.push(p.push(Node::Global(g)));
                }
                // STACK_GLOBAL
                0x93 => {
                    let name = pop!();
                    let module = pop!();
                    let (Node::Str(m), Node::Str(n)) = (&p.nodes[module], &p.nodes[name]) else {
                        return Err(err("STACK_GLOBAL of something not two strings".into()));
                    };
                    let g = global(&format!("{m}.{n}"), allowed).map_err(err)?;
                    stack.push(p.push(Node::Global(g)));
                }
                // REDUCE
                b'R' => {
                    let args = pop!();
                    let f = pop!();
                    let node = p.reduce(f, args).map_err(err)?;
                    stack.push(p.push(node));
                }
                // NEWOBJ: cls.__new__(cls, *args) for an allowlisted class without arguments.
                0x81 => {
                    let args = pop!();
                    let cls = pop!();
                    let Node::Global(class) = &p.nodes[cls] else {
                        return Err(err("NEWOBJ of something not a global".into()));
                    };
                    if !matches!(&p.nodes[args], Node::Tuple(a) if a.is_empty()) {
                        return Err(err(format!("NEWOBJ of {class} with arguments")));
                    }
                    if class.starts_with("torch.") || TORCH_GLOBALS.contains(&class.as_str()) {
                        return Err(err(format!("NEWOBJ of {class}")));
                    }
                    let class = class.clone();
                    stack.push(p.push(Node::Object { class, state: None }));
                }
                // BUILD: only an object's first state.
                b'b' => {
                    let state = pop!();
                    let obj = *stack.last().ok_or_else(|| err("the stack is empty".into()))?;
                    let empty_state = matches!(&p.nodes[state], Node::Dict(d) if d.is_empty());
                    let state_is_dict = matches!(&p.nodes[state], Node::Dict(_));
                    match &mut p.nodes[obj] {
                        Node::Object { state: s @ None, .. } => *s = Some(state),
                        Node::Object { class, .. } => {
                            return Err(err(format!("a second BUILD of {class}")))
                        }
                        // A state dict's `_metadata` attribute (`{'_metadata': ...}`): ignored.
                        Node::Dict(_) if state_is_dict => {}
                        Node::Tensor { .. } if empty_state => {}
                        other => {
                            return Err(err(format!("BUILD of {}", kind(other))));
                        }
                    }
                }
                // BINPERSID: torch's storages.
                b'Q' => {
                    let pid = pop!();
                    let node = p.storage(pid).map_err(err)?;
                    stack.push(p.push(node));
                }
                other => {
                    return Err(format!(
                        "opcode 0x{other:02x} ({}) at byte {at} is not supported (only what torch.save and pickle.dump emit for state dicts)",
                        opcode_name(other)
                    ))
                }
            }
        }
    }

    fn push(&mut self, n: Node) -> usize {
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    fn set_items(&mut self, d: usize, kv: Vec<(usize, usize)>) -> Result<(), PickleError> {
        match &mut self.nodes[d] {
            Node::Dict(items) => {
                items.extend(kv);
                Ok(())
            }
            other => Err(format!("SETITEM on {}", kind(other))),
        }
    }

    fn int(&self, i: usize, what: &str) -> Result<i64, PickleError> {
        match &self.nodes[i] {
            Node::Int(v) => Ok(*v),
            other => Err(format!("{what}: {} where an int belongs", kind(other))),
        }
    }

    fn ints(&self, i: usize, what: &str) -> Result<Vec<u64>, PickleError> {
        match &self.nodes[i] {
            Node::Tuple(items) => items
                .iter()
                .map(|&j| {
                    u64::try_from(self.int(j, what)?)
                        .map_err(|_| format!("{what}: a negative value"))
                })
                .collect(),
            other => Err(format!("{what}: {} where a tuple belongs", kind(other))),
        }
    }

    /// `callable(*args)` for the allowlisted callables.
    fn reduce(&self, f: usize, args: usize) -> Result<Node, PickleError> {
        let Node::Global(name) = &self.nodes[f] else {
            return Err(format!("REDUCE of {}", kind(&self.nodes[f])));
        };
        let Node::Tuple(a) = &self.nodes[args] else {
            return Err(format!(
                "REDUCE of {name} with arguments that are not a tuple"
            ));
        };
        match name.as_str() {
            "collections.OrderedDict" if a.is_empty() => Ok(Node::Dict(Vec::new())),
            "torch._utils._rebuild_tensor_v2" if (6..=7).contains(&a.len()) => {
                if !matches!(self.nodes[a[0]], Node::Storage { .. }) {
                    return Err("_rebuild_tensor_v2 of something not a storage".into());
                }
                let offset = u64::try_from(self.int(a[1], "storage offset")?)
                    .map_err(|_| "a negative storage offset".to_string())?;
                let size = self.ints(a[2], "tensor size")?;
                let stride = self.ints(a[3], "tensor stride")?;
                if size.len() != stride.len() {
                    return Err(format!(
                        "a tensor of {} dimensions with {} strides",
                        size.len(),
                        stride.len()
                    ));
                }
                Ok(Node::Tensor {
                    storage: a[0],
                    offset,
                    size,
                    stride,
                })
            }
            "torch._utils._rebuild_parameter" if a.len() == 3 => match &self.nodes[a[0]] {
                t @ Node::Tensor { .. } => Ok(t.clone()),
                other => Err(format!("_rebuild_parameter of {}", kind(other))),
            },
            "_codecs.encode" if a.len() == 2 => match (&self.nodes[a[0]], &self.nodes[a[1]]) {
                (Node::Str(s), Node::Str(enc)) if enc == "latin1" || enc == "latin-1" => s
                    .chars()
                    .map(|c| {
                        u8::try_from(c as u32)
                            .map_err(|_| "a latin1 string above U+00FF".to_string())
                    })
                    .collect::<Result<Vec<u8>, _>>()
                    .map(Node::Bytes),
                _ => Err("_codecs.encode other than of a str as latin1".into()),
            },
            _ => Err(format!("a call of {name} with {} arguments", a.len())),
        }
    }

    /// `persistent_load(('storage', class, key, location, numel))`.
    fn storage(&self, pid: usize) -> Result<Node, PickleError> {
        let Node::Tuple(t) = &self.nodes[pid] else {
            return Err(format!(
                "a persistent id that is {}",
                kind(&self.nodes[pid])
            ));
        };
        if t.len() != 5 {
            return Err(format!("a persistent id of {} items (5 expected)", t.len()));
        }
        match (&self.nodes[t[0]], &self.nodes[t[1]], &self.nodes[t[2]]) {
            (Node::Str(tag), Node::Global(class), Node::Str(key)) if tag == "storage" => {
                if !STORAGE_CLASSES.contains(&class.as_str()) {
                    return Err(format!("storage class {class}"));
                }
                if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("storage key {key:?}"));
                }
                let numel = u64::try_from(self.int(t[4], "storage size")?)
                    .map_err(|_| "a negative storage size".to_string())?;
                Ok(Node::Storage {
                    class: class.clone(),
                    key: key.clone(),
                    numel,
                })
            }
            _ => Err("a persistent id that is not ('storage', class, key, location, numel)".into()),
        }
    }

    /// The result as a tree. Errors past 64 nested containers or when shared
    /// sub-objects would be visited more than a budget proportional to the arena's size.
    pub fn to_value(&self) -> Result<Value, PickleError> {
        let mut budget = Budget {
            visits: self.nodes.len().saturating_mul(4).saturating_add(1024),
            bytes: self.len.saturating_mul(4).saturating_add(4096),
        };
        self.value(self.root, 0, &mut budget)
    }

    fn value(&self, i: usize, depth: usize, budget: &mut Budget) -> Result<Value, PickleError> {
        if depth > MAX_DEPTH {
            return Err(format!("nested more than {MAX_DEPTH} deep"));
        }
        let copied = match &self.nodes[i] {
            Node::Str(s) => s.len(),
            Node::Bytes(b) => b.len(),
            _ => 0,
        };
        budget.visits = budget
            .visits
            .checked_sub(1)
            .ok_or("shared objects referenced too many times")?;
        budget.bytes = budget
            .bytes
            .checked_sub(copied)
            .ok_or("shared strings referenced too many times")?;
        let mut sub = |j: usize| self.value(j, depth + 1, budget);
        Ok(match &self.nodes[i] {
            Node::None => Value::None,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(v) => Value::Int(*v),
            Node::Float(v) => Value::Float(*v),
            Node::Str(s) => Value::Str(s.clone()),
            Node::Bytes(b) => Value::Bytes(b.clone()),
            Node::Tuple(items) | Node::List(items) => {
                Value::List(items.iter().map(|&j| sub(j)).collect::<Result<_, _>>()?)
            }
            Node::Dict(items) => Value::Dict(
                items
                    .iter()
                    .map(|&(k, v)| Ok((sub(k)?, sub(v)?)))
                    .collect::<Result<_, PickleError>>()?,
            ),
            Node::Global(g) => return Err(format!("the global {g} as a value")),
            Node::Storage { .. } => return Err("a bare storage as a value".into()),
            Node::Tensor {
                storage,
                offset,
                size,
                stride,
            } => {
                let Node::Storage { class, key, numel } = &self.nodes[*storage] else {
                    unreachable!("checked by reduce")
                };
                Value::Tensor(TensorRef {
                    key: key.clone(),
                    class: class.clone(),
                    storage_numel: *numel,
                    offset: *offset,
                    size: size.clone(),
                    stride: stride.clone(),
                })
            }
            Node::Object { class, state } => Value::Object {
                class: class.clone(),
                state: Box::new(match state {
                    Some(s) => sub(*s)?,
                    None => Value::None,
                }),
            },
        })
    }
}

/// What [`Pickle::to_value`] may still do: objects to visit, string bytes to copy.
struct Budget {
    visits: usize,
    bytes: usize,
}

fn pairs(items: &[usize]) -> Result<Vec<(usize, usize)>, PickleError> {
    if !items.len().is_multiple_of(2) {
        return Err(format!(
            "{} items where key-value pairs belong",
            items.len()
        ));
    }
    Ok(items.chunks(2).map(|c| (c[0], c[1])).collect())
}

fn global(name: &str, allowed: &[&str]) -> Result<String, PickleError> {
    if allowed.contains(&name) {
        Ok(name.to_string())
    } else {
        Err(format!(
            "the global {name} is not allowed (allowed: {})",
            allowed.join(", ")
        ))
    }
}

fn kind(n: &Node) -> &'static str {
    match n {
        Node::None => "None",
        Node::Bool(_) => "a bool",
        Node::Int(_) => "an int",
        Node::Float(_) => "a float",
        Node::Str(_) => "a str",
        Node::Bytes(_) => "bytes",
        Node::Tuple(_) => "a tuple",
        Node::List(_) => "a list",
        Node::Dict(_) => "a dict",
        Node::Global(_) => "a global",
        Node::Storage { .. } => "a storage",
        Node::Tensor { .. } => "a tensor",
        Node::Object { .. } => "an object",
    }
}

/// pickletools' name of an opcode (for errors about the ones refused).
fn opcode_name(op: u8) -> &'static str {
    match op {
        b'I' => "INT",
        b'L' => "LONG",
        b'F' => "FLOAT",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'P' => "PERSID",
        b'i' => "INST",
        b'o' => "OBJ",
        b'g' => "GET",
        b'p' => "PUT",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "unknown",
    }
}
