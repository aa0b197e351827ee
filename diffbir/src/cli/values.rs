//! Command-line values parsed into the library's types: a named enum's names come from its
//! table ([`Named`]), so `--help` lists them and an unknown name gets the library's message
//! (what is accepted, or why a name is refused). clap's `ValueEnum` would need clap in the
//! library crates and would replace those messages with its own.

use std::ffi::OsStr;
use std::fmt::Display;
use std::marker::PhantomData;

use clap::builder::{PossibleValue, TypedValueParser};
use clap::error::ErrorKind;
use diffbir::core::named::Named;

/// A clap value parser for a [`Named`] enum.
#[derive(Clone)]
pub struct NamedValue<T>(PhantomData<T>);

/// The parser of `T`'s names (`value_parser = named::<Task>()`).
pub fn named<T: Named>() -> NamedValue<T> {
    NamedValue(PhantomData)
}

impl<T> TypedValueParser for NamedValue<T>
where
    T: Named + Clone + Send + Sync,
    T::Err: Display,
{
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let fail = |message: String| {
            let arg = arg.map_or_else(String::new, |a| format!("{a}: "));
            clap::Error::raw(ErrorKind::InvalidValue, format!("{arg}{message}\n")).with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| fail(format!("the {} is not UTF-8", T::WHAT)))?;
        text.parse::<T>().map_err(|e| fail(e.to_string()))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            T::values().iter().map(|v| PossibleValue::new(v.name())),
        ))
    }
}
