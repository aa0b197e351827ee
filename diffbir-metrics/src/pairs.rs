//! Pairing the files of a folder of restored images with a folder of references, by name.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Extensions of the files taken as images (any case); other files are not paired.
pub const IMAGE_EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp"];

/// A restored image and its reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// The restored file's name, which names the pair in reports.
    pub name: String,
    /// The restored image.
    pub restored: PathBuf,
    /// Its reference; `None` when scoring without references.
    pub reference: Option<PathBuf>,
}

/// Which folder a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The restored images.
    Restored,
    /// The references.
    Reference,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Restored => "restored",
            Self::Reference => "reference",
        })
    }
}

/// A file that cannot be paired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No file of the other folder has its name.
    Unmatched {
        /// Its folder.
        side: Side,
        /// The file's name.
        name: String,
    },
    /// Two files of one folder share a name up to the extension (`a.png`, `a.jpg`).
    Ambiguous {
        /// Their folder.
        side: Side,
        /// The files' names.
        names: Vec<String>,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unmatched { side, name } => {
                let other = match side {
                    Side::Restored => Side::Reference,
                    Side::Reference => Side::Restored,
                };
                write!(f, "{side} {name}: no {other} image of that name")
            }
            Self::Ambiguous { side, names } => write!(
                f,
                "{side} {}: several files of one name; keep one",
                names.join(", ")
            ),
        }
    }
}

/// The pairs of two folders and the files that could not be paired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pairing {
    /// The pairs, sorted by name.
    pub pairs: Vec<Pair>,
    /// What could not be paired.
    pub problems: Vec<Problem>,
}

/// The image files of a folder by stem (the name without its extension).
fn images_by_stem(
    dir: &Path,
    side: Side,
    problems: &mut Vec<Problem>,
) -> Result<BTreeMap<String, PathBuf>> {
    let folder_error = |source| Error::Folder {
        path: dir.to_path_buf(),
        source,
    };
    let mut by_stem: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(folder_error)? {
        let path = entry.map_err(folder_error)?.path();
        let is_image = path.is_file()
            && path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if let (true, Some(stem)) = (is_image, path.file_stem()) {
            let stem = stem.to_string_lossy().into_owned();
            by_stem.entry(stem).or_default().push(path);
        }
    }
    let mut unique = BTreeMap::new();
    for (stem, mut paths) in by_stem {
        if paths.len() > 1 {
            paths.sort();
            problems.push(Problem::Ambiguous {
                side,
                names: paths.iter().map(|p| file_name(p)).collect(),
            });
        } else {
            unique.insert(stem, paths.remove(0));
        }
    }
    Ok(unique)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether several reference files have the stem `stem`.
fn reference_ambiguous(problems: &[Problem], stem: &str) -> bool {
    problems.iter().any(|p| match p {
        Problem::Ambiguous {
            side: Side::Reference,
            names,
        } => names
            .iter()
            .any(|n| Path::new(n).file_stem().is_some_and(|s| s == stem)),
        _ => false,
    })
}

/// Pairs the images of `restored` with those of `reference` by stem, whatever their
/// extensions (`3.png` with `3.jpg`). A restored `{stem}_{i}` with no reference of its own
/// name pairs with `{stem}`: `diffbir restore` writes `{stem}_{i}.png` when it draws several
/// samples. Without `reference`, every restored image is a pair on its own.
pub fn pair_folders(restored: &Path, reference: Option<&Path>) -> Result<Pairing> {
    let mut problems = Vec::new();
    let restored_files = images_by_stem(restored, Side::Restored, &mut problems)?;
    let Some(reference) = reference else {
        return Ok(Pairing {
            pairs: restored_files
                .into_values()
                .map(|path| Pair {
                    name: file_name(&path),
                    restored: path,
                    reference: None,
                })
                .collect(),
            problems,
        });
    };
    let references = images_by_stem(reference, Side::Reference, &mut problems)?;
    let mut used = BTreeMap::new();
    let mut pairs = Vec::new();
    for (stem, path) in restored_files {
        let base = stem
            .rsplit_once('_')
            .filter(|(_, i)| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
            .map(|(base, _)| base.to_string());
        // A reference name that several files share is reported as such already.
        let ambiguous = reference_ambiguous(&problems, &stem);
        let key = if references.contains_key(&stem) {
            Some(stem)
        } else {
            base.filter(|b| references.contains_key(b))
        };
        match key {
            Some(key) => {
                used.insert(key.clone(), ());
                pairs.push(Pair {
                    name: file_name(&path),
                    restored: path,
                    reference: Some(references[&key].clone()),
                });
            }
            None if ambiguous => {}
            None => problems.push(Problem::Unmatched {
                side: Side::Restored,
                name: file_name(&path),
            }),
        }
    }
    for (stem, path) in &references {
        if !used.contains_key(stem) {
            problems.push(Problem::Unmatched {
                side: Side::Reference,
                name: file_name(path),
            });
        }
    }
    pairs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Pairing { pairs, problems })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, names: &[&str]) {
        for n in names {
            std::fs::write(dir.join(n), b"x").unwrap();
        }
    }

    #[test]
    fn pairs_by_stem_samples_and_reports_the_rest() {
        let r = tempfile::tempdir().unwrap();
        let g = tempfile::tempdir().unwrap();
        touch(
            r.path(),
            &[
                "1.png",
                "2_0.png",
                "2_1.png",
                "4.png",
                "a.png",
                "a.jpg",
                "notes.txt",
            ],
        );
        touch(g.path(), &["1.jpg", "2.png", "3.png"]);
        let p = pair_folders(r.path(), Some(g.path())).unwrap();
        let names: Vec<(&str, String)> = p
            .pairs
            .iter()
            .map(|p| (p.name.as_str(), file_name(p.reference.as_ref().unwrap())))
            .collect();
        assert_eq!(
            names,
            [
                ("1.png", "1.jpg".into()),
                ("2_0.png", "2.png".into()),
                ("2_1.png", "2.png".into())
            ]
        );
        let problems: Vec<String> = p.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "restored a.jpg, a.png: several files of one name; keep one",
                "restored 4.png: no reference image of that name",
                "reference 3.png: no restored image of that name",
            ]
        );
    }
}
