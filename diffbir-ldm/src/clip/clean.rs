//! Text cleaning before BPE, as OpenCLIP's `SimpleTokenizer.encode` does it
//! (`XPixelGroup/DiffBIR@3f8b530:diffbir/model/open_clip/tokenizer.py`):
//! `whitespace_clean(basic_clean(text)).lower()`, where `basic_clean` is `ftfy.fix_text`,
//! `html.unescape` twice and `strip`.
//!
//! `ftfy.fix_text` (ftfy 6) is reproduced for what prompts meet: its HTML entity decoding
//! (only in lines before the first `<`), repair of UTF-8 text that was decoded as Latin-1 or
//! Windows-1252 (whole text, and embedded runs, repeated until stable), C1 control characters
//! read as Windows-1252, Latin ligatures, full/half-width forms, curly quotes, line breaks,
//! terminal escapes, control characters and NFC normalisation, all repeated until nothing
//! changes. Not reproduced: ftfy's statistical "badness" score (a text is repaired when it
//! contains a complete UTF-8 sequence in its Latin-1/Windows-1252 image and the bytes decode),
//! its other legacy code pages (Windows-1250/1251/1253/1254/1257, ISO-8859-2, MacRoman,
//! CP437), and its repairs of sequences whose `0xA0` byte became a space or whose bytes were
//! lost.

use std::sync::LazyLock;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

/// Cleans a prompt the way the reference tokenizer does before splitting it into words:
/// ftfy-style repair, HTML unescaping (twice), whitespace collapsed to single spaces and
/// trimmed, lower-cased.
pub fn clean_text(text: &str) -> String {
    let fixed = fix_text(text);
    let unescaped = html_unescape(&html_unescape(&fixed));
    whitespace_clean(py_strip(&unescaped)).to_lowercase()
}

/// `re.sub(r'\s+', ' ', text).strip()` (the `regex` module's `\s` is Unicode `White_Space`,
/// as is Rust's).
fn whitespace_clean(text: &str) -> String {
    static SPACES: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s+").expect("valid regex"));
    py_strip(&SPACES.replace_all(text, " ")).to_string()
}

/// Python's `str.isspace`: Unicode `White_Space` plus the information separators
/// U+001C..U+001F.
fn py_is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()`.
fn py_strip(text: &str) -> &str {
    text.trim_matches(py_is_space)
}

// ---- ftfy.fix_text ---------------------------------------------------------------------

/// ftfy's segment length limit (`max_decode_length`, in code points).
const MAX_SEGMENT: usize = 1_000_000;

/// `ftfy.fix_text` with its default configuration (see the module docs for what is covered).
pub fn fix_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // ftfy decodes HTML entities only while it has not seen a `<` (in this or an earlier
    // line): text with tags is taken to be HTML whose entities are meant literally.
    let mut unescape = true;
    let mut rest = text;
    while !rest.is_empty() {
        let line_end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        let limit = rest
            .char_indices()
            .nth(MAX_SEGMENT)
            .map_or(rest.len(), |(i, _)| i);
        let (segment, tail) = rest.split_at(line_end.min(limit));
        if segment.contains('<') {
            unescape = false;
        }
        out.push_str(&fix_segment(segment, unescape));
        rest = tail;
    }
    out
}

/// `ftfy.fix_and_explain` on one segment: every fixer in ftfy's order, until a fixed point.
fn fix_segment(segment: &str, unescape: bool) -> String {
    let mut text = segment.to_string();
    loop {
        let before = text.clone();
        if unescape {
            text = unescape_entities(&text);
        }
        text = fix_encoding(&text);
        text = fix_c1_controls(&text);
        text = fix_latin_ligatures(&text);
        text = fix_character_width(&text);
        text = uncurl_quotes(&text);
        text = fix_line_breaks(&text);
        text = remove_terminal_escapes(&text);
        text = remove_control_chars(&text);
        text = text.nfc().collect();
        if text == before {
            return text;
        }
    }
}

/// Windows-1252 at 0x80..=0x9F; the five bytes it leaves undefined decode to the C1
/// control of the same value ("sloppy" Windows-1252, as web browsers and ftfy read it).
const CP1252_HIGH: [char; 32] = [
    '\u{20ac}', '\u{81}', '\u{201a}', '\u{192}', '\u{201e}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{2c6}', '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8d}', '\u{17d}', '\u{8f}',
    '\u{90}', '\u{2018}', '\u{2019}', '\u{201c}', '\u{201d}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{2dc}', '\u{2122}', '\u{161}', '\u{203a}', '\u{153}', '\u{9d}', '\u{17e}', '\u{178}',
];

/// The byte a character came from if the text was decoded as sloppy Windows-1252.
fn cp1252_byte(c: char) -> Option<u8> {
    let code = u32::from(c);
    if code < 0x80 || (0xa0..=0xff).contains(&code) {
        return Some(code as u8);
    }
    CP1252_HIGH
        .iter()
        .position(|&m| m == c)
        .map(|i| 0x80 + i as u8)
}

/// The byte a character came from if the text was decoded as Latin-1 or as sloppy
/// Windows-1252 (Latin-1 for U+0000..=U+00FF, so C1 controls keep their value).
fn byte_image(c: char) -> Option<u8> {
    u8::try_from(u32::from(c)).ok().or_else(|| cp1252_byte(c))
}

fn is_continuation(b: u8) -> bool {
    (0x80..=0xbf).contains(&b)
}

/// Number of continuation bytes a UTF-8 lead byte announces (`None` for bytes that cannot
/// lead a multi-byte sequence).
fn continuation_count(b: u8) -> Option<usize> {
    match b {
        0xc2..=0xdf => Some(1),
        0xe0..=0xef => Some(2),
        0xf0..=0xf4 => Some(3),
        _ => None,
    }
}

/// If a valid multi-byte UTF-8 sequence, read as Latin-1/Windows-1252, starts at `chars[i]`:
/// its length in characters and the character it encodes.
fn mojibake_at(chars: &[char], i: usize) -> Option<(usize, char)> {
    let lead = byte_image(*chars.get(i)?)?;
    let n = continuation_count(lead)?;
    let tail = chars.get(i + 1..=i + n)?;
    let mut bytes = vec![lead];
    for &c in tail {
        let b = byte_image(c).filter(|b| is_continuation(*b))?;
        bytes.push(b);
    }
    let decoded = std::str::from_utf8(&bytes).ok()?;
    Some((n + 1, decoded.chars().next()?))
}

/// `ftfy.fix_encoding`: undoes UTF-8 that was decoded as Latin-1 or Windows-1252, repeatedly
/// (mojibake is often applied twice).
pub fn fix_encoding(text: &str) -> String {
    let mut text = text.to_string();
    while let Some(fixed) = fix_encoding_step(&text) {
        text = fixed;
    }
    text
}

/// One repair, or `None` when the text does not look like mojibake or cannot be repaired.
fn fix_encoding_step(text: &str) -> Option<String> {
    if text.is_ascii() {
        return None;
    }
    let chars: Vec<char> = text.chars().collect();
    if !(0..chars.len()).any(|i| mojibake_at(&chars, i).is_some()) {
        return None;
    }
    // The whole text re-encoded, first as Latin-1, then as sloppy Windows-1252.
    let encoders: [fn(char) -> Option<u8>; 2] = [|c| u8::try_from(u32::from(c)).ok(), cp1252_byte];
    for encode in encoders {
        let bytes: Option<Vec<u8>> = chars.iter().map(|&c| encode(c)).collect();
        if let Some(decoded) = bytes.and_then(|b| String::from_utf8(b).ok()) {
            return Some(decoded);
        }
    }
    // Runs of mojibake embedded in otherwise correct text, each decoded in place (a run
    // directly after a stray continuation character is left alone).
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    let mut i = 0;
    while i < chars.len() {
        let after_continuation = i > 0 && byte_image(chars[i - 1]).is_some_and(is_continuation);
        if !after_continuation {
            let start = i;
            let mut run = String::new();
            while let Some((len, c)) = mojibake_at(&chars, i) {
                run.push(c);
                i += len;
            }
            if i > start {
                if i - start < chars.len() {
                    out.push_str(&run);
                    changed = true;
                } else {
                    out.extend(&chars[start..i]);
                }
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    changed.then_some(out)
}

/// C1 control characters (U+0080..=U+009F) read as the Windows-1252 characters of the same
/// byte.
fn fix_c1_controls(text: &str) -> String {
    text.chars()
        .map(|c| match u32::from(c) {
            code @ 0x80..=0x9f => CP1252_HIGH[(code - 0x80) as usize],
            _ => c,
        })
        .collect()
}

/// Single-character Latin ligatures and legacy digraphs split into their letters.
fn fix_latin_ligatures(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let replacement = match c {
            'Ĳ' => "IJ",
            'ĳ' => "ij",
            'ŉ' => "ʼn",
            'Ǳ' => "DZ",
            'ǲ' => "Dz",
            'ǳ' => "dz",
            'Ǆ' => "DŽ",
            'ǅ' => "Dž",
            'ǆ' => "dž",
            'Ǉ' => "LJ",
            'ǈ' => "Lj",
            'ǉ' => "lj",
            'Ǌ' => "NJ",
            'ǋ' => "Nj",
            'ǌ' => "nj",
            'ﬀ' => "ff",
            'ﬁ' => "fi",
            'ﬂ' => "fl",
            'ﬃ' => "ffi",
            'ﬄ' => "ffl",
            'ﬅ' => "ſt",
            'ﬆ' => "st",
            _ => {
                out.push(c);
                continue;
            }
        };
        out.push_str(replacement);
    }
    out
}

/// Half-width and full-width forms (U+FF01..=U+FFEF) replaced by their NFKC equivalents, and
/// the ideographic space by a space.
fn fix_character_width(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{3000}' => out.push(' '),
            '\u{ff01}'..='\u{ffef}' => out.extend(std::iter::once(c).nfkc()),
            _ => out.push(c),
        }
    }
    out
}

/// Curly single quotes (and U+02BC) to `'`, curly double quotes to `"`.
fn uncurl_quotes(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{2bc}' | '\u{2018}'..='\u{201b}' => '\'',
            '\u{201c}'..='\u{201f}' => '"',
            _ => c,
        })
        .collect()
}

/// CRLF, CR, U+2028, U+2029 and U+0085 to `\n`.
fn fix_line_breaks(text: &str) -> String {
    text.replace("\r\n", "\n")
        .chars()
        .map(|c| match c {
            '\r' | '\u{2028}' | '\u{2029}' | '\u{85}' => '\n',
            _ => c,
        })
        .collect()
}

/// ANSI terminal escapes (`ESC [ digits/semicolons letter`) removed.
fn remove_terminal_escapes(text: &str) -> String {
    static ANSI: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\x1b\[((?:\d|;)*)([a-zA-Z])").expect("valid regex"));
    ANSI.replace_all(text, "").into_owned()
}

/// Control characters that are never meant (C0 controls other than tab, LF, FF and CR; DEL;
/// the deprecated Arabic format controls; the BOM; interlinear annotations and the object
/// replacement character) removed.
fn remove_control_chars(text: &str) -> String {
    text.chars()
        .filter(|&c| {
            !matches!(
                c,
                '\u{0}'..='\u{8}'
                    | '\u{b}'
                    | '\u{e}'..='\u{1f}'
                    | '\u{7f}'
                    | '\u{206a}'..='\u{206f}'
                    | '\u{feff}'
                    | '\u{fff9}'..='\u{fffc}'
            )
        })
        .collect()
}

// ---- HTML entities ---------------------------------------------------------------------

/// An HTML5 named character reference, looked up with its `&` and, where the table has one,
/// its `;` (`amp;` and the legacy `amp` are both entries).
fn named_entity(name: &str) -> Option<&'static str> {
    let mut key = Vec::with_capacity(name.len() + 1);
    key.push(b'&');
    key.extend_from_slice(name.as_bytes());
    htmlize::ENTITIES
        .get(key.as_slice())
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// ftfy's `unescape_html`: entities closed by `;`, including all-caps forms of lower-case
/// entity names (`&EACUTE;` → `É`), and numeric references that decode completely.
fn unescape_entities(text: &str) -> String {
    static ENTITY: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"&#?[0-9A-Za-z]{1,24};").expect("valid regex"));
    if !text.contains('&') {
        return text.to_string();
    }
    ENTITY
        .replace_all(text, |caps: &regex::Captures<'_>| {
            let entity = &caps[0];
            let name = &entity[1..];
            if let Some(value) = named_entity(name) {
                return value.to_string();
            }
            if entity.starts_with("&#") {
                let decoded = html_unescape(entity);
                return if decoded.contains(';') {
                    entity.to_string()
                } else {
                    decoded
                };
            }
            let lower = name.to_ascii_lowercase();
            if lower != name
                && lower.to_ascii_uppercase() == name
                && html_unescape(entity) == entity
                && let Some(value) = named_entity(&lower)
            {
                return value.to_uppercase();
            }
            entity.to_string()
        })
        .into_owned()
}

/// Python's `html.unescape`: numeric references (with or without `;`, Windows-1252 for
/// 0x80..=0x9F, U+FFFD for NUL, surrogates and out-of-range values, nothing for other
/// invalid code points) and HTML5 named references, including the longest legacy prefix of
/// an unknown name (`&amplifier` → `&lifier`).
pub fn html_unescape(text: &str) -> String {
    static CHARREF: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\x0c <&#;]{1,32};?)")
            .expect("valid regex")
    });
    if !text.contains('&') {
        return text.to_string();
    }
    CHARREF
        .replace_all(text, |caps: &regex::Captures<'_>| {
            let s = &caps[1];
            if let Some(number) = s.strip_prefix('#') {
                let number = number.trim_end_matches(';');
                let value = match number.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16),
                    None => number.parse::<u32>(),
                };
                return numeric_reference(value.ok()).to_string();
            }
            if let Some(value) = named_entity(s) {
                return value.to_string();
            }
            // The longest prefix (of at least two characters) that is an entity.
            let boundaries: Vec<usize> = s.char_indices().map(|(i, _)| i).skip(2).collect();
            for &end in boundaries.iter().rev() {
                if let Some(value) = named_entity(&s[..end]) {
                    return format!("{value}{}", &s[end..]);
                }
            }
            format!("&{s}")
        })
        .into_owned()
}

/// The text a numeric character reference stands for (`None`: a value beyond `u32`).
fn numeric_reference(value: Option<u32>) -> String {
    let Some(code) = value else {
        return '\u{fffd}'.to_string();
    };
    match code {
        0 => '\u{fffd}'.to_string(),
        0x0d => '\r'.to_string(),
        0x80..=0x9f => CP1252_HIGH[(code - 0x80) as usize].to_string(),
        0xd800..=0xdfff | 0x11_0000.. => '\u{fffd}'.to_string(),
        0x1..=0x8 | 0xb | 0xe..=0x1f | 0x7f | 0xfdd0..=0xfdef => String::new(),
        _ if code & 0xfffe == 0xfffe => String::new(),
        _ => char::from_u32(code).map(String::from).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_unescape_follows_python() {
        assert_eq!(html_unescape("&amp;amp; &lt;b&gt;"), "&amp; <b>");
        assert_eq!(
            html_unescape("&amplifier &Eacute &#x41 &#65;"),
            "&lifier É A A"
        );
        assert_eq!(
            html_unescape("&#128;&#1;&#0;&#xD800;&#99999999999;"),
            "€\u{fffd}\u{fffd}\u{fffd}"
        );
        assert_eq!(html_unescape("&unknown; & &;"), "&unknown; & &;");
    }

    #[test]
    fn ftfy_entities_and_quotes() {
        // Nested escapes are decoded to a fixed point while no `<` was seen ...
        assert_eq!(fix_text("&amp;amp;amp;amp;"), "&");
        // ... and not at all once one was.
        assert_eq!(fix_text("&amp;amp; <"), "&amp;amp; <");
        assert_eq!(fix_text("a\n&amp;lt; <\n&amp;"), "a\n&amp;lt; <\n&amp;");
        assert_eq!(fix_text("&EACUTE; &Eacute &#1;x"), "É &Eacute x");
        assert_eq!(fix_text("it\u{2019}s \u{201c}x\u{201d}"), "it's \"x\"");
        assert_eq!(fix_text("\u{fb02}u\u{fb03}e\u{fb06}"), "fluffiest");
        assert_eq!(fix_text("ＬＯＵＤ\u{3000}ＮＯＩＳＥＳ"), "LOUD NOISES");
        assert_eq!(fix_text("\x1b[36;44mblue\x1b[0m a\0b\u{feff}c"), "blue abc");
        assert_eq!(fix_text("e\u{301}\r\n\u{2028}"), "é\n\n");
    }

    #[test]
    fn ftfy_mojibake() {
        assert_eq!(fix_text("Ã©tÃ© mojibake"), "été mojibake");
        assert_eq!(fix_text("café Ã©tÃ©"), "café été");
        assert_eq!(
            fix_text("The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows."),
            "The Mona Lisa doesn't have eyebrows."
        );
        assert_eq!(fix_text("\u{93}quoted\u{94}"), "\"quoted\"");
        assert_eq!(fix_text("naïve façade Ã"), "naïve façade Ã");
    }

    #[test]
    fn clean_text_collapses_and_lowercases() {
        assert_eq!(
            clean_text("  A  Photo\tOF\n a CAT \u{3000}"),
            "a photo of a cat"
        );
        assert_eq!(clean_text("&amp;amp; &lt;Tag&gt;"), "& <tag>");
        assert_eq!(clean_text("ΣΊΣΥΦΟΣ"), "σίσυφος");
    }
}
