//! The command line's flags over the file and the defaults.

use super::*;
use crate::app::settings::{OverflowSetting, Settings};

fn run_args(args: &[&str]) -> RunArgs {
    let argv = ["sluicegate", "run"].iter().chain(args);
    match Cli::parse_args(argv)
        .expect("the command line parses")
        .command
    {
        Command::Run(run) => *run,
        Command::Produce(_) => unreachable!("parsed `run`"),
    }
}

#[test]
fn flags_left_out_are_the_defaults() {
    let s = run_args(&[]).settings().expect("the defaults are valid");
    assert_eq!(s, Settings::default());
    assert_eq!(s.store.batch, defaults::STORE_BATCH);
    assert_eq!(s.stages.transform.capacity, defaults::TRANSFORM_CAPACITY);
    assert_eq!(s.transform.pseudonymise, vec![defaults::PSEUDONYMISE]);
}

#[test]
fn a_flag_given_beats_the_file_and_one_left_out_keeps_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("settings.toml");
    std::fs::write(
        &file,
        "[store]\nbatch = 7\ntable = \"from_file\"\n[stages.decode]\ncapacity = 9\n",
    )
    .expect("the file is written");
    let config = file.to_str().expect("a UTF-8 path");
    let s = run_args(&["--config", config, "--store-batch", "11"])
        .settings()
        .expect("the settings are valid");
    assert_eq!(s.store.batch, 11, "the flag beats the file");
    assert_eq!(
        s.store.table, "from_file",
        "a flag left out keeps the file's value"
    );
    assert_eq!(
        s.stages.decode.capacity, 9,
        "a flag left out keeps the file's value"
    );
    assert_eq!(s.kafka.group, defaults::GROUP, "neither: the default");
}

#[test]
fn pseudonymise_alone_clears_the_list() {
    let s = run_args(&["--pseudonymise"]).settings().expect("valid");
    assert!(s.transform.pseudonymise.is_empty());
    let s = run_args(&["--pseudonymise", "email,name"])
        .settings()
        .expect("valid");
    assert_eq!(s.transform.pseudonymise, vec!["email", "name"]);
}

#[test]
fn flags_given_are_applied() {
    let s = run_args(&[
        "--hash-rounds",
        "3000",
        "--transform-workers",
        "1",
        "--overflow",
        "drop-newest",
        "--input-topic",
        "orders",
        "--http",
        "off",
    ])
    .settings()
    .expect("valid");
    assert_eq!(s.run.hash_rounds, 3000);
    assert_eq!(s.stages.transform.workers, 1);
    assert_eq!(s.stages.decode.overflow, OverflowSetting::DropNewest);
    assert_eq!(s.stages.dead_letters.overflow, OverflowSetting::DropNewest);
    assert_eq!(s.kafka.input_topic, "orders");
    assert_eq!(s.run.http, "off");
}
