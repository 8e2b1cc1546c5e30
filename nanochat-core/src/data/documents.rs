//! Documents from files. A plain-text file (`.txt`, `.md`, no extension) is cut into documents
//! at blank lines ([`text_documents`]); a `.jsonl` file holds one JSON object per line with the
//! document in `text`; a `.parquet` file (nanochat's FineWeb shards) has one document per row in
//! column `text`. Any of them may be gzipped (`.gz`). Bad input is an error naming the file and
//! the line or row, never a panic.

use std::io::Read;
use std::path::Path;

use crate::{CoreError, Result};

/// The bundled corpus (data/corpus/bundled.jsonl.gz: Moby-Dick and Shakespeare, public domain),
/// compiled in so every build can train without a download.
pub static BUNDLED_CORPUS: &[u8] = include_bytes!("../../../data/corpus/bundled.jsonl.gz");

fn file_err(path: &Path, why: impl std::fmt::Display) -> CoreError {
    CoreError::file(path, why)
}

fn gunzip(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| file_err(path, format!("gzip: {e}")))?;
    Ok(out)
}

fn utf8(bytes: Vec<u8>, path: &Path) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| file_err(path, format!("not UTF-8 text: {e}")))
}

/// Characters a plain-text document holds at most when it is made of several paragraphs (the
/// size of the bundled corpus's pieces; below tok-train's default `--doc-cap` of 10,000).
pub const TEXT_DOC_CHARS: usize = 6_000;

/// Documents of plain text. A paragraph is a run of non-blank lines (a blank line is empty or
/// whitespace only); consecutive paragraphs are gathered into one document while it stays
/// within [`TEXT_DOC_CHARS`] characters, and a longer paragraph is a document by itself. A
/// document is the file's text from its first paragraph's first character to its last
/// paragraph's last (line breaks and the blank lines between its paragraphs kept as they are);
/// the blank lines between documents belong to none. So a book becomes many web-page-sized
/// documents, as nanochat's training data are, and `<|bos|>` marks every few pages of it.
pub fn text_documents(text: &str) -> Vec<String> {
    // Paragraphs as byte ranges [start, end) of `text`, without their last line break.
    let mut paragraphs: Vec<(usize, usize)> = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let start = pos;
        pos += line.len();
        if line.trim().is_empty() {
            paragraphs.extend(current.take());
        } else {
            let end = start + line.trim_end_matches(['\n', '\r']).len();
            current = Some((current.map_or(start, |(s, _)| s), end));
        }
    }
    paragraphs.extend(current);
    let mut docs = Vec::new();
    // The document being gathered: (start, end, characters).
    let mut doc: Option<(usize, usize, usize)> = None;
    for (start, end) in paragraphs {
        let chars = text[start..end].chars().count();
        doc = match doc {
            Some((s, e, n)) => {
                let joined = n + text[e..start].chars().count() + chars;
                if joined <= TEXT_DOC_CHARS {
                    Some((s, end, joined))
                } else {
                    docs.push(text[s..e].to_string());
                    Some((start, end, chars))
                }
            }
            None => Some((start, end, chars)),
        };
    }
    docs.extend(doc.map(|(s, e, _)| text[s..e].to_string()));
    docs
}

/// Documents of JSONL text: the `text` field of each non-empty line.
fn jsonl_documents(text: &str, path: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| file_err(path, format!("line {}: not JSON: {e}", i + 1)))?;
        match v.get("text").and_then(|t| t.as_str()) {
            Some(t) => out.push(t.to_string()),
            None => {
                return Err(file_err(
                    path,
                    format!("line {}: no string field `text`", i + 1),
                ))
            }
        }
    }
    Ok(out)
}

fn parquet_documents(bytes: Vec<u8>, path: &Path) -> Result<Vec<String>> {
    let shard = ParquetShard::from_bytes(bytes, path)?;
    let mut out = Vec::new();
    for rg in 0..shard.num_row_groups() {
        out.extend(shard.read_row_group(rg)?);
    }
    Ok(out)
}

/// A parquet file of documents (column `text`) read one row group at a time, as nanochat's
/// loaders read their shards (`pq.ParquetFile(path).read_row_group(i).column('text')` in
/// `nanochat/dataloader.py`). The file's bytes stay in memory; each row group is decoded when
/// asked for.
pub struct ParquetShard {
    path: std::path::PathBuf,
    reader: parquet::file::reader::SerializedFileReader<bytes::Bytes>,
    projection: parquet::schema::types::Type,
}

impl ParquetShard {
    /// Opens `path`. Errors: [`CoreError::Io`], [`CoreError::File`] for a file that is not
    /// parquet or has no column `text`.
    pub fn open(path: &Path) -> Result<ParquetShard> {
        let bytes = std::fs::read(path).map_err(|e| CoreError::io(path, e))?;
        ParquetShard::from_bytes(bytes, path)
    }

    fn from_bytes(bytes: Vec<u8>, path: &Path) -> Result<ParquetShard> {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes))
            .map_err(|e| file_err(path, format!("parquet: {e}")))?;
        let schema = reader.metadata().file_metadata().schema_descr();
        // Read the `text` column alone.
        let field = schema
            .root_schema()
            .get_fields()
            .iter()
            .find(|f| f.name() == "text")
            .cloned()
            .ok_or_else(|| file_err(path, "parquet file has no column `text`"))?;
        let projection = parquet::schema::types::Type::group_type_builder("schema")
            .with_fields(vec![field])
            .build()
            .map_err(|e| file_err(path, format!("parquet: {e}")))?;
        Ok(ParquetShard {
            path: path.to_path_buf(),
            reader,
            projection,
        })
    }

    /// Row groups in the file.
    pub fn num_row_groups(&self) -> usize {
        use parquet::file::reader::FileReader;
        self.reader.num_row_groups()
    }

    /// The documents of row group `i`, in row order. Errors: [`CoreError::OutOfRange`] past the
    /// last row group; [`CoreError::File`] naming the row group and row for a bad row.
    pub fn read_row_group(&self, i: usize) -> Result<Vec<String>> {
        use parquet::file::reader::FileReader;
        use parquet::record::RowAccessor;
        let n = self.num_row_groups();
        if i >= n {
            return Err(CoreError::OutOfRange {
                what: format!("the row groups of {}", self.path.display()),
                index: i,
                len: n,
            });
        }
        let path = &self.path;
        let group = self
            .reader
            .get_row_group(i)
            .map_err(|e| file_err(path, format!("parquet row group {i}: {e}")))?;
        let rows = group
            .get_row_iter(Some(self.projection.clone()))
            .map_err(|e| file_err(path, format!("parquet row group {i}: {e}")))?;
        let mut out = Vec::new();
        for (r, row) in rows.enumerate() {
            let row =
                row.map_err(|e| file_err(path, format!("parquet row group {i} row {r}: {e}")))?;
            let text = row.get_string(0).map_err(|e| {
                file_err(
                    path,
                    format!("parquet row group {i} row {r}: column `text`: {e}"),
                )
            })?;
            out.push(text.clone());
        }
        Ok(out)
    }
}

/// Every document of one file (format from the extension, after an optional `.gz`): a
/// plain-text file's as [`text_documents`] cuts them, a JSONL file's `text` fields, a parquet
/// file's `text` column. Errors: [`CoreError::Io`] when it cannot be read; [`CoreError::File`]
/// for an unknown extension, bad gzip, non-UTF-8 text or a bad line or row (named).
pub fn read_documents(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).map_err(|e| CoreError::io(path, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let (bytes, name) = match name.strip_suffix(".gz") {
        Some(inner) => (gunzip(&bytes, path)?, inner.to_string()),
        None => (bytes, name),
    };
    if name.ends_with(".parquet") {
        parquet_documents(bytes, path)
    } else if name.ends_with(".jsonl") || name.ends_with(".ndjson") {
        jsonl_documents(&utf8(bytes, path)?, path)
    } else if name.ends_with(".txt") || name.ends_with(".md") || !name.contains('.') {
        Ok(text_documents(&utf8(bytes, path)?))
    } else {
        Err(file_err(
            path,
            "unknown format: expected .txt, .jsonl or .parquet (optionally .gz)",
        ))
    }
}

/// The documents of the bundled corpus, in file order.
pub fn bundled_documents() -> Result<Vec<String>> {
    let path = Path::new("<bundled corpus>");
    jsonl_documents(&utf8(gunzip(BUNDLED_CORPUS, path)?, path)?, path)
}

/// Splits documents in order: the first `train_ratio` for training, the last `val_ratio` held
/// out (at least one document each when there are two or more). Errors:
/// [`CoreError::InvalidArgument`] for a ratio outside [0, 1] or ratios summing past 1.
pub fn split_train_val(
    docs: Vec<String>,
    train_ratio: f64,
    val_ratio: f64,
) -> Result<(Vec<String>, Vec<String>)> {
    if !(0.0..=1.0).contains(&train_ratio)
        || !(0.0..=1.0).contains(&val_ratio)
        || train_ratio + val_ratio > 1.0 + 1e-9
    {
        return Err(CoreError::invalid(
            "train ratio, val ratio",
            format!("{train_ratio}, {val_ratio}"),
            "each in [0, 1], summing to at most 1",
        ));
    }
    let n = docs.len();
    let mut n_val = (n as f64 * val_ratio).round() as usize;
    if val_ratio > 0.0 && n >= 2 {
        n_val = n_val.max(1);
    }
    let mut n_train = ((n as f64 * train_ratio).round() as usize).min(n - n_val);
    if train_ratio > 0.0 && n_train == 0 && n > n_val {
        n_train = 1;
    }
    let val = docs[n - n_val..].to_vec();
    let mut train = docs;
    train.truncate(n_train);
    Ok((train, val))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_corpus_is_there() {
        let docs = bundled_documents().unwrap();
        assert_eq!(docs.len(), 1061);
        assert!(docs.iter().map(|d| d.len()).sum::<usize>() > 6_000_000);
        assert!(docs.iter().any(|d| d.contains("Call me Ishmael")));
    }

    #[test]
    fn formats_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("a.txt"), "hello\nworld").unwrap();
        assert_eq!(read_documents(&p("a.txt")).unwrap(), vec!["hello\nworld"]);
        std::fs::write(
            p("b.jsonl"),
            "{\"text\": \"one\"}\n\n{\"text\": \"two\", \"id\": 3}\n",
        )
        .unwrap();
        assert_eq!(read_documents(&p("b.jsonl")).unwrap(), vec!["one", "two"]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, b"{\"text\": \"zipped\"}\n").unwrap();
        std::fs::write(p("c.jsonl.gz"), gz.finish().unwrap()).unwrap();
        assert_eq!(read_documents(&p("c.jsonl.gz")).unwrap(), vec!["zipped"]);
        std::fs::write(p("d.jsonl"), "{\"text\": \"ok\"}\n{\"txt\": 1}\n").unwrap();
        assert!(read_documents(&p("d.jsonl"))
            .unwrap_err()
            .to_string()
            .contains("line 2: no string field `text`"));
        std::fs::write(p("e.jsonl"), "{oops\n").unwrap();
        assert!(read_documents(&p("e.jsonl"))
            .unwrap_err()
            .to_string()
            .contains("line 1: not JSON"));
        std::fs::write(p("f.parquet"), b"not parquet").unwrap();
        assert!(read_documents(&p("f.parquet"))
            .unwrap_err()
            .to_string()
            .contains("parquet"));
        std::fs::write(p("g.bin"), b"\x00").unwrap();
        assert!(read_documents(&p("g.bin"))
            .unwrap_err()
            .to_string()
            .contains("unknown format"));
        assert!(matches!(
            read_documents(&p("missing.txt")),
            Err(CoreError::Io { path, error }) if path == p("missing.txt") && error.kind() == std::io::ErrorKind::NotFound
        ));
        std::fs::write(p("h.txt"), [0xff, 0xfe]).unwrap();
        assert!(read_documents(&p("h.txt"))
            .unwrap_err()
            .to_string()
            .contains("not UTF-8"));
    }

    #[test]
    fn parquet_text_column() {
        use parquet::data_type::{ByteArray, ByteArrayType};
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        use parquet::schema::parser::parse_message_type;
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shard_00000.parquet");
        let schema = Arc::new(
            parse_message_type(
                "message schema { REQUIRED BYTE_ARRAY text (UTF8); REQUIRED INT32 n; }",
            )
            .unwrap(),
        );
        let file = std::fs::File::create(&path).unwrap();
        let mut w =
            SerializedFileWriter::new(file, schema, Arc::new(WriterProperties::builder().build()))
                .unwrap();
        let mut rg = w.next_row_group().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        let values: Vec<ByteArray> = ["first doc", "second ünïcode doc"]
            .iter()
            .map(|s| ByteArray::from(*s))
            .collect();
        col.typed::<ByteArrayType>()
            .write_batch(&values, None, None)
            .unwrap();
        col.close().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<parquet::data_type::Int32Type>()
            .write_batch(&[1, 2], None, None)
            .unwrap();
        col.close().unwrap();
        rg.close().unwrap();
        w.close().unwrap();
        assert_eq!(
            read_documents(&path).unwrap(),
            vec!["first doc", "second ünïcode doc"]
        );
    }

    /// A 300 KB book: 300 paragraphs of 999 characters (ten 99-character lines), one blank line
    /// between them.
    fn book() -> (String, Vec<String>) {
        let paragraphs: Vec<String> = (0..300)
            .map(|p| {
                (0..10)
                    .map(|l| format!("{:<99}", format!("paragraph {p} line {l} of the book")))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect();
        (paragraphs.join("\n\n") + "\n", paragraphs)
    }

    #[test]
    fn a_book_is_many_documents() {
        let (text, paragraphs) = book();
        assert_eq!(text.len(), 300 * 999 + 299 * 2 + 1);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("book.txt");
        std::fs::write(&path, &text).unwrap();
        let docs = read_documents(&path).unwrap();
        // Five paragraphs and four blank lines make 5003 characters; a sixth would pass 6000.
        assert_eq!(docs.len(), 60);
        for (i, d) in docs.iter().enumerate() {
            assert_eq!(*d, paragraphs[5 * i..5 * i + 5].join("\n\n"));
            assert_eq!(d.chars().count(), 5003);
        }
        let chars: usize = docs.iter().map(|d| d.chars().count()).sum();
        assert_eq!(chars, 300_180);
    }

    #[test]
    fn plain_text_is_cut_at_blank_lines() {
        // Blank lines may hold spaces or \r; a paragraph keeps its own line breaks and indent.
        let text = "\n\n  a\r\nb  \r\n \t\n\n\nc\n";
        assert_eq!(text_documents(text), vec!["  a\r\nb  \r\n \t\n\n\nc"]);
        assert!(text_documents(" \n\n").is_empty());
        assert_eq!(text_documents("no break at all"), vec!["no break at all"]);
        // A paragraph over the limit is a document alone; sizes count characters, not bytes.
        let long = "x".repeat(TEXT_DOC_CHARS + 1);
        let text = format!("short\n\n{long}\n\nshort again");
        assert_eq!(text_documents(&text), vec!["short", &long, "short again"]);
        let e = "\u{e9}".repeat(2000);
        assert_eq!(text_documents(&format!("{e}\n\n{e}")).len(), 1);
        let e = "\u{e9}".repeat(3000);
        assert_eq!(text_documents(&format!("{e}\n\n{e}")), vec![e.clone(), e]);
    }

    #[test]
    fn split_keeps_order_and_checks_ratios() {
        let docs: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        let (t, v) = split_train_val(docs.clone(), 0.9, 0.1).unwrap();
        assert_eq!((t.len(), v.len()), (18, 2));
        assert_eq!(v[1], "19");
        let (t, v) = split_train_val(docs.clone(), 0.5, 0.05).unwrap();
        assert_eq!((t.len(), v.len()), (10, 1));
        assert!(matches!(
            split_train_val(docs, 0.9, 0.2),
            Err(CoreError::InvalidArgument { name: "train ratio, val ratio", value, .. }) if value == "0.9, 0.2"
        ));
    }
}
