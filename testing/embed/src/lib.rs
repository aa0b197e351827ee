//! The README's library example, compiled from a crate outside `diffbir` that depends on it
//! by path, with the features the README names. It is only compiled (running it would
//! download the official weights): a change to the public API that breaks the example
//! fails this crate's build.
#![deny(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/readme_example.rs"));

#[cfg(test)]
mod tests {
    #[test]
    fn the_readme_example_is_a_function_returning_the_facade_error() {
        let example: fn() -> Result<(), diffbir::Error> = super::readme_example;
        // Built, not called: it would download the weights.
        let _ = example;
    }
}
