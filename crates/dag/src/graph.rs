//! Topological order, cycle detection with the whole chain named, subsets and Graphviz output.

use crate::error::DagError;
use crate::spec::PipelineSpec;
use std::collections::{BTreeSet, HashMap};

/// Stage names in an order where every stage comes after the stages it needs; ties keep file order.
pub fn topological_order(spec: &PipelineSpec) -> Result<Vec<String>, DagError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let index: HashMap<&str, usize> = spec.stages.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    let mut marks = vec![Mark::New; spec.stages.len()];
    let mut order = Vec::new();
    let mut path: Vec<usize> = Vec::new();

    fn visit(
        i: usize,
        spec: &PipelineSpec,
        index: &HashMap<&str, usize>,
        marks: &mut [Mark],
        path: &mut Vec<usize>,
        order: &mut Vec<String>,
    ) -> Result<(), DagError> {
        match marks[i] {
            Mark::Done => return Ok(()),
            Mark::Active => {
                let from = path.iter().position(|&p| p == i).unwrap_or(0);
                let mut chain: Vec<String> = path[from..].iter().map(|&p| spec.stages[p].name.clone()).collect();
                chain.push(spec.stages[i].name.clone());
                return Err(DagError::Cycle { chain });
            }
            Mark::New => {}
        }
        marks[i] = Mark::Active;
        path.push(i);
        for need in &spec.stages[i].spec.needs {
            if let Some(&j) = index.get(need.as_str()) {
                visit(j, spec, index, marks, path, order)?;
            }
        }
        path.pop();
        marks[i] = Mark::Done;
        order.push(spec.stages[i].name.clone());
        Ok(())
    }

    for i in 0..spec.stages.len() {
        visit(i, spec, &index, &mut marks, &mut path, &mut order)?;
    }
    Ok(order)
}

/// The stage and everything it needs, transitively.
pub fn ancestors_and_self(spec: &PipelineSpec, name: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![name.to_string()];
    while let Some(n) = todo.pop() {
        if out.insert(n.clone())
            && let Some(stage) = spec.stage(&n)
        {
            todo.extend(stage.spec.needs.iter().cloned());
        }
    }
    out
}

/// Graphviz DOT: one node per stage (kind and outputs in the label), one edge per need.
pub fn to_dot(spec: &PipelineSpec, states: &HashMap<String, String>) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut out = String::from("digraph pipeline {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n");
    for stage in &spec.stages {
        let mut label = format!("{}\\n({})", stage.name, stage.kind);
        if let Some(state) = states.get(&stage.name) {
            label.push_str(&format!("\\n{state}"));
        }
        out.push_str(&format!("  {} [label=\"{}\"];\n", quote(&stage.name), label.replace('"', "\\\"")));
    }
    for stage in &spec.stages {
        for need in &stage.spec.needs {
            out.push_str(&format!("  {} -> {};\n", quote(need), quote(&stage.name)));
        }
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn spec(text: &str) -> Result<PipelineSpec, DagError> {
        PipelineSpec::parse(Path::new("pipeline.toml"), text)
    }

    #[test]
    fn cycle_error_names_the_whole_chain() {
        let text = r#"
version = 1
[stages.a]
needs = ["c"]
[stages.b]
needs = ["a"]
[stages.c]
needs = ["b"]
[stages.d]
"#;
        let err = spec(text).expect_err("cycle");
        assert_eq!(err.to_string(), "dependency cycle: a -> c -> b -> a");
    }

    #[test]
    fn order_puts_needs_first() {
        let text = "version = 1\n[stages.z]\nneeds = [\"y\"]\n[stages.y]\n[stages.x]\nneeds = [\"z\", \"y\"]\n";
        let spec = spec(text).expect("valid");
        assert_eq!(topological_order(&spec).expect("acyclic"), vec!["y", "z", "x"]);
        assert_eq!(ancestors_and_self(&spec, "z").into_iter().collect::<Vec<_>>(), vec!["y", "z"]);
        let dot = to_dot(&spec, &HashMap::new());
        assert!(dot.contains("\"y\" -> \"z\";") && dot.contains("\"z\" -> \"x\";"), "{dot}");
    }
}
