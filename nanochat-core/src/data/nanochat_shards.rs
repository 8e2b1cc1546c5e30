//! nanochat's own pretraining data: the parquet shards under its base dir, read as nanochat's
//! `base_train` reads them, so a resumed nanochat run sees the rows nanochat would have given
//! it.
//!
//! - **Files** ([`nanochat_shard_paths`], `list_parquet_files` in `nanochat/dataset.py`): the
//!   `*.parquet` files of `base_data_climbmix/` (HEAD, 92d63d4; `base_data/` when that folder is
//!   missing, as HEAD falls back) or `base_data/` (v1, 16788ee), sorted by name; the last one is
//!   validation, the others training.
//! - **Document stream** (`_document_batches` at 92d63d4, `document_batches` at 16788ee): row
//!   group after row group, each cut into chunks of [`TOKENIZER_BATCH`] documents, each chunk
//!   tagged with the position `{pq_idx, rg_idx, epoch}` of its row group. A resumed stream
//!   starts at row group `rg_idx + 1` of file `pq_idx` ("approximate resume": what the old
//!   buffer held is not replayed). HEAD passes over the files forever, counting `epoch`; v1's
//!   stream has no epoch and never wraps (nanochat v1 would then wait forever; here it is an
//!   error naming the folder).
//! - **Rows**: HEAD packs the documents (BOS first) best-fit into rows of T+1 tokens
//!   ([`BestFitPacker`], `tokenizing_distributed_data_loader_with_state_bos_bestfit`); v1
//!   concatenates them into one token stream and pops `B*T + 1` tokens per batch, the last
//!   target token not reused (`tokenizing_distributed_data_loader_with_state`).
//! - **State**: the position of the last chunk taken, as nanochat's loader yields it with each
//!   batch. Like `base_train`, which fetches the next batch while the current step trains,
//!   [`NanochatLoader`] keeps one batch ahead, and its [`NanochatLoader::state`] is that
//!   prefetched batch's: what nanochat saves in `dataloader_state_dict`.
//!
//! One process (rank 0 of 1).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use super::bestfit::{BestFitPacker, BufferedDoc, StreamPosition};
use super::bestfit_loader::{BUFFER_SIZE, TOKENIZER_BATCH};
use super::documents::ParquetShard;
use super::loader::Batch;
use crate::model::Architecture;
use crate::tokenizer::Tokenizer;
use crate::{CoreError, Result};

/// The folder of nanochat's pretraining shards under `base_dir` for a generation: HEAD's
/// `base_data_climbmix/` (or `base_data/` when it is missing, as HEAD falls back), v1's
/// `base_data/`.
pub fn nanochat_data_dir(base_dir: &Path, generation: Architecture) -> PathBuf {
    let legacy = base_dir.join("base_data");
    match generation {
        Architecture::Head => {
            let climbmix = base_dir.join("base_data_climbmix");
            if climbmix.is_dir() {
                climbmix
            } else {
                legacy
            }
        }
        Architecture::V1 => legacy,
    }
}

/// nanochat's shards for a generation ([`nanochat_data_dir`]): the training files and the
/// validation file (the last by name). Names ending `.tmp` are skipped, as nanochat skips its
/// unfinished downloads. Errors: [`CoreError::Io`] for a missing folder, [`CoreError::NoData`]
/// for fewer than two shards.
pub fn nanochat_shard_paths(
    base_dir: &Path,
    generation: Architecture,
) -> Result<(Vec<PathBuf>, PathBuf)> {
    let dir = nanochat_data_dir(base_dir, generation);
    let entries = std::fs::read_dir(&dir).map_err(|e| CoreError::io(&dir, e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".parquet"))
        })
        .collect();
    files.sort();
    match files.split_last() {
        Some((val, train)) if !train.is_empty() => Ok((train.to_vec(), val.clone())),
        _ => Err(CoreError::no_data(
            "parquet shards",
            format!(
                "{}: {} found, at least two needed (training shards, then the last one for validation)",
                dir.display(),
                files.len()
            ),
        )),
    }
}

/// Where a nanochat loader resumes: its saved `dataloader_state_dict` (`epoch` is HEAD's; v1
/// has none, read as 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumePoint {
    /// The file.
    pub pq_idx: usize,
    /// The row group last read in it; the stream starts at the next one.
    pub rg_idx: usize,
    /// The pass over the files, from 1.
    pub epoch: usize,
}

/// The row groups of the shards in nanochat's order, cut into chunks of documents.
struct RowGroupStream {
    paths: Vec<PathBuf>,
    generation: Architecture,
    /// The file being read.
    pq: usize,
    /// The next row group of it; `None` before the file is started.
    rg: Option<usize>,
    epoch: usize,
    /// The resume point, until it has been used.
    resume: Option<ResumePoint>,
    shard: Option<(usize, ParquetShard)>,
    pending: VecDeque<(Vec<String>, StreamPosition)>,
}

impl RowGroupStream {
    fn new(paths: Vec<PathBuf>, generation: Architecture, resume: Option<ResumePoint>) -> Self {
        RowGroupStream {
            paths,
            generation,
            pq: resume.map_or(0, |r| r.pq_idx),
            rg: None,
            epoch: resume.map_or(1, |r| r.epoch.max(1)),
            resume,
            shard: None,
            pending: VecDeque::new(),
        }
    }

    fn shard(&mut self, pq: usize) -> Result<&ParquetShard> {
        if self.shard.as_ref().is_none_or(|(i, _)| *i != pq) {
            self.shard = Some((pq, ParquetShard::open(&self.paths[pq])?));
        }
        Ok(&self.shard.as_ref().expect("opened above").1)
    }

    /// The next row group to read: (file, row group), following `_document_batches`.
    fn next_row_group(&mut self) -> Result<(usize, usize)> {
        // Files passed without a row group read: a pass over every file with none is the end.
        let mut idle_files = 0;
        loop {
            if self.pq >= self.paths.len() {
                if self.generation == Architecture::V1 {
                    let dir = self.paths[0].parent().unwrap_or(Path::new("."));
                    return Err(CoreError::no_data(
                        "training documents",
                        format!(
                            "{}: the run read past its last training shard, and nanochat v1's loader does not start over (it would wait forever); add shards or lower --num-iterations",
                            dir.display()
                        ),
                    ));
                }
                self.pq = 0;
                self.rg = None;
                self.epoch += 1;
                // The resume point applies to the first pass only.
                self.resume = None;
            }
            if idle_files > 2 * self.paths.len() + 2 {
                return Err(CoreError::no_data(
                    "row groups",
                    "nanochat's training shards (every file is empty)",
                ));
            }
            let pq = self.pq;
            let n = self.shard(pq)?.num_row_groups();
            let rg = match self.rg {
                Some(rg) => rg,
                None => {
                    let start = match self.resume {
                        // HEAD resumes only in the file it stopped in; v1 in whichever file
                        // the stream starts with (the same one: it starts at `pq_idx`).
                        Some(r) if self.generation == Architecture::V1 || r.pq_idx == pq => {
                            self.resume = None;
                            r.rg_idx + 1
                        }
                        _ => 0,
                    };
                    self.rg = Some(start);
                    start
                }
            };
            if rg < n {
                self.rg = Some(rg + 1);
                return Ok((pq, rg));
            }
            self.pq += 1;
            self.rg = None;
            idle_files += 1;
        }
    }

    /// The next chunk of at most [`TOKENIZER_BATCH`] documents and its row group's position.
    fn next_chunk(&mut self) -> Result<(Vec<String>, StreamPosition)> {
        loop {
            if let Some(c) = self.pending.pop_front() {
                return Ok(c);
            }
            let (pq, rg) = self.next_row_group()?;
            let docs = self.shard(pq)?.read_row_group(rg)?;
            let pos = StreamPosition {
                pq_idx: pq,
                rg_idx: rg,
                epoch: self.epoch,
            };
            let mut docs = docs.into_iter().peekable();
            while docs.peek().is_some() {
                let chunk: Vec<String> = docs.by_ref().take(TOKENIZER_BATCH).collect();
                self.pending.push_back((chunk, pos));
            }
        }
    }
}

/// Each document's token ids with BOS first (`tokenizer.encode(docs, prepend=bos)`).
fn bos_tokenize(tokenizer: &Tokenizer, docs: &[String]) -> Vec<Vec<u32>> {
    let bos = tokenizer.get_bos_token_id();
    let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
    tokenizer
        .encode_batch(&refs)
        .into_iter()
        .map(|ids| std::iter::once(bos).chain(ids).collect())
        .collect()
}

/// How rows are made of the stream.
enum Rows {
    /// HEAD: best-fit packing of whole documents.
    Head(BestFitPacker),
    /// v1: a contiguous token stream.
    V1(VecDeque<u32>),
}

impl Rows {
    /// Empty, as `generation` packs.
    fn new(generation: Architecture) -> Rows {
        match generation {
            Architecture::Head => Rows::Head(BestFitPacker::new(BUFFER_SIZE)),
            Architecture::V1 => Rows::V1(VecDeque::new()),
        }
    }
}

/// nanochat's pretraining loader over its own shards, one batch ahead as `base_train` runs it
/// (see the module docs). Used by a resumed nanochat run.
pub struct NanochatLoader {
    stream: RowGroupStream,
    tokenizer: Tokenizer,
    rows: Rows,
    batch: usize,
    seq: usize,
    /// The position of the last chunk taken.
    last: StreamPosition,
    prefetched: Option<(Batch, StreamPosition)>,
}

impl NanochatLoader {
    /// `batch` (B) rows of `seq` (T) tokens from `paths` (in order), packed the way
    /// `generation` packs them, starting after `resume` when given. Nothing is read until the
    /// first batch. Errors: [`CoreError::InvalidArgument`] for no paths or B or T 0.
    pub fn new(
        paths: Vec<PathBuf>,
        generation: Architecture,
        tokenizer: Tokenizer,
        batch: usize,
        seq: usize,
        resume: Option<ResumePoint>,
    ) -> Result<NanochatLoader> {
        if paths.is_empty() {
            return Err(CoreError::no_data("parquet shards", "the nanochat loader"));
        }
        for (name, v) in [("batch size", batch), ("sequence length", seq)] {
            if v == 0 {
                return Err(CoreError::invalid(name, v, "at least 1"));
            }
        }
        Ok(NanochatLoader {
            stream: RowGroupStream::new(paths, generation, resume),
            tokenizer,
            rows: Rows::new(generation),
            batch,
            seq,
            last: StreamPosition {
                epoch: 1,
                ..StreamPosition::default()
            },
            prefetched: None,
        })
    }

    /// The next batch read from the stream and the position after it.
    fn produce(&mut self) -> Result<(Batch, StreamPosition)> {
        let (b, t) = (self.batch, self.seq);
        let NanochatLoader {
            stream,
            tokenizer,
            rows,
            last,
            ..
        } = self;
        let (inputs, targets) = match rows {
            Rows::Head(packer) => {
                let rows = packer.next_batch(b, t, &mut || {
                    let (docs, pos) = stream.next_chunk()?;
                    let docs = bos_tokenize(tokenizer, &docs)
                        .into_iter()
                        .enumerate()
                        .map(|(k, tokens)| BufferedDoc {
                            id: [pos.pq_idx, k],
                            tokens,
                        })
                        .collect();
                    Ok(Some((docs, pos)))
                })?;
                *last = packer.position;
                (rows.inputs, rows.targets)
            }
            Rows::V1(buffer) => {
                let needed = b * t + 1;
                while buffer.len() < needed {
                    let (docs, pos) = stream.next_chunk()?;
                    buffer.extend(bos_tokenize(tokenizer, &docs).into_iter().flatten());
                    *last = pos;
                }
                let tokens: Vec<u32> = buffer.drain(..needed).collect();
                (
                    tokens[..needed - 1].to_vec(),
                    tokens[1..].iter().map(|&x| x as i32).collect(),
                )
            }
        };
        let batch = Batch {
            inputs,
            targets,
            batch: b,
            seq: t,
        };
        Ok((batch, *last))
    }

    /// The next (B, T) batch, reading the one after it ahead. Errors: the shards' (unreadable
    /// files, no column `text`), [`CoreError::NoData`] when v1's stream runs out.
    pub fn next_batch(&mut self) -> Result<Batch> {
        let current = match self.prefetched.take() {
            Some((batch, _)) => batch,
            None => self.produce()?.0,
        };
        self.prefetched = Some(self.produce()?);
        Ok(current)
    }

    /// nanochat's `dataloader_state_dict` of the prefetched batch (the next one), or of the
    /// last batch when none is prefetched.
    pub fn state(&self) -> StreamPosition {
        self.prefetched.as_ref().map_or(self.last, |(_, p)| *p)
    }

    /// Starts the stream over after `at` (an approximate resume: the buffer empty).
    pub fn restart(&mut self, at: ResumePoint) {
        let generation = self.stream.generation;
        self.stream =
            RowGroupStream::new(std::mem::take(&mut self.stream.paths), generation, Some(at));
        self.rows = Rows::new(generation);
        self.prefetched = None;
    }
}
