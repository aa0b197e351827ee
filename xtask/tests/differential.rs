//! The differential harness (`cargo xtask differential`) with flex as the device under test:
//! one configuration of every family must match the reference bit for bit, and the report
//! must depend on the seed only.

use xtask::differential::{self, Options, Status};

#[test]
fn every_family_matches_itself_on_the_cpu() {
    let mut report = Vec::new();
    let summary = differential::run(&Options::cpu(differential::DEFAULT_SEED, 1), &mut report)
        .expect("the harness runs");
    let text = String::from_utf8(report).unwrap();
    assert_eq!(
        summary.cases.len(),
        differential::families().len(),
        "one case per family:\n{text}"
    );
    let not_passed: Vec<String> = summary
        .cases
        .iter()
        .filter(|c| c.status != Status::Pass)
        .map(ToString::to_string)
        .collect();
    assert!(
        not_passed.is_empty(),
        "cases that did not pass:\n{}",
        not_passed.join("\n")
    );
    for family in differential::families() {
        assert!(
            text.contains(&format!("PASS {family}#0 ")),
            "no line for {family}:\n{text}"
        );
    }
    assert!(
        text.contains("totals: 11 cases, 11 PASS, 0 FAIL, 0 SKIP"),
        "{text}"
    );
    // Every case compared something, exactly.
    for case in &summary.cases {
        assert!(!case.diffs.is_empty(), "{case}");
        assert!(case.diffs.iter().all(|d| d.max_abs == 0.0), "{case}");
    }
}

#[test]
fn the_report_depends_on_the_seed_only() {
    let run = |seed: u64, configs: usize| {
        let options = Options {
            families: vec!["clip".into(), "rrdbnet".into()],
            ..Options::cpu(seed, configs)
        };
        let mut report = Vec::new();
        differential::run(&options, &mut report).unwrap();
        String::from_utf8(report).unwrap()
    };
    let first = run(5, 2);
    assert_eq!(first, run(5, 2));
    assert_ne!(first, run(6, 2));
    // A configuration does not depend on how many others are drawn.
    let line = |text: &str, prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .map(str::to_string)
    };
    assert_eq!(
        line(&first, "PASS clip#0 "),
        line(&run(5, 1), "PASS clip#0 ")
    );
    assert!(first.contains("PASS rrdbnet#1 "), "{first}");
    assert!(!first.contains("swinir"), "{first}");
}

#[test]
fn unknown_families_are_refused() {
    let options = Options {
        families: vec!["nope".into()],
        ..Options::cpu(0, 1)
    };
    let err = differential::run(&options, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("unknown family `nope`"), "{err}");
}
