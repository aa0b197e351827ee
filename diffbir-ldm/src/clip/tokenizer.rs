//! OpenAI CLIP's byte-level BPE tokenizer as OpenCLIP ships it
//! (`XPixelGroup/DiffBIR@3f8b530:diffbir/model/open_clip/tokenizer.py`, `SimpleTokenizer`
//! and `tokenize`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::Read;
use std::path::Path;
use std::sync::LazyLock;

use burn::tensor::{Device, Int, Tensor, TensorData};
use diffbir_core::{Error, Result};
use regex::Regex;

use super::clean::clean_text;

/// Size of the vocabulary the released CLIP models use: 256 bytes, 256 bytes ending a word,
/// 48894 merges and the two special tokens.
pub const CLIP_VOCAB_SIZE: usize = 49408;

/// The start-of-text token string.
pub const START_OF_TEXT: &str = "<start_of_text>";
/// The end-of-text token string.
pub const END_OF_TEXT: &str = "<end_of_text>";

/// Marks the last symbol of a word.
const END_OF_WORD: &str = "</w>";

/// The file name of the merges file shipped with CLIP and OpenCLIP.
pub const BPE_VOCAB_FILE: &str = "bpe_simple_vocab_16e6.txt.gz";

/// Words as the reference splits them (case-insensitive): the special tokens, English
/// contractions, runs of letters, single digits, and runs of other non-space characters.
static WORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+",
    )
    .expect("valid regex")
});

/// GPT-2's reversible byte → character map: printable Latin-1 bytes (`!`..=`~`,
/// `¡`..=`¬`, `®`..=`ÿ`) map to themselves, the others to U+0100 onwards in byte order.
/// The vocabulary's first 256 entries are these characters in the order printable bytes
/// first, then the rest.
fn byte_alphabet() -> (Vec<u8>, [char; 256]) {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
    let mut order: Vec<u8> = (0..=255u8).filter(|b| printable(*b)).collect();
    order.extend((0..=255u8).filter(|b| !printable(*b)));
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        table[usize::from(b)] = if printable(b) {
            char::from(b)
        } else {
            let c = char::from_u32(next).expect("below U+0200");
            next += 1;
            c
        };
    }
    (order, table)
}

/// CLIP's tokenizer: text cleaning, word splitting, byte-level BPE, and the fixed-length
/// `[start, ids…, end, 0…]` rows the text encoder takes.
///
/// The vocabulary is built from the merges file (`bpe_simple_vocab_16e6.txt.gz`, plain or
/// gzipped) at run time; this crate does not embed it.
#[derive(Debug, Clone)]
pub struct ClipTokenizer {
    /// Token string → id.
    encoder: HashMap<String, u32>,
    /// Id → token string.
    decoder: Vec<String>,
    /// `(left id, right id)` → (merge rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    byte_to_char: [char; 256],
    char_to_byte: HashMap<char, u8>,
    start_of_text: u32,
    end_of_text: u32,
}

impl ClipTokenizer {
    /// Reads a merges file (gzip-compressed or plain text).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            error: source,
        };
        let raw = std::fs::read(path).map_err(io)?;
        let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(raw.as_slice())
                .read_to_end(&mut out)
                .map_err(io)?;
            out
        } else {
            raw
        };
        let text = String::from_utf8(bytes).map_err(|e| Error::InvalidArgument {
            what: format!("BPE merges file {}", path.display()),
            reason: format!("not UTF-8 text: {e}"),
        })?;
        Self::from_merges(&text).map_err(|e| match e {
            Error::InvalidArgument { reason, .. } => Error::InvalidArgument {
                what: format!("BPE merges file {}", path.display()),
                reason,
            },
            other => other,
        })
    }

    /// Builds the tokenizer from the text of a merges file: a header line, then one merge
    /// (`left right`) per line. Like the reference, the first 48894 lines of merges are used
    /// (blank lines are skipped), giving [`CLIP_VOCAB_SIZE`] tokens for the released file.
    pub fn from_merges(text: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidArgument {
            what: "BPE merges".into(),
            reason,
        };
        const MERGES: usize = CLIP_VOCAB_SIZE - 256 - 256 - 2;
        let lines: Vec<&str> = text.split('\n').skip(1).take(MERGES).collect();
        let mut pairs = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.is_empty() {
                // The end of a short file (the reference would add an empty token).
                continue;
            }
            let [left, right] = parts[..] else {
                return Err(bad(format!(
                    "line {} is `{line}`, expected two symbols",
                    i + 2
                )));
            };
            pairs.push((left, right));
        }
        if pairs.is_empty() {
            return Err(bad("no merges after the header line".into()));
        }

        let (order, byte_to_char) = byte_alphabet();
        let mut decoder: Vec<String> = order
            .iter()
            .map(|b| byte_to_char[usize::from(*b)].to_string())
            .collect();
        decoder.extend(
            order
                .iter()
                .map(|b| format!("{}{END_OF_WORD}", byte_to_char[usize::from(*b)])),
        );
        decoder.extend(pairs.iter().map(|(l, r)| format!("{l}{r}")));
        decoder.push(START_OF_TEXT.into());
        decoder.push(END_OF_TEXT.into());
        // As Python's `dict(zip(vocab, range(...)))`: a repeated string keeps its last id.
        let mut encoder = HashMap::with_capacity(decoder.len());
        for (id, token) in decoder.iter().enumerate() {
            encoder.insert(token.clone(), id as u32);
        }
        let mut merges = HashMap::with_capacity(pairs.len());
        for (rank, (l, r)) in pairs.iter().enumerate() {
            let id = |s: &str| {
                encoder
                    .get(s)
                    .copied()
                    .ok_or_else(|| bad(format!("merge {} uses `{s}`, which is no token", rank + 1)))
            };
            let key = (id(l)?, id(r)?);
            merges.insert(key, (rank as u32, id(&format!("{l}{r}"))?));
        }
        let char_to_byte = (0..=255u8)
            .map(|b| (byte_to_char[usize::from(b)], b))
            .collect();
        Ok(Self {
            start_of_text: encoder[START_OF_TEXT],
            end_of_text: encoder[END_OF_TEXT],
            encoder,
            decoder,
            merges,
            byte_to_char,
            char_to_byte,
        })
    }

    /// Number of tokens (49408 for the released merges file).
    pub fn vocab_size(&self) -> usize {
        self.decoder.len()
    }

    /// Id of `<start_of_text>` (49406).
    pub fn start_of_text(&self) -> u32 {
        self.start_of_text
    }

    /// Id of `<end_of_text>` (49407).
    pub fn end_of_text(&self) -> u32 {
        self.end_of_text
    }

    /// The id of a token string, if it is in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.encoder.get(token).copied()
    }

    /// BPE ids of a text, without start/end tokens and without truncation
    /// (`SimpleTokenizer.encode`). The text is cleaned first (see [`clean_text`]); the
    /// strings `<start_of_text>` and `<end_of_text>` in it become the special tokens.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let cleaned = clean_text(text);
        let mut ids = Vec::new();
        for word in WORD.find_iter(&cleaned) {
            let word = word.as_str();
            if word == START_OF_TEXT {
                ids.push(self.start_of_text);
            } else if word == END_OF_TEXT {
                ids.push(self.end_of_text);
            } else {
                self.bpe(word, &mut ids);
            }
        }
        ids
    }

    /// Appends the BPE ids of one word: its UTF-8 bytes as alphabet characters, the last one
    /// marked as ending the word, then repeatedly every occurrence (left to right) of the
    /// adjacent pair with the lowest merge rank is merged.
    ///
    /// The reference rescans the whole word for its best pair after each merge, which takes
    /// quadratic time: a prompt holding one 64 KiB word took 48 s. Here the pairs wait in a
    /// heap ordered by (rank, position) over a linked list of symbols, and each round takes
    /// all occurrences of the lowest-ranked pair at once, so the result is the reference's
    /// (including when a round creates another occurrence of the pair it merges) in
    /// `O(n log n)`.
    fn bpe(&self, word: &str, ids: &mut Vec<u32>) {
        let bytes = word.as_bytes();
        let Some((last, init)) = bytes.split_last() else {
            return;
        };
        let symbol = |s: String| self.encoder[&s];
        let mut parts: Vec<u32> = init
            .iter()
            .map(|b| symbol(self.byte_to_char[usize::from(*b)].to_string()))
            .collect();
        parts.push(symbol(format!(
            "{}{END_OF_WORD}",
            self.byte_to_char[usize::from(*last)]
        )));
        let n = parts.len();
        // A doubly linked list over the initial positions: a merge keeps the left node.
        let mut next: Vec<usize> = (1..=n).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut alive = vec![true; n];
        let mut heap = BinaryHeap::new();
        let push =
            |heap: &mut BinaryHeap<Reverse<(u32, usize)>>, parts: &[u32], i: usize, j: usize| {
                if let Some((rank, _)) = self.merges.get(&(parts[i], parts[j])) {
                    heap.push(Reverse((*rank, i)));
                }
            };
        for i in 1..n {
            push(&mut heap, &parts, i - 1, i);
        }
        let mut round = Vec::new();
        while let Some(Reverse((rank, first))) = heap.pop() {
            // Every pending occurrence of this rank's pair, in word order.
            round.clear();
            round.push(first);
            while let Some(Reverse((r, i))) = heap.peek().copied()
                && r == rank
            {
                heap.pop();
                round.push(i);
            }
            round.sort_unstable();
            round.dedup();
            let mut pair = None;
            for &i in &round {
                let j = next[i];
                if !alive[i] || j >= n {
                    continue;
                }
                let Some(&(r, merged)) = self.merges.get(&(parts[i], parts[j])) else {
                    continue;
                };
                // A stale entry: this position now holds another pair.
                if r != rank || pair.is_some_and(|p| p != (parts[i], parts[j])) {
                    continue;
                }
                pair = Some((parts[i], parts[j]));
                parts[i] = merged;
                alive[j] = false;
                next[i] = next[j];
                if next[i] < n {
                    prev[next[i]] = i;
                }
                if prev[i] < n {
                    push(&mut heap, &parts, prev[i], i);
                }
                if next[i] < n {
                    push(&mut heap, &parts, i, next[i]);
                }
            }
        }
        ids.extend((0..n).filter(|i| alive[*i]).map(|i| parts[i]));
    }

    /// Text of a list of ids (`SimpleTokenizer.decode`): the byte-level symbols joined,
    /// decoded as UTF-8 (invalid bytes replaced), word ends turned into spaces. Ids outside
    /// the vocabulary are skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        let symbols: String = ids
            .iter()
            .filter_map(|id| self.decoder.get(*id as usize))
            .map(String::as_str)
            .collect();
        let bytes: Vec<u8> = symbols
            .chars()
            .filter_map(|c| self.char_to_byte.get(&c).copied())
            .collect();
        String::from_utf8_lossy(&bytes).replace(END_OF_WORD, " ")
    }

    /// One row of the text encoder's input (`tokenize`): `[start] + encode(text) + [end]`,
    /// truncated to `context_length` with the end token kept last, padded with 0.
    pub fn tokenize(&self, text: &str, context_length: usize) -> Vec<u32> {
        let mut row = Vec::with_capacity(context_length.max(2));
        row.push(self.start_of_text);
        row.extend(self.encode(text));
        row.push(self.end_of_text);
        if row.len() > context_length {
            row.truncate(context_length);
            if let Some(last) = row.last_mut() {
                *last = self.end_of_text;
            }
        }
        row.resize(context_length, 0);
        row
    }

    /// [`tokenize`](Self::tokenize) for a batch, as an integer tensor.
    ///
    /// # Shapes
    /// - returns `[texts.len(), context_length]`
    pub fn tokenize_batch<S: AsRef<str>>(
        &self,
        texts: &[S],
        context_length: usize,
        device: &Device,
    ) -> Tensor<2, Int> {
        let ids: Vec<i64> = texts
            .iter()
            .flat_map(|t| self.tokenize(t.as_ref(), context_length))
            .map(i64::from)
            .collect();
        Tensor::from_data(TensorData::new(ids, [texts.len(), context_length]), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The merges file shipped with the reference fixtures.
    fn tokenizer() -> ClipTokenizer {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures")
            .join(BPE_VOCAB_FILE);
        ClipTokenizer::from_file(&path)
            .unwrap_or_else(|e| panic!("the CLIP merges file is needed at {}: {e}", path.display()))
    }

    #[test]
    fn alphabet_matches_gpt2() {
        let (order, table) = byte_alphabet();
        assert_eq!(order.len(), 256);
        assert_eq!((order[0], table[usize::from(b'!')]), (b'!', '!'));
        assert_eq!(table[0], '\u{100}');
        assert_eq!(table[usize::from(b' ')], '\u{120}');
        assert_eq!(table[0xad], '\u{143}');
    }

    #[test]
    fn vocabulary_has_the_reference_layout() {
        let t = tokenizer();
        assert_eq!(t.vocab_size(), CLIP_VOCAB_SIZE);
        assert_eq!((t.start_of_text(), t.end_of_text()), (49406, 49407));
        assert_eq!(t.token_id("a</w>"), Some(320));
    }

    #[test]
    fn a_photo_of_a_cat() {
        // The reference's value (`tokenize`,
        // `XPixelGroup/DiffBIR@3f8b530:diffbir/model/open_clip/tokenizer.py:L159-L188`).
        let t = tokenizer();
        let row = t.tokenize("a photo of a cat", 77);
        assert_eq!(row[..7], [49406, 320, 1125, 539, 320, 2368, 49407]);
        assert!(row[7..].iter().all(|id| *id == 0));
        assert_eq!(
            t.encode("A   PHOTO of\ta cat "),
            t.encode("a photo of a cat")
        );
        assert_eq!(t.decode(&row[1..6]), "a photo of a cat ");
    }

    #[test]
    fn digits_unicode_and_special_tokens() {
        let t = tokenizer();
        // Digits are single words; every word ends with `</w>`.
        assert_eq!(t.encode("2024").len(), 4);
        assert_eq!(t.decode(&t.encode("2024")), "2 0 2 4 ");
        // Non-Latin text and emoji go through the byte alphabet and round-trip.
        for text in ["東京タワーの夜景", "café naïve", "emoji 😀🔥"] {
            let ids = t.encode(text);
            assert!(!ids.is_empty());
            assert_eq!(t.decode(&ids).replace(' ', ""), text.replace(' ', ""));
        }
        let ids = t.encode("<START_OF_TEXT>x<end_of_text>");
        assert_eq!((ids[0], *ids.last().unwrap()), (49406, 49407));
        assert!(t.encode("").is_empty() && t.encode(" \n\t").is_empty());
    }

    #[test]
    fn long_prompts_are_truncated_keeping_the_end_token() {
        let t = tokenizer();
        let long = "a, ".repeat(100);
        let row = t.tokenize(&long, 77);
        assert_eq!(row.len(), 77);
        assert_eq!((row[0], row[76]), (49406, 49407));
        assert!(row[1..76].iter().all(|id| *id != 0 && *id != 49407));
        assert_eq!(t.tokenize("x", 1), [49407]);
        assert_eq!(t.tokenize("x", 3), [49406, t.encode("x")[0], 49407]);
    }

    #[test]
    fn default_prompts_have_the_reference_lengths() {
        // DiffBIR's default positive and negative prompts
        // (`XPixelGroup/DiffBIR@3f8b530:inference.py:L42-L52`; the reference's `tokenize` gives
        // 55 and 64 tokens with start and end).
        let t = tokenizer();
        let count = |s: &str| t.tokenize(s, 77).iter().filter(|id| **id != 0).count();
        let positive = "Cinematic, High Contrast, highly detailed, taken using a Canon EOS R \
                        camera, hyper detailed photo - realistic maximum detail, 32k, Color \
                        Grading, ultra HD, extreme meticulous detailing, skin pore detailing, \
                        hyper sharpness, perfect without deformations.";
        let negative = "painting, oil painting, illustration, drawing, art, sketch, oil \
                        painting, cartoon, CG Style, 3D render, unreal engine, blurring, dirty, \
                        messy, worst quality, low quality, frames, watermark, signature, jpeg \
                        artifacts, deformed, lowres, over-smooth.";
        assert_eq!(count(positive), 55);
        assert_eq!(count(negative), 64);
    }

    #[test]
    fn batches_become_int_tensors() {
        let t = tokenizer();
        let device = Device::flex();
        let x = t.tokenize_batch(&["a photo of a cat", ""], 77, &device);
        assert_eq!(x.dims(), [2, 77]);
        let v: Vec<i64> = x.into_data().convert::<i64>().try_into_vec().unwrap();
        assert_eq!(v[77..79], [49406, 49407]);
    }

    /// The reference's BPE (`SimpleTokenizer.bpe`): rescan for the lowest-ranked pair, merge
    /// its occurrences left to right, repeat.
    fn reference_bpe(t: &ClipTokenizer, word: &str) -> Vec<u32> {
        let bytes = word.as_bytes();
        let Some((last, init)) = bytes.split_last() else {
            return Vec::new();
        };
        let mut parts: Vec<u32> = init
            .iter()
            .map(|b| t.encoder[&t.byte_to_char[usize::from(*b)].to_string()])
            .collect();
        parts.push(t.encoder[&format!("{}{END_OF_WORD}", t.byte_to_char[usize::from(*last)])]);
        while parts.len() > 1 {
            let best = parts
                .windows(2)
                .filter_map(|w| t.merges.get(&(w[0], w[1])).map(|m| ((w[0], w[1]), *m)))
                .min_by_key(|(_, (rank, _))| *rank);
            let Some(((left, right), (_, merged))) = best else {
                break;
            };
            let mut next = Vec::with_capacity(parts.len());
            let mut i = 0;
            while i < parts.len() {
                if i + 1 < parts.len() && parts[i] == left && parts[i + 1] == right {
                    next.push(merged);
                    i += 2;
                } else {
                    next.push(parts[i]);
                    i += 1;
                }
            }
            parts = next;
        }
        parts
    }

    #[test]
    fn bpe_merges_like_the_reference() {
        let t = tokenizer();
        let check = |word: &str| {
            let mut ids = Vec::new();
            t.bpe(word, &mut ids);
            assert_eq!(ids, reference_bpe(&t, word), "{word:?}");
        };
        for word in [
            "a",
            "photo",
            "aaaaaaaaaaaaaaaaa",
            "abababababab",
            "mississippi",
            "東京タワーの夜景",
            "caf\u{e9}",
            "😀🔥👍",
            "!!!???...",
            "ÃƒÂ©",
        ] {
            check(word);
        }
        // Random words over a small alphabet (many repeated and overlapping pairs) and over
        // letters, accents and CJK.
        let alphabets: [&[char]; 3] = [
            &['a', 'b', 'n', 'e'],
            &['a', 'e', 'i', 'o', 'u', 'r', 's', 't', 'l', 'n', 'é', 'ü'],
            &['東', '京', 'の', '夜', 'a', 'z', 'ß'],
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for round in 0..3000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let alphabet = alphabets[round % 3];
            let len = 1 + (state % 40) as usize;
            let word: String = (0..len)
                .map(|k| alphabet[((state >> (k % 48)) as usize + k * 7) % alphabet.len()])
                .collect();
            check(&word);
        }
    }

    #[test]
    fn fuzz_clip_tokenizer_long_word_is_fast() {
        // Found by the clip_tokenizer fuzz target on long inputs (docs/fuzzing.md): one
        // 64 KiB word of random letters took 48 s with the reference's quadratic BPE.
        let t = tokenizer();
        let mut state = 7u64;
        let word: String = (0..65_536)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                char::from(b'a' + (state >> 59) as u8 % 26)
            })
            .collect();
        let start = std::time::Instant::now();
        let row = t.tokenize(&word, 77);
        let elapsed = start.elapsed();
        assert_eq!((row[0], row[76]), (49406, 49407));
        assert!(
            elapsed < std::time::Duration::from_secs(5),
            "a 64 KiB word took {elapsed:?}"
        );
        // Still the reference's tokens: compare a prefix word short enough for it.
        let mut ids = Vec::new();
        t.bpe(&word[..2000], &mut ids);
        assert_eq!(ids, reference_bpe(&t, &word[..2000]));
    }

    #[test]
    fn malformed_merges_are_errors() {
        assert!(ClipTokenizer::from_merges("#version: 0.2\n").is_err());
        assert!(ClipTokenizer::from_merges("#version: 0.2\na b c\n").is_err());
        let err = ClipTokenizer::from_file("/nonexistent/bpe.txt.gz").unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }
}
