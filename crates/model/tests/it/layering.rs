//! The crate's layering, checked on its source: kernels (`src/kernels/`)
//! never import an architecture (`src/llama.rs`, and every model family
//! added beside it) or a loader. Architectures import kernels; a kernel
//! that reached back into an architecture would make every new family
//! depend on the first one.
//!
//! The check is an allowlist: outside its test modules, a kernel file may
//! name only the other kernels and the shared modules below, so a new
//! architecture file is refused without this test having to know its name.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The crate modules a kernel may name (besides `kernels` itself): types
/// every architecture shares.
const SHARED: &[&str] = &["config", "error", "kv_cache", "lora", "step"];

/// Modules that the shared ones, in turn, must not name: the architecture,
/// the loaders and the model facade over them.
const ABOVE_THE_KERNELS: &[&str] = &["llama", "load", "model", "tiny", "factory"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The file without its comments and without its test modules (from the
/// first top-level `#[cfg(test)]` followed by a `mod` on the next line).
fn production_code(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let next = lines.get(i + 1).copied().unwrap_or("");
        if *line == "#[cfg(test)]" && next.starts_with("mod ") {
            break;
        }
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Every module named after `crate::` in `code`, including each item of a
/// grouped `crate::{a, b::c}` import.
fn crate_modules(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name = ident(item);
                if !name.is_empty() {
                    names.insert(name);
                }
            }
        } else {
            names.insert(ident(rest));
        }
    }
    names
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn kernels_name_only_other_kernels_and_the_shared_types() {
    let dir = src().join("kernels");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for kernel in [
        "qkernel.rs",
        "train.rs",
        "amx.rs",
        "decode.rs",
        "weights.rs",
    ] {
        assert!(
            names.iter().any(|n| n == kernel),
            "{kernel} is not in {}: the check would miss it",
            dir.display()
        );
    }
    let mut offences = Vec::new();
    for path in &files {
        let text = read(path);
        // Not even the tests of a kernel name the architecture directly.
        if text.contains("crate::llama") {
            offences.push(format!("{} names crate::llama", path.display()));
        }
        for module in crate_modules(&production_code(&text)) {
            if module != "kernels" && !SHARED.contains(&module.as_str()) {
                offences.push(format!("{} imports crate::{module}", path.display()));
            }
        }
        if production_code(&text).contains("super::super") {
            offences.push(format!(
                "{} reaches the crate root via super::super",
                path.display()
            ));
        }
    }
    assert!(
        offences.is_empty(),
        "kernels must not import architectures or loaders:\n{}",
        offences.join("\n")
    );
}

#[test]
fn the_shared_types_the_kernels_use_do_not_reach_back_up() {
    let mut offences = Vec::new();
    for module in SHARED {
        let path = src().join(format!("{module}.rs"));
        for named in crate_modules(&production_code(&read(&path))) {
            if ABOVE_THE_KERNELS.contains(&named.as_str()) {
                offences.push(format!("{} imports crate::{named}", path.display()));
            }
        }
    }
    assert!(offences.is_empty(), "{}", offences.join("\n"));
}

#[test]
fn the_source_scan_sees_grouped_and_nested_paths() {
    let code = "use crate::{error::Result, llama::Llama};\nuse crate::kernels::qkernel::Kernel;\n// crate::model in a comment\n#[cfg(test)]\nmod tests {\n    use crate::tiny::TinySpec;\n}\n";
    let found = crate_modules(&production_code(code));
    let want: BTreeSet<String> = ["error", "llama", "kernels"].map(String::from).into();
    assert_eq!(found, want);
}
