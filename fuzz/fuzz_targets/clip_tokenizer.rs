//! Prompts (`--pos-prompt`, `--neg-prompt`, training captions) through the CLIP tokenizer:
//! ftfy-style repair, HTML unescaping, word splitting and byte-level BPE with the real
//! merges file.
#![no_main]

use std::sync::LazyLock;

use diffbir_ldm::clip::{BPE_VOCAB_FILE, ClipTokenizer};
use libfuzzer_sys::fuzz_target;

static TOKENIZER: LazyLock<ClipTokenizer> = LazyLock::new(|| {
    let path = diffbir_fuzz::fixtures_dir().join(BPE_VOCAB_FILE);
    ClipTokenizer::from_file(&path).unwrap_or_else(|e| {
        panic!(
            "the CLIP merges file is needed at {} (set DIFFBIR_FIXTURES): {e}",
            path.display()
        )
    })
});

fuzz_target!(|data: &[u8]| {
    let tokenizer = &*TOKENIZER;
    let text = String::from_utf8_lossy(data);
    let row = tokenizer.tokenize(&text, 77);
    assert_eq!(row.len(), 77);
    assert_eq!(row[0], tokenizer.start_of_text());
    assert!(row.contains(&tokenizer.end_of_text()));
    let ids = tokenizer.encode(&text);
    let vocab = tokenizer.vocab_size() as u32;
    assert!(ids.iter().all(|id| *id < vocab));
    let _ = tokenizer.decode(&ids);
});
