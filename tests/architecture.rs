//! The layers of `src/`, checked from the code: each top-level module may import only
//! modules of lower layers (docs/architecture.md names the rule of each). A `crate::`
//! path in a module's non-test code is an import; `#[cfg(test)] mod tests` at a file's end
//! is left out, since tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top to bottom. A module may import those below its own layer, never those above or
/// beside it, except in the base layer, whose modules may use one another as long as no
/// cycle forms (checked separately).
const LAYERS: &[&[&str]] = &[
    // Entry points: the binary's commands.
    &["cli", "up"],
    // Clients of a running cluster.
    &["tui", "admin_cli"],
    // The web node's HTTP side, which also serves the admin façade in its process.
    &["web"],
    // The operators' façade.
    &["admin"],
    // The video library both façades call.
    &["library"],
    // The control plane.
    &["cluster"],
    // The metadata store.
    &["meta"],
    // The storage node and its client.
    &["node"],
    // What every layer shares.
    &[
        "ring",
        "trust",
        "proto",
        "metrics",
        "signals",
        "telemetry",
        "background",
    ],
];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&module))
        .unwrap_or_else(|| panic!("module {module} is in no layer of tests/architecture.rs"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its trailing unit-test module.
fn non_test_code(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    }
}

/// The top-level module a file of `src/` belongs to (None for lib.rs and main.rs).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative
        .components()
        .next()?
        .as_os_str()
        .to_str()?
        .to_string();
    let name = first.trim_end_matches(".rs").to_string();
    (name != "lib" && name != "main").then_some(name)
}

/// module → (module it imports → files that do).
fn import_graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(&src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let code = non_test_code(&text);
        let edges = graph.entry(module.clone()).or_default();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let target: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !target.is_empty() && target != module {
                let shown = file.strip_prefix(&src).unwrap().display().to_string();
                edges.entry(target).or_default().insert(shown);
            }
        }
    }
    graph
}

#[test]
fn no_module_imports_one_of_a_higher_layer() {
    let graph = import_graph();
    let mut wrong = Vec::new();
    for (module, edges) in &graph {
        for (target, files) in edges {
            let (from, to) = (layer_of(module), layer_of(target));
            let base = LAYERS.len() - 1;
            if to < from || (to == from && from != base) {
                wrong.push(format!("{module} → {target} (in {files:?})"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers of docs/architecture.md:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_import_cycle_spans_two_folders() {
    let graph = import_graph();
    // Depth-first search for a back edge over the module graph.
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            return Some(path[at..].iter().map(|n| n.to_string()).collect());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flat_map(|e| e.keys()) {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(cycle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" → "));
        }
    }
}

#[test]
fn the_control_plane_speaks_no_admin_wire() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cluster");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for needle in ["proto::admin", "tonic::Status::", "impl From<"] {
            for line in non_test_code(&text).lines() {
                let names_status = needle != "impl From<" || line.contains("for tonic::Status");
                if line.contains(needle) && names_status {
                    wrong.push(format!("{}: {}", file.display(), line.trim()));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the control plane names the admin service's wire (it belongs in src/admin):\n{}",
        wrong.join("\n")
    );
}
