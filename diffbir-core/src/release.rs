//! The DiffBIR tasks and releases a pipeline is built for.
//!
//! Each enum is generated from one table of variants and names ([`crate::named`]): the names
//! are what `FromStr` accepts, what `Display` writes and what serde reads and writes, and
//! `ALL` lists the variants in table order.
//!
//! ```
//! use diffbir_core::release::{Task, Version};
//!
//! let version: Version = "v2.1".parse()?;
//! assert_eq!(version, Version::V21);
//! assert_eq!(Task::Face.to_string(), "face");
//! assert_eq!(Task::ALL, [Task::Sr, Task::Face, Task::Denoise, Task::UnalignedFace]);
//! # Ok::<(), diffbir_core::Error>(())
//! ```

use crate::named_enum;

named_enum! {
    /// What to restore (`--task`).
    pub enum Task ("task") {
        /// Blind super-resolution of natural images.
        Sr = "sr",
        /// Aligned 512×512 faces.
        Face = "face",
        /// Blind denoising.
        Denoise = "denoise",
        /// Photos with faces anywhere: each face detected, aligned, restored with the face
        /// models and pasted back onto the background restored as `sr`.
        UnalignedFace = "unaligned_face" | "unaligned-face",
    }
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
        assert_eq!(
            Task::ALL.map(Task::name),
            ["sr", "face", "denoise", "unaligned_face"]
        );
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
            "invalid task: unknown task `SR`: use sr, face, denoise or unaligned_face"
        );
        assert_eq!(
            "unaligned-face".parse::<Task>().unwrap(),
            Task::UnalignedFace
        );
    }
}
