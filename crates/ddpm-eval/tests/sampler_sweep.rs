//! `ddpm-eval sampler-sweep` end to end on a tiny digits model: every cell is the number
//! `ddpm-eval fid` gives for the same sampler, steps, n and seed (sampled afresh into a folder
//! of its own), the cells' means and standard deviations are over their seeds, the table, the
//! JSON and the plot hold one row/line per sampler, and a rerun resumes the same samples.
//! Impossible budgets are one-line errors that leave nothing behind.

mod common;

use common::{eval, ok as stdout, train};
use std::path::PathBuf;

const SWEEP: &[&str] = &[
    "sampler-sweep",
    "--checkpoint",
    "tiny",
    "--samplers",
    "ddim,heun",
    "--nfe",
    "2,4",
    "--seeds",
    "0,1",
    "-n",
    "64",
];

#[test]
fn every_cell_is_what_fid_measures_and_the_table_and_plot_hold_every_sampler() {
    let runs = train("tiny", 3);
    let out = stdout(&eval(SWEEP, &runs));
    let dir = PathBuf::from(out.lines().last().unwrap());
    assert!(dir.ends_with("sampler-sweep/step3-n64"), "{}", dir.display());
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let sweep: serde_json::Value = serde_json::from_str(&read("sweep.json")).unwrap();
    assert_eq!(sweep["metric"], "digits_fd");
    let cells = sweep["cells"].as_array().unwrap();
    let shape: Vec<(String, u64, u64, u64, bool)> = cells
        .iter()
        .map(|c| {
            let u = |k: &str| c[k].as_u64().unwrap();
            let name = c["sampler"].as_str().unwrap().to_string();
            (name, u("nfe_budget"), u("steps"), u("nfe"), c["at_t"].as_bool().unwrap())
        })
        .collect();
    let row = |s: &str, b, st, n, t| (s.to_string(), b, st, n, t);
    assert_eq!(
        shape,
        vec![
            row("ddim", 2, 2, 2, false),
            row("ddim", 4, 4, 4, false),
            // Heun's steps cost 2 evaluations but the last: 1 step within 2, 2 within 4.
            row("heun", 2, 1, 1, false),
            row("heun", 4, 2, 3, false),
            row("ddpm", 100, 100, 100, true),
        ]
    );
    // The floor is the data halves' distance, the same in every cell.
    let floors: Vec<f64> =
        cells.iter().map(|c| c["metrics"][0]["floor"].as_f64().unwrap()).collect();
    assert!(floors.iter().all(|&f| f == floors[0] && f > 0.0), "{floors:?}");
    for c in cells {
        let m = &c["metrics"][0];
        let v = ddpm_testkit::f64s(&m["values"]);
        assert_eq!(v.len(), 2, "one value per seed");
        assert_ne!(v[0], v[1], "the seeds sample different images");
        let mean = (v[0] + v[1]) / 2.0;
        let std = (v[0] - v[1]).abs() / 2f64.sqrt();
        assert!((m["mean"].as_f64().unwrap() - mean).abs() <= 1e-12 * mean.abs());
        assert!((m["std"].as_f64().unwrap() - std).abs() <= 1e-9 * std.max(1e-12));
    }
    // Heun at 4 NFE (2 steps), seed 1, sampled afresh by `fid` into a folder of its own.
    let fresh = runs.join("fid-heun-2-seed1");
    let args = ["fid", "--checkpoint", "tiny", "--sampler", "heun", "--steps", "2", "-n", "64"];
    let json = stdout(&eval(
        &[&args[..], &["--seed", "1", "--json", "--out", fresh.to_str().unwrap()]].concat(),
        &runs,
    ));
    let fid: serde_json::Value = serde_json::from_str(json.lines().last().unwrap()).unwrap();
    assert_eq!(fid["digits_fd"].as_f64(), cells[3]["metrics"][0]["values"][1].as_f64());
    assert_eq!(fid["digits_fd_data_halves"].as_f64(), Some(floors[0]));

    // The table: a row per sampler, a column per budget, Heun's real NFE named.
    let md = read("sweep.md");
    let table: Vec<&str> = md.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(table.len(), 3, "{md}");
    assert_eq!(table[0], "| sampler | clip x0 | 2 NFE | 4 NFE |");
    assert!(table[1].starts_with("| ddim | on | "), "{md}");
    // Every sampler clips x0 by default, the ODE solvers included.
    assert!(table[2].starts_with("| heun | on | ") && table[2].contains("(1 NFE)"), "{md}");
    assert!(md.contains("Ancestral (ddpm) over all T = 100 steps, clip on: "), "{md}");
    assert_eq!(out.matches("| heun | on |").count(), 1, "the table is printed too");
    // The plot: ddim, heun, ancestral at T, the floor.
    let svg = read("sweep.svg");
    assert_eq!(svg.matches("class=\"series\"").count(), 4, "{svg}");
    for name in ["ddim", "heun", "ddpm at T = 100", "data floor"] {
        assert!(svg.contains(&format!(">{name}</text>")), "{name} in the legend");
    }

    // A rerun resumes every cell's samples: the same numbers.
    let before = read("sweep.json");
    stdout(&eval(SWEEP, &runs));
    let again: serde_json::Value = serde_json::from_str(&read("sweep.json")).unwrap();
    let old: serde_json::Value = serde_json::from_str(&before).unwrap();
    assert_eq!(again["cells"], old["cells"]);
    std::fs::remove_dir_all(&runs).unwrap();
}

#[test]
fn impossible_budgets_are_one_line_errors_and_leave_nothing_behind() {
    let runs = train("tiny", 1);
    for (extra, expected) in [
        (&["--nfe", "0"][..], "--nfe must be at least 1 network evaluation, got 0"),
        (&["--nfe", "5,500"][..], "--nfe 500 is more than the model's T = 100 steps"),
        (&["--sample-batch-size", "0"][..], "--sample-batch-size must be at least 1"),
        (&["-n", "0"][..], "-n must be at least 1"),
    ] {
        let o = eval(&[&["sampler-sweep", "--checkpoint", "tiny"][..], extra].concat(), &runs);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{extra:?}: {err}");
        assert!(err.contains(expected), "{extra:?}: {err}");
    }
    let run = runs.join("tiny");
    for folder in ["sampler-sweep", "fid"] {
        assert!(!run.join(folder).exists(), "a failed start left {folder}/ behind");
    }
    let o = eval(&["sampler-sweep", "--checkpoint", "tiny", "--samplers", "plms"], &runs);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid value 'plms'"));
    std::fs::remove_dir_all(&runs).unwrap();
}
