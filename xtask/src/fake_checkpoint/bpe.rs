//! A small synthetic CLIP merges file (`bpe_simple_vocab_16e6.txt.gz`) for the tiny model
//! set: the header line, then a few hundred merges of lowercase letters, each joining two
//! tokens that exist by the time it is read, so the tokenizer accepts it. Every byte keeps its
//! token, so any prompt tokenizes; the ids stay far below the text encoder's 49408 rows.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use flate2::Compression;
use flate2::write::GzEncoder;

/// The letters the merges are made of, most frequent in English first.
const LETTERS: &[u8] = b"etaoinshrdlcumwf";

/// The text of the merges file: `#version: 0.2`, then
/// - every pair of sixteen common letters (`etaoinshrdlcumwf`) inside a word (`a b` makes
///   `ab`),
/// - every pair of their first eight ending a word (`a b</w>` makes `ab</w>`),
/// - every pair of their first eight followed by one of the first eight ending a word
///   (`th e</w>` makes `the</w>`).
pub fn merges_text() -> String {
    let letters: Vec<char> = LETTERS.iter().map(|&b| char::from(b)).collect();
    let mut lines = vec!["#version: 0.2".to_string()];
    for &a in &letters {
        for &b in &letters {
            lines.push(format!("{a} {b}"));
        }
    }
    for &a in &letters[..8] {
        for &b in &letters[..8] {
            lines.push(format!("{a} {b}</w>"));
        }
    }
    for &a in &letters[..8] {
        for &b in &letters[..8] {
            for &c in &letters[..8] {
                lines.push(format!("{a}{b} {c}</w>"));
            }
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// Writes [`merges_text`] gzip-compressed to `path`; returns the number of merges.
pub fn write(path: &Path) -> Result<usize> {
    let text = merges_text();
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(text.as_bytes())?;
    let bytes = gz.finish()?;
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(text.lines().count() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffbir::ldm::clip::{CLIP_VOCAB_SIZE, ClipTextConfig, ClipTokenizer};
    use diffbir::pipeline::DEFAULT_POS_PROMPT;

    #[test]
    fn the_tokenizer_reads_the_file_and_its_ids_fit_the_text_encoder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bpe_simple_vocab_16e6.txt.gz");
        let merges = write(&path).unwrap();
        assert_eq!(merges, 256 + 64 + 512);
        let tokenizer = ClipTokenizer::from_file(&path).unwrap();
        assert_eq!(tokenizer.vocab_size(), 512 + merges + 2);
        assert!(tokenizer.vocab_size() <= CLIP_VOCAB_SIZE);
        assert_eq!(
            ClipTextConfig::tiny().vocab_size,
            CLIP_VOCAB_SIZE,
            "the tiny encoder keeps every row"
        );
        // A merge chain makes one token of a word; other words fall back to bytes.
        assert_eq!(tokenizer.encode("the").len(), 1);
        let ids = tokenizer.tokenize(DEFAULT_POS_PROMPT, 77);
        assert_eq!(ids.len(), 77);
        assert!(ids.iter().all(|&id| (id as usize) < tokenizer.vocab_size()));
        assert_eq!(ids[0], tokenizer.start_of_text());
    }
}
