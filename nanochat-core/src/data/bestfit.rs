//! nanochat HEAD's BOS-aligned best-fit packing (commit 92d63d4):
//!
//! - pretraining ([`BestFitPacker`], `tokenizing_distributed_data_loader_with_state_bos_bestfit`
//!   in `nanochat/dataloader.py`): every row starts with BOS; the longest buffered document that
//!   fits the rest of the row goes in (the first of equal lengths); when none fits, the shortest
//!   is cropped to fill the row exactly (the rest of it is dropped). Rows are 100% tokens.
//! - SFT ([`SftPacker`], `sft_data_generator_bos_bestfit` in `scripts/chat_sft.py`): the same
//!   choice over rendered conversations, but when none fits the row is padded with BOS and the
//!   padding's targets are ignored (-1); a conversation is never cropped. Where HEAD pads a
//!   whole row because every buffered conversation is longer than a row (and so pads every
//!   row after it too), this is an error naming the buffer.
//!
//! Both keep a buffer that a refill tops up before every choice, so the buffer is part of the
//! loader's state (it is serialisable, for bit-identical resumes; [`super::SftLoader`] saves
//! the SFT buffer as conversation indices).

use serde::{Deserialize, Serialize};

use crate::{CoreError, Result};

/// Where a pretraining document stream stands: the parquet file, its row group and the pass
/// over the data (HEAD's loader `state_dict`, `{pq_idx, rg_idx, epoch}`), after the last chunk
/// appended to the buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    /// The file.
    pub pq_idx: usize,
    /// The row group within it.
    pub rg_idx: usize,
    /// The pass over the data, from 1.
    pub epoch: usize,
}

/// One (B, T) batch of a best-fit packer: row-major inputs and next-token targets (-1:
/// ignored).
#[derive(Clone, Debug, PartialEq)]
pub struct PackedRows {
    /// (B, T) input ids.
    pub inputs: Vec<u32>,
    /// (B, T) targets.
    pub targets: Vec<i32>,
}

/// The index of the first longest item of `lens` that is at most `room`.
fn best_fit(lens: impl Iterator<Item = usize>, room: usize) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, len) in lens.enumerate() {
        if len <= room && best.is_none_or(|(_, b)| len > b) {
            best = Some((i, len));
        }
    }
    best.map(|(i, _)| i)
}

/// A document waiting in a [`BestFitPacker`]'s buffer: where it comes from (source, document
/// index: what a checkpoint records of the buffer) and its tokens (BOS first).
#[derive(Clone, Debug, PartialEq)]
pub struct BufferedDoc {
    /// (source, document) indices in the stream.
    pub id: [usize; 2],
    /// Its token ids, BOS first.
    pub tokens: Vec<u32>,
}

/// A chunk of a pretraining document stream and the stream's position after it; `None` when
/// the stream has ended.
pub type Chunk = Option<(Vec<BufferedDoc>, StreamPosition)>;

/// HEAD's pretraining packer: documents (token ids, BOS first) come in chunks from a stream;
/// see the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct BestFitPacker {
    /// Buffered documents, in arrival order.
    pub buffer: Vec<BufferedDoc>,
    /// Documents the buffer is topped up to (1000).
    pub buffer_size: usize,
    /// The stream's position after the last chunk appended.
    pub position: StreamPosition,
}

impl BestFitPacker {
    /// An empty packer topping its buffer up to `buffer_size` documents.
    pub fn new(buffer_size: usize) -> BestFitPacker {
        BestFitPacker {
            buffer: Vec::new(),
            buffer_size,
            position: StreamPosition {
                epoch: 1,
                ..StreamPosition::default()
            },
        }
    }

    /// The next `batch` rows of `seq` inputs; `next_chunk` gives the stream's next chunk of
    /// documents and its position after it, or None when the stream has ended.
    ///
    /// Errors: [`CoreError::NoData`] when the stream ends with the buffer empty (or gives an
    /// empty document); those of `next_chunk`.
    pub fn next_batch(
        &mut self,
        batch: usize,
        seq: usize,
        next_chunk: &mut dyn FnMut() -> Result<Chunk>,
    ) -> Result<PackedRows> {
        let cap = seq + 1;
        let (mut inputs, mut targets) = (Vec::with_capacity(batch * seq), Vec::new());
        for _ in 0..batch {
            let mut row: Vec<u32> = Vec::with_capacity(cap);
            while row.len() < cap {
                while self.buffer.len() < self.buffer_size {
                    match next_chunk()? {
                        Some((docs, pos)) => {
                            if docs.iter().any(|d| d.tokens.is_empty()) {
                                return Err(CoreError::no_data(
                                    "tokens",
                                    "a document of the stream",
                                ));
                            }
                            self.buffer.extend(docs);
                            self.position = pos;
                        }
                        None => break,
                    }
                }
                if self.buffer.is_empty() {
                    return Err(CoreError::no_data(
                        "documents",
                        "the pretraining stream (it ended)",
                    ));
                }
                let room = cap - row.len();
                match best_fit(self.buffer.iter().map(|d| d.tokens.len()), room) {
                    Some(i) => row.extend(self.buffer.remove(i).tokens),
                    None => {
                        // Crop the first shortest document to fill the row exactly.
                        let (i, _) = self
                            .buffer
                            .iter()
                            .enumerate()
                            .min_by_key(|&(i, d)| (d.tokens.len(), i))
                            .expect("non-empty buffer");
                        row.extend(&self.buffer.remove(i).tokens[..room]);
                    }
                }
            }
            inputs.extend(&row[..seq]);
            targets.extend(row[1..].iter().map(|&t| t as i32));
        }
        Ok(PackedRows { inputs, targets })
    }
}

/// What an SFT batch leaves behind: HEAD's `approx_progress`, `last_step` and
/// `current_epoch`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SftProgress {
    /// Conversations consumed over the dataset's size.
    pub approx_progress: f64,
    /// Whether a whole pass has been consumed.
    pub last_step: bool,
    /// The pass the refills have reached, from 1.
    pub current_epoch: usize,
}

/// HEAD's SFT packer over a dataset of rendered conversations (ids, loss mask), cycled in
/// order; see the module docs. The buffer holds dataset indices, so the packer's whole state
/// is a few integers per buffered conversation (what a checkpoint records).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SftPacker {
    /// Buffered conversations, as indices into the dataset, in arrival order.
    pub buffer: Vec<usize>,
    /// Conversations the buffer is topped up to (100).
    pub buffer_size: usize,
    /// The next conversation to buffer.
    pub cursor: usize,
    /// The pass the refills have reached, from 1.
    pub epoch: usize,
    /// Conversations packed into rows so far.
    pub consumed: usize,
    /// Conversations buffered that are longer than a row (T + 1 tokens): they are never
    /// packed (and never cropped); the trainer warns about them.
    pub too_long: usize,
}

impl SftPacker {
    /// An empty packer topping its buffer up to `buffer_size` conversations.
    pub fn new(buffer_size: usize) -> SftPacker {
        SftPacker {
            buffer: Vec::new(),
            buffer_size,
            cursor: 0,
            epoch: 1,
            consumed: 0,
            too_long: 0,
        }
    }

    /// The progress after the rows packed so far, over a dataset of `len` conversations.
    pub fn progress(&self, len: usize) -> SftProgress {
        SftProgress {
            approx_progress: self.consumed as f64 / len.max(1) as f64,
            last_step: self.consumed >= len,
            current_epoch: self.epoch,
        }
    }

    /// The next `batch` rows of `seq` inputs from `dataset`, padded with `bos` where no
    /// conversation fits, and the progress after them.
    ///
    /// Errors: [`CoreError::NoData`] for an empty dataset, or when a row gets nothing because
    /// every buffered conversation is longer than a row (HEAD would emit padding forever).
    pub fn next_batch(
        &mut self,
        batch: usize,
        seq: usize,
        dataset: &[(Vec<u32>, Vec<u8>)],
        bos: u32,
    ) -> Result<(PackedRows, SftProgress)> {
        if dataset.is_empty() {
            return Err(CoreError::no_data("conversations", "the SFT dataset"));
        }
        let cap = seq + 1;
        let (mut inputs, mut targets) = (Vec::with_capacity(batch * seq), Vec::new());
        for _ in 0..batch {
            let (mut row, mut mask): (Vec<u32>, Vec<u8>) = (Vec::new(), Vec::new());
            let mut content = cap;
            while row.len() < cap {
                while self.buffer.len() < self.buffer_size {
                    if dataset[self.cursor].0.len() > cap {
                        self.too_long += 1;
                    }
                    self.buffer.push(self.cursor);
                    self.cursor += 1;
                    if self.cursor >= dataset.len() {
                        self.cursor %= dataset.len();
                        self.epoch += 1;
                    }
                }
                let room = cap - row.len();
                match best_fit(self.buffer.iter().map(|&i| dataset[i].0.len()), room) {
                    Some(i) => {
                        let (ids, m) = &dataset[self.buffer.remove(i)];
                        row.extend(ids);
                        mask.extend(m);
                        self.consumed += 1;
                    }
                    None if row.is_empty() => {
                        return Err(CoreError::no_data(
                            "conversations that fit a row",
                            format!(
                                "the SFT buffer ({} conversations, all longer than a row of {cap} tokens: raise --max-seq-len)",
                                self.buffer.len()
                            ),
                        ));
                    }
                    None => {
                        content = row.len();
                        row.resize(cap, bos);
                        mask.resize(cap, 0);
                    }
                }
            }
            inputs.extend(&row[..seq]);
            targets.extend((1..cap).map(|i| {
                if mask[i] == 0 || i >= content {
                    -1
                } else {
                    row[i] as i32
                }
            }));
        }
        Ok((PackedRows { inputs, targets }, self.progress(dataset.len())))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn fixture() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/reference/head/head_loader.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn ids(v: &Value) -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    }

    fn rows<T: Copy>(v: &Value, f: impl Fn(&Value) -> T) -> Vec<T> {
        v.as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap().iter().map(&f).collect::<Vec<_>>())
            .collect()
    }

    fn n(v: &Value) -> usize {
        v.as_u64().unwrap() as usize
    }

    /// Asserts batch `k` of scenario `sc` is `want`'s rows; returns the scenario's name.
    fn same_rows<'a>(got: &PackedRows, sc: &'a Value, want: &Value, k: usize) -> &'a str {
        let name = sc["name"].as_str().unwrap();
        let inputs = rows(&want["inputs"], |x| x.as_u64().unwrap() as u32);
        assert_eq!(got.inputs, inputs, "{name} batch {k} inputs");
        let targets = rows(&want["targets"], |x| x.as_i64().unwrap() as i32);
        assert_eq!(got.targets, targets, "{name} batch {k} targets");
        name
    }

    /// HEAD's stream: the documents in row groups, each row group in chunks of
    /// `chunk` documents, epoch after epoch; the position is the chunk's.
    fn stream(
        docs: Vec<Vec<u32>>,
        groups: Vec<usize>,
        chunk: usize,
    ) -> impl FnMut() -> Result<Chunk> {
        let mut out = Vec::new();
        let mut start = 0;
        for (rg, &size) in groups.iter().enumerate() {
            for c in (0..size).step_by(chunk) {
                let range = start + c..start + (c + chunk).min(size);
                let chunk: Vec<BufferedDoc> = range
                    .map(|i| BufferedDoc {
                        id: [0, i],
                        tokens: docs[i].clone(),
                    })
                    .collect();
                out.push((rg, chunk));
            }
            start += size;
        }
        let (mut i, mut epoch) = (0, 1);
        move || {
            let (rg, docs) = out[i].clone();
            let pos = StreamPosition {
                pq_idx: 0,
                rg_idx: rg,
                epoch,
            };
            i += 1;
            if i == out.len() {
                i = 0;
                epoch += 1;
            }
            Ok(Some((docs, pos)))
        }
    }

    #[test]
    fn pretraining_rows_match_heads_loader() {
        let f = fixture();
        let p = &f["pretrain"];
        let docs: Vec<Vec<u32>> = p["documents"].as_array().unwrap().iter().map(ids).collect();
        let groups: Vec<usize> = p["row_group_sizes"]
            .as_array()
            .unwrap()
            .iter()
            .map(n)
            .collect();
        let bos = n(&f["bos_id"]) as u32;
        assert!(docs.iter().all(|d| d[0] == bos));
        for sc in p["scenarios"].as_array().unwrap() {
            let (b, t) = (n(&sc["B"]), n(&sc["T"]));
            let mut next = stream(docs.clone(), groups.clone(), n(&sc["tokenizer_batch_size"]));
            let mut packer = BestFitPacker::new(n(&sc["buffer_size"]));
            for (k, want) in sc["batches"].as_array().unwrap().iter().enumerate() {
                let got = packer.next_batch(b, t, &mut next).unwrap();
                let name = same_rows(&got, sc, want, k);
                let s = &want["state_dict"];
                assert_eq!(
                    packer.position,
                    StreamPosition {
                        pq_idx: n(&s["pq_idx"]),
                        rg_idx: n(&s["rg_idx"]),
                        epoch: n(&s["epoch"])
                    },
                    "{name} batch {k}"
                );
                // Every row starts with BOS.
                assert!(got.inputs.chunks(t).all(|r| r[0] == bos));
            }
        }
    }

    #[test]
    fn sft_rows_match_heads_loader() {
        let f = fixture();
        let s = &f["sft"];
        let bos = n(&f["bos_id"]) as u32;
        let data: Vec<(Vec<u32>, Vec<u8>)> = s["rendered"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    ids(&r["ids"]),
                    r["mask"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|m| m.as_u64().unwrap() as u8)
                        .collect(),
                )
            })
            .collect();
        for sc in s["scenarios"].as_array().unwrap() {
            let (b, t) = (n(&sc["B"]), n(&sc["T"]));
            let mut packer = SftPacker::new(n(&sc["buffer_size"]));
            let mut stalled = false;
            for (k, want) in sc["batches"].as_array().unwrap().iter().enumerate() {
                // HEAD pads a whole row when every buffered conversation is longer than a row,
                // and from then on emits nothing but padding (small_buffer, batches 4 to 7):
                // here that first empty row is an error instead.
                let empty_row = want["targets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r.as_array().unwrap().iter().all(|x| x.as_i64() == Some(-1)));
                let result = packer.next_batch(b, t, &data, bos);
                if empty_row {
                    let e = result.unwrap_err();
                    assert!(e.to_string().contains("all longer than"), "{e}");
                    stalled = true;
                    break;
                }
                let (got, progress) = result.unwrap();
                let name = same_rows(&got, sc, want, k);
                let a = &want["after"];
                assert_eq!(
                    progress.last_step,
                    a["last_step"].as_bool().unwrap(),
                    "{name} batch {k}"
                );
                assert_eq!(
                    progress.current_epoch,
                    n(&a["current_epoch"]),
                    "{name} batch {k}"
                );
                assert!(
                    (progress.approx_progress - a["approx_progress"].as_f64().unwrap()).abs()
                        < 1e-12
                );
            }
            // Conversation 14 (306 tokens) never fits a row: counted, never packed.
            assert!(packer.too_long > 0, "{}", sc["name"]);
            assert_eq!(stalled, sc["name"] == "small_buffer");
        }
    }

    #[test]
    fn nothing_packable_is_an_error_not_a_hang() {
        // Every conversation is longer than a row.
        let data = vec![(vec![1u32; 50], vec![1u8; 50]); 3];
        let e = SftPacker::new(4).next_batch(2, 16, &data, 0).unwrap_err();
        assert!(
            matches!(e, CoreError::NoData { .. })
                && e.to_string().contains("longer than a row of 17"),
            "{e}"
        );
        assert!(SftPacker::new(4).next_batch(1, 16, &[], 0).is_err());
        // A pretraining stream that ends with nothing buffered.
        let mut empty = || Ok(None);
        let e = BestFitPacker::new(8)
            .next_batch(1, 4, &mut empty)
            .unwrap_err();
        assert!(e.to_string().contains("ended"), "{e}");
        // A document cropped to fill the row: the rest of it is dropped, not buffered.
        let mut p = BestFitPacker::new(2);
        let mut one = {
            let mut given = false;
            move || {
                let out = (!given).then(|| {
                    (
                        vec![BufferedDoc {
                            id: [0, 0],
                            tokens: vec![7u32, 1, 2, 3, 4, 5, 6, 7, 8],
                        }],
                        StreamPosition {
                            pq_idx: 0,
                            rg_idx: 3,
                            epoch: 2,
                        },
                    )
                });
                given = true;
                Ok(out)
            }
        };
        let got = p.next_batch(1, 4, &mut one).unwrap();
        assert_eq!(
            (got.inputs, got.targets),
            (vec![7, 1, 2, 3], vec![1, 2, 3, 4])
        );
        assert!(p.buffer.is_empty());
        assert_eq!(p.position.rg_idx, 3);
    }
}
