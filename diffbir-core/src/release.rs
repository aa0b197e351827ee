//! The DiffBIR tasks and releases a pipeline is built for.
//!
//! Each enum is generated from one table of variants and names: the names are what
//! `FromStr` accepts, what `Display` writes and what serde reads and writes, and `ALL` lists
//! the variants in table order.
//!
//! ```
//! use diffbir_core::release::{Task, Version};
//!
//! let version: Version = "v2.1".parse()?;
//! assert_eq!(version, Version::V21);
//! assert_eq!(Task::Face.to_string(), "face");
//! assert_eq!(Task::ALL, [Task::Sr, Task::Face, Task::Denoise]);
//! # Ok::<(), diffbir_core::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Defines a `Copy` enum whose variants each have one name, with `ALL`, `name`, `Display`,
/// `FromStr` and serde from the same table. `what` names the setting in errors; `refuse`, if
/// given, is asked first about a name and may return the error for it.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $ty:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $name:literal, )+
        }
        $(refuse = $refuse:path;)?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $ty {
            $( $(#[$vmeta])* #[serde(rename = $name)] $variant, )+
        }

        impl $ty {
            /// Every value, in the order of the table.
            pub const ALL: [Self; [$($name),+].len()] = [$(Self::$variant),+];

            /// The name (`FromStr`, `Display` and serde use it).
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self> {
                if let Some(value) = Self::ALL.into_iter().find(|v| v.name() == s) {
                    return Ok(value);
                }
                $(if let Some(error) = $refuse(s) {
                    return Err(error);
                })?
                Err(Error::invalid(
                    $what,
                    format!(
                        "unknown {} `{s}`: use {}",
                        $what,
                        one_of(Self::ALL.map(Self::name).as_slice())
                    ),
                ))
            }
        }
    };
}

named_enum! {
    /// What to restore (`--task`).
    pub enum Task ("task") {
        /// Blind super-resolution of natural images.
        Sr = "sr",
        /// Aligned 512×512 faces.
        Face = "face",
        /// Blind denoising.
        Denoise = "denoise",
    }
    refuse = refused_task;
}

named_enum! {
    /// Which DiffBIR release's models and defaults (`--version`).
    pub enum Version ("version") {
        /// The first release (IRControlNet v1, SwinIR stage 1, ε-prediction).
        V1 = "v1",
        /// The ECCV release (BSRNet / SCUNet stage 1 for SR / denoising).
        V2 = "v2",
        /// The current release (zero-SNR v-prediction SD, Real-ESRGAN-trained SwinIR).
        V21 = "v2.1",
    }
}

/// The reference's `unaligned_face` task, refused with what to use instead.
fn refused_task(name: &str) -> Option<Error> {
    matches!(name, "unaligned_face" | "unaligned-face").then(|| {
        Error::Unsupported(
            "the unaligned_face task (detecting faces in a photo, restoring each and pasting \
             them back) is not available in this version: restore aligned 512×512 faces with \
             the face task, or the whole photo with sr"
                .into(),
        )
    })
}

/// `a`, `a or b`, `a, b or c`.
fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Fault;

    #[test]
    fn names_round_trip() {
        use serde::Deserialize;
        use serde::de::IntoDeserializer;
        use serde::de::value::{Error as DeError, StrDeserializer};

        for task in Task::ALL {
            assert_eq!(task.to_string().parse::<Task>().unwrap(), task);
            let de: StrDeserializer<'_, DeError> = task.name().into_deserializer();
            assert_eq!(Task::deserialize(de).unwrap(), task);
        }
        for version in Version::ALL {
            assert_eq!(version.to_string().parse::<Version>().unwrap(), version);
            let de: StrDeserializer<'_, DeError> = version.name().into_deserializer();
            assert_eq!(Version::deserialize(de).unwrap(), version);
        }
        assert_eq!(Version::ALL.map(Version::name), ["v1", "v2", "v2.1"]);
        assert_eq!(Task::ALL.map(Task::name), ["sr", "face", "denoise"]);
    }

    #[test]
    fn unknown_names_say_what_is_accepted() {
        let err = "v3".parse::<Version>().unwrap_err();
        assert_eq!(err.fault(), Fault::Caller);
        assert_eq!(
            err.to_string(),
            "invalid version: unknown version `v3`: use v1, v2 or v2.1"
        );
        let err = "SR".parse::<Task>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid task: unknown task `SR`: use sr, face or denoise"
        );
        for name in ["unaligned_face", "unaligned-face"] {
            let err = name.parse::<Task>().unwrap_err();
            assert_eq!(err.fault(), Fault::Build);
            assert!(err.to_string().contains("aligned 512×512 faces"), "{err}");
        }
    }
}
