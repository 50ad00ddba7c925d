//! Guards `csrc/gloo_decls/`: our stand-ins for the gloo headers that the wheel's
//! `ProcessGroupGloo.hpp` includes but the wheel does not ship (see `csrc/gloo_decls/README.md`).
//! If a torch upgrade changes that set, this fails and names the difference, before anything
//! subtler breaks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The `gloo/...` headers a C++ source includes with `#include <gloo/...>`.
fn gloo_includes(source: &str) -> BTreeSet<String> {
    source
        .lines()
        .filter_map(|line| {
            let rest = line.trim_start().strip_prefix('#')?.trim_start().strip_prefix("include")?;
            let name = rest.trim().strip_prefix('<').or_else(|| rest.trim().strip_prefix('"'))?;
            let name = name.split(['>', '"']).next()?;
            name.starts_with("gloo/").then(|| name.to_string())
        })
        .collect()
}

/// The headers under `csrc/gloo_decls/`, as include paths.
fn stand_ins(dir: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "h") {
                out.insert(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn gloo_stand_ins_match_the_headers_process_group_gloo_includes() {
    let header = PathBuf::from(env!("DDPM_C10D_INCLUDE")).join("ProcessGroupGloo.hpp");
    let source = std::fs::read_to_string(&header)
        .unwrap_or_else(|e| panic!("reading {}: {e}", header.display()));
    let wanted = gloo_includes(&source);
    let ours = stand_ins(&Path::new(env!("CARGO_MANIFEST_DIR")).join("csrc/gloo_decls"));
    let missing: Vec<_> = wanted.difference(&ours).collect();
    let stale: Vec<_> = ours.difference(&wanted).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "{} now includes gloo headers {wanted:?}; csrc/gloo_decls stands in for {ours:?}. \
         New (write a stand-in with what the header uses from it): {missing:?}; \
         no longer included (delete the stand-in): {stale:?}. See csrc/gloo_decls/README.md.",
        header.display()
    );
    // The five of PyTorch 2.11, each explained in the README.
    assert_eq!(wanted.len(), 5, "{wanted:?}");
    let readme = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("csrc/gloo_decls/README.md"),
    )
    .unwrap();
    for h in &wanted {
        assert!(readme.contains(&format!("`{h}`")), "README.md does not explain {h}");
    }
}

#[test]
fn include_parser_reads_angle_and_quote_forms_and_ignores_the_rest() {
    let src = "#include <gloo/context.h>\n  #  include \"gloo/transport/device.h\"\n\
               #include <c10/util/hash.h>\n// #include <gloo/commented.h> is not a directive\n";
    let got: Vec<_> = gloo_includes(src).into_iter().collect();
    assert_eq!(got, ["gloo/context.h", "gloo/transport/device.h"]);
}
