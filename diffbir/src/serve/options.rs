//! A job's `options` JSON through the definitions of `diffbir restore`'s options: the
//! server's defaults and the job's values are rendered as `--key=value` arguments and parsed
//! by the same clap parser, so names, aliases, value parsers and messages are the command's.

use clap::{Args, Parser};
use serde_json::{Map, Value};

use super::errors::ApiError;
use crate::cli::args::{ModelArgs, RestoreOptions};

/// Whether `name` (snake case) is an option of `diffbir restore` a job cannot set: what the
/// server loaded its networks with ([`ModelArgs`]' names and aliases), or the command's files
/// and devices.
fn fixed(name: &str) -> bool {
    const COMMAND: [&str; 5] = ["device", "input", "output", "shard", "overwrite"];
    COMMAND.contains(&name)
        || ModelArgs::augment_args(clap::Command::new("model"))
            .get_arguments()
            .flat_map(|arg| {
                arg.get_long()
                    .into_iter()
                    .chain(arg.get_all_aliases().into_iter().flatten())
            })
            .any(|long| long.replace('-', "_") == name)
}

/// A parser of job options over the server's defaults.
#[derive(Debug, Clone)]
pub struct JobOptions {
    defaults: Map<String, Value>,
}

/// The options alone, as a parser of their own.
#[derive(Parser, Debug)]
#[command(
    no_binary_name = true,
    disable_help_flag = true,
    disable_version_flag = true
)]
struct Job {
    #[command(flatten)]
    options: RestoreOptions,
}

impl JobOptions {
    /// Jobs start from `defaults` (the server's command line).
    pub fn new(defaults: &RestoreOptions) -> Result<Self, serde_json::Error> {
        let defaults = match serde_json::to_value(defaults)? {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        Ok(Self { defaults })
    }

    /// The defaults by snake-case name (`null`: the release's).
    pub fn defaults(&self) -> &Map<String, Value> {
        &self.defaults
    }

    /// The options of a job: its `options` object over the defaults. Keys are snake or kebab
    /// case; `null` keeps the server's default.
    pub fn parse(&self, job: &Map<String, Value>) -> Result<RestoreOptions, ApiError> {
        let mut merged = self.defaults.clone();
        let mut given = Vec::new();
        for (key, value) in job {
            let name = key.replace('-', "_");
            if fixed(&name) {
                return Err(ApiError::bad_option(
                    key,
                    format!(
                        "`{key}` is fixed by the server; start it with --{} to change it",
                        name.replace('_', "-")
                    ),
                ));
            }
            if !self.defaults.contains_key(&name) {
                return Err(ApiError::bad_option(key, format!("unknown option `{key}`")));
            }
            match value {
                Value::Null => continue,
                Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
                Value::Array(_) | Value::Object(_) => {
                    return Err(ApiError::bad_option(
                        key,
                        format!("`{key}` takes a string, a number or a boolean"),
                    ));
                }
            }
            merged.insert(name.clone(), value.clone());
            given.push((key, name, value));
        }
        match Self::parse_map(&merged) {
            Ok(options) => Ok(options),
            Err(error) => {
                // Name the first option that fails on its own over the defaults.
                let field = given.iter().find(|(_, name, value)| {
                    let mut alone = self.defaults.clone();
                    alone.insert(name.clone(), (*value).clone());
                    Self::parse_map(&alone).is_err()
                });
                let error = ApiError::bad_request("bad_option", error);
                Err(match field {
                    Some((key, ..)) => error.with_field(key),
                    None => error,
                })
            }
        }
    }

    /// Parses `values` rendered as arguments; the error is clap's first line.
    fn parse_map(values: &Map<String, Value>) -> Result<RestoreOptions, String> {
        let args = values.iter().filter_map(|(key, value)| {
            let flag = format!("--{}", key.replace('_', "-"));
            match value {
                Value::Bool(true) => Some(flag),
                Value::String(text) => Some(format!("{flag}={text}")),
                Value::Number(n) => Some(format!("{flag}={n}")),
                _ => None,
            }
        });
        Job::try_parse_from(args)
            .map(|job| job.options)
            .map_err(|e| {
                let text = e.to_string();
                let line = text.lines().next().unwrap_or_default();
                line.trim_start_matches("error: ").to_owned()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn server(args: &[&str]) -> JobOptions {
        let job = Job::try_parse_from(args).unwrap();
        JobOptions::new(&job.options).unwrap()
    }

    fn job(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn parsed(options: &JobOptions, value: Value) -> Value {
        serde_json::to_value(options.parse(&job(value)).unwrap()).unwrap()
    }

    #[test]
    fn a_job_changes_what_it_names_and_keeps_the_servers_defaults() {
        let options = server(&["--steps", "7", "--cldm-tiled", "--pos-prompt", "a photo"]);
        let got = parsed(
            &options,
            json!({"cfg_scale": 3.5, "sampler": "ddim", "seed": 9, "cldm-tiled": false}),
        );
        assert_eq!(got["steps"], 7);
        assert_eq!(got["pos_prompt"], "a photo");
        assert_eq!(got["cfg_scale"], 3.5);
        assert_eq!(got["sampler"], "ddim");
        assert_eq!(got["seed"], 9);
        assert_eq!(got["cldm_tiled"], false);
        // Rendering the defaults and parsing them again changes nothing.
        assert_eq!(
            &parsed(&options, json!({})),
            &Value::Object(options.defaults().clone())
        );
        // `null` keeps the default; a prompt starting with a dash stays a value.
        let got = parsed(&options, json!({"steps": null, "neg_prompt": "-blurry"}));
        assert_eq!(got["steps"], 7);
        assert_eq!(got["neg_prompt"], "-blurry");
    }

    #[test]
    fn bad_options_are_refused_naming_the_key() {
        let options = server(&[]);
        for (value, field, says) in [
            (json!({"steps": "many"}), "steps", "invalid value"),
            (json!({"sampler": "fast"}), "sampler", "unknown sampler"),
            (json!({"color-fix": "sepia"}), "color-fix", "colour fix"),
            (json!({"stepz": 3}), "stepz", "unknown option"),
            (json!({"task": "face"}), "task", "fixed by the server"),
            (json!({"device": "cuda"}), "device", "fixed by the server"),
            (json!({"ckpt": "x.pt"}), "ckpt", "fixed by the server"),
            (
                json!({"weights-dir": "/"}),
                "weights-dir",
                "fixed by the server",
            ),
            (
                json!({"seed": [1, 2]}),
                "seed",
                "a string, a number or a boolean",
            ),
        ] {
            let err = options.parse(&job(value.clone())).unwrap_err();
            assert_eq!(err.code, "bad_option", "{value}: {err:?}");
            assert_eq!(err.field.as_deref(), Some(field), "{value}: {err:?}");
            assert!(err.message.contains(says), "{value}: {}", err.message);
        }
        let err = options
            .parse(&job(
                json!({"only_center_face": true, "largest_face": true}),
            ))
            .unwrap_err();
        assert!(
            err.message.contains("cannot be used with"),
            "{}",
            err.message
        );
    }
}
