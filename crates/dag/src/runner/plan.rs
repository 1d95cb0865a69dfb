//! Planning: each selected stage's key, whether it runs and why; every missing input and every
//! params mismatch found in one pass.

use super::{Project, RunOptions};
use crate::error::{DagError, StageProblem};
use crate::graph::{ancestors_and_self, topological_order};
use crate::hash::HashState;
use crate::key::{KEY_FORMAT, KeyParts};
use crate::spec::{PipelineSpec, StageDef, expand_dep, lookup};
use crate::stage::{Registry, Stage};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Run,
    Skip,
    /// Not cached here but published on the remote cache: pulled instead of computed.
    Pull,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedStage {
    pub name: String,
    pub kind: String,
    pub key: String,
    pub decision: Decision,
    pub reasons: Vec<String>,
    /// Runs because it, or a stage upstream of it, was forced (becomes [`StageContext::forced`]).
    ///
    /// [`StageContext::forced`]: crate::StageContext::forced
    #[serde(skip)]
    pub forced: bool,
    #[serde(skip)]
    pub parts: KeyParts,
    #[serde(skip)]
    pub deps: Vec<PathBuf>,
    #[serde(skip)]
    pub params: Value,
}

/// Every selected stage in execution order, with its key and whether it will run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub stages: Vec<PlannedStage>,
    /// Stages whose keys were computed only because a selected stage needs them.
    #[serde(skip)]
    pub context: Vec<PlannedStage>,
}

impl Plan {
    pub fn get(&self, name: &str) -> Option<&PlannedStage> {
        self.stages.iter().chain(self.context.iter()).find(|s| s.name == name)
    }
}

fn check_stage_name(spec: &PipelineSpec, name: &str) -> Result<(), DagError> {
    match spec.stage(name) {
        Some(_) => Ok(()),
        None => Err(DagError::UnknownStage { name: name.to_string(), known: spec.names().join(", ") }),
    }
}

/// Works out each stage's key and whether it must run, touching nothing but the hash memo.
///
/// Fails, before anything is written, on a params mismatch of any stage of the pipeline
/// ([`DagError::Params`], all at once), on missing inputs of the needed stages
/// ([`DagError::Inputs`], all at once) and on `--only` with an upstream result that is not cached.
pub fn plan(project: &Project, registry: &Registry, options: &RunOptions) -> Result<Plan, DagError> {
    let spec = &project.spec;
    for name in options.force.iter().chain(options.until.iter()).chain(options.only.iter()) {
        check_stage_name(spec, name)?;
    }
    let order = topological_order(spec)?;
    check_all_params(project, registry)?;
    let selected: BTreeSet<String> = match &options.only {
        Some(only) => BTreeSet::from([only.clone()]),
        None if !options.until.is_empty() => options.until.iter().flat_map(|u| ancestors_and_self(spec, u)).collect(),
        None => order.iter().cloned().collect(),
    };
    let needed: BTreeSet<String> = selected.iter().flat_map(|s| ancestors_and_self(spec, s)).collect();

    let mut hashes = HashState::load(&project.workspace.hash_state());
    let mut problems = Vec::new();
    let mut keys: HashMap<String, String> = HashMap::new();
    let mut forced: HashSet<String> = HashSet::new();
    let mut stages = Vec::new();
    let mut context = Vec::new();
    for name in order.iter().filter(|n| needed.contains(*n)) {
        let def = spec
            .stage(name)
            .ok_or_else(|| DagError::UnknownStage { name: name.clone(), known: spec.names().join(", ") })?;
        let implementation = registry.get(&def.kind).ok_or_else(|| DagError::UnknownKind {
            stage: def.name.clone(),
            kind: def.kind.clone(),
            known: registry.kinds().join(", "),
        })?;
        let (parts, deps, params) =
            key_parts(project, def, implementation.as_ref(), &keys, &mut hashes, &mut problems)?;
        let key = parts.key();
        keys.insert(name.clone(), key.clone());
        let (mut decision, mut reasons) = decide(project, def, &key, &parts, options);
        // A forced stage rewrites its output under the same key, so what reads it re-runs too.
        let forced_upstream: Vec<&String> = def.spec.needs.iter().filter(|n| forced.contains(*n)).collect();
        if decision == Decision::Skip && !forced_upstream.is_empty() {
            decision = Decision::Run;
            reasons = forced_upstream.iter().map(|n| format!("upstream {n} was forced")).collect();
        }
        let is_forced = decision == Decision::Run
            && (options.force.contains(name) || !forced_upstream.is_empty())
            && selected.contains(name);
        if is_forced {
            forced.insert(name.clone());
        }
        let planned = PlannedStage {
            name: name.clone(),
            kind: def.kind.clone(),
            key,
            decision,
            reasons,
            forced: is_forced,
            parts,
            deps,
            params,
        };
        if selected.contains(name) { stages.push(planned) } else { context.push(planned) }
    }
    if !problems.is_empty() {
        return Err(DagError::Inputs(problems));
    }
    let plan = Plan { stages, context };
    if let Some(only) = &options.only {
        check_upstream_cached(project, &plan, only)?;
    }
    hashes.save()?;
    Ok(plan)
}

/// A stage's key parts, its input paths and its nested params. Missing params and inputs are
/// pushed onto `problems` (the key is then incomplete, and the plan fails once all are known).
fn key_parts(
    project: &Project,
    def: &StageDef,
    implementation: &dyn Stage,
    keys: &HashMap<String, String>,
    hashes: &mut HashState,
    problems: &mut Vec<StageProblem>,
) -> Result<(KeyParts, Vec<PathBuf>, Value), DagError> {
    let problem = |message: String| StageProblem { stage: def.name.clone(), message };
    let extracted = extract_params(&project.config, def);
    let params_complete = extracted.missing.is_empty();
    problems.extend(extracted.missing.into_iter().map(problem));
    let (mut deps, mut dep_hashes) = hash_deps(project, def, hashes, problems)?;
    // The stage lists its own inputs from its params: only when they are all there.
    let extra = match params_complete.then(|| implementation.inputs(&extracted.nested, &project.root)) {
        Some(Ok(extra)) => extra,
        Some(Err(e)) => {
            problems.push(problem(format!("cannot list its inputs: {}", error_chain(e.as_ref()))));
            Vec::new()
        }
        None => Vec::new(),
    };
    for path in extra {
        let Some(hash) = hashes.hash_path(&path)? else {
            problems.push(problem(format!("input `{}` does not exist", path.display())));
            continue;
        };
        let shown = dependency_name(&path, &project.root, &dep_hashes);
        dep_hashes.insert(shown, hash);
        deps.push(path);
    }
    let upstream: BTreeMap<String, String> =
        def.spec.needs.iter().map(|n| (n.clone(), keys.get(n).cloned().unwrap_or_default())).collect();
    let parts = KeyParts {
        key_format: KEY_FORMAT,
        kind: def.kind.clone(),
        kind_version: implementation.version(),
        params: extracted.flat,
        deps: dep_hashes,
        upstream,
    };
    Ok((parts, deps, extracted.nested))
}

/// Asks every stage of the pipeline whose kind this build has to check its declared params.
fn check_all_params(project: &Project, registry: &Registry) -> Result<(), DagError> {
    let mut problems = Vec::new();
    for def in &project.spec.stages {
        // An unknown kind, or params the config lacks, are reported when the stage is needed.
        let Some(implementation) = registry.get(&def.kind) else { continue };
        let extracted = extract_params(&project.config, def);
        if !extracted.missing.is_empty() {
            continue;
        }
        if let Err(message) = implementation.check_params(&extracted.nested) {
            problems.push(StageProblem { stage: def.name.clone(), message });
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(DagError::Params { path: project.spec.path.clone(), problems }) }
}

/// `--only STAGE` runs the stage alone: every stage it needs must have a cached result.
fn check_upstream_cached(project: &Project, plan: &Plan, only: &str) -> Result<(), DagError> {
    let Some(def) = project.spec.stage(only) else { return Ok(()) };
    for need in &def.spec.needs {
        let key = plan.get(need).map(|p| p.key.clone()).unwrap_or_default();
        if project.workspace.missing_outputs(need, &key).is_none_or(|m| !m.is_empty()) {
            return Err(DagError::MissingUpstream { stage: only.to_string(), upstream: need.clone() });
        }
    }
    Ok(())
}

struct Extracted {
    flat: BTreeMap<String, Value>,
    nested: Value,
    /// One message per declared path the config does not have.
    missing: Vec<String>,
}

fn extract_params(config: &Value, def: &StageDef) -> Extracted {
    let mut flat = BTreeMap::new();
    let mut nested = Value::Object(serde_json::Map::new());
    let mut missing = Vec::new();
    for path in &def.spec.params {
        let Some(value) = lookup(config, path).cloned() else {
            missing.push(format!("reads param `{path}`, which the config does not have"));
            continue;
        };
        let mut at = &mut nested;
        let segments: Vec<&str> = path.split('.').collect();
        for (i, segment) in segments.iter().enumerate() {
            let Value::Object(map) = at else { break };
            if i + 1 == segments.len() {
                map.insert(segment.to_string(), value.clone());
                break;
            }
            at = map.entry(segment.to_string()).or_insert_with(|| Value::Object(serde_json::Map::new()));
        }
        flat.insert(path.clone(), value);
    }
    Extracted { flat, nested, missing }
}

/// The runner's own reading of a stage's declared params out of the whole config JSON: the flat
/// `path → value` map that joins the cache key ([`KeyParts::params`]) and the nested value the
/// stage receives as [`StageContext::params`]. Every declared path the config lacks is reported
/// ([`DagError::Inputs`]).
///
/// [`StageContext::params`]: crate::StageContext::params
pub fn stage_params(config: &Value, def: &StageDef) -> Result<(BTreeMap<String, Value>, Value), DagError> {
    let extracted = extract_params(config, def);
    if extracted.missing.is_empty() {
        Ok((extracted.flat, extracted.nested))
    } else {
        Err(DagError::Inputs(
            extracted.missing.into_iter().map(|message| StageProblem { stage: def.name.clone(), message }).collect(),
        ))
    }
}

/// The name an input file has in a stage's key: its path relative to the project root, or, for a
/// file outside the project (encoder weights installed under a cache directory), `external/` and
/// its last two path components, so that the same content installed elsewhere (another machine,
/// another user's home) gives the same key. A second external input of the same name gets `#2`.
fn dependency_name(path: &Path, root: &Path, taken: &BTreeMap<String, String>) -> String {
    if let Ok(relative) = path.strip_prefix(root)
        && !relative.components().any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return relative.display().to_string();
    }
    let tail: Vec<String> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            std::path::Component::Normal(name) => Some(name.to_string_lossy().into_owned()),
            _ => None,
        })
        .take(2)
        .collect();
    let base = format!("external/{}", tail.into_iter().rev().collect::<Vec<_>>().join("/"));
    let mut name = base.clone();
    let mut n = 1;
    while taken.contains_key(&name) {
        n += 1;
        name = format!("{base}#{n}");
    }
    name
}

/// Hashes the declared deps; a missing one is pushed onto `problems`.
fn hash_deps(
    project: &Project,
    def: &StageDef,
    hashes: &mut HashState,
    problems: &mut Vec<StageProblem>,
) -> Result<(Vec<PathBuf>, BTreeMap<String, String>), DagError> {
    let mut paths = Vec::new();
    let mut map = BTreeMap::new();
    for pattern in &def.spec.deps {
        let expanded = match expand_dep(pattern, &project.config) {
            Ok(expanded) => expanded,
            Err(message) => {
                problems.push(StageProblem { stage: def.name.clone(), message });
                continue;
            }
        };
        for dep in expanded {
            let full = project.root.join(&dep);
            let Some(hash) = hashes.hash_path(&full)? else {
                problems.push(StageProblem {
                    stage: def.name.clone(),
                    message: format!("input `{dep}` does not exist (looked at `{}`)", full.display()),
                });
                continue;
            };
            map.insert(dep, hash);
            paths.push(full);
        }
    }
    Ok((paths, map))
}

fn decide(
    project: &Project,
    def: &StageDef,
    key: &str,
    parts: &KeyParts,
    options: &RunOptions,
) -> (Decision, Vec<String>) {
    if options.force.contains(&def.name) {
        return (Decision::Run, vec!["forced".into()]);
    }
    let last = project.workspace.last(&def.name);
    match project.workspace.missing_outputs(&def.name, key) {
        Some(missing) if missing.is_empty() => {
            let reasons = match &last {
                Some(last) if last.key != key => {
                    let mut r = vec!["result for these inputs is cached".to_string()];
                    r.extend(parts.diff(&last.parts).into_iter().map(|d| format!("since last result: {d}")));
                    r
                }
                _ => vec!["unchanged".into()],
            };
            (Decision::Skip, reasons)
        }
        Some(missing) => (Decision::Run, missing.into_iter().map(|o| format!("output {o} missing")).collect()),
        None => match last {
            Some(last) if last.key == key => (Decision::Run, vec!["output missing".into()]),
            Some(last) => {
                let diff = parts.diff(&last.parts);
                (Decision::Run, if diff.is_empty() { vec!["cache key changed".into()] } else { diff })
            }
            None => (Decision::Run, vec!["never ran".into()]),
        },
    }
}

/// `outer: inner: innermost`, like anyhow's `{:#}`.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::dependency_name;
    use std::collections::BTreeMap;
    use std::path::Path;

    #[test]
    fn inputs_outside_the_project_are_named_without_their_location() {
        let none = BTreeMap::new();
        let root = Path::new("/home/a/project");
        assert_eq!(
            dependency_name(Path::new("/home/a/project/weights/clip/model.safetensors"), root, &none),
            "weights/clip/model.safetensors"
        );
        let here =
            dependency_name(Path::new("/home/a/.cache/sspa-pipe/encoders/minilm/model.safetensors"), root, &none);
        let there =
            dependency_name(Path::new("/srv/cache/encoders/minilm/model.safetensors"), Path::new("/ci/clone"), &none);
        assert_eq!(here, "external/minilm/model.safetensors");
        assert_eq!(here, there);
        // `..` out of the root is outside too.
        assert_eq!(dependency_name(Path::new("/home/a/project/../b/enc/w.bin"), root, &none), "external/enc/w.bin");
        let taken = BTreeMap::from([(here.clone(), "h".to_string())]);
        assert_eq!(
            dependency_name(Path::new("/x/minilm/model.safetensors"), root, &taken),
            "external/minilm/model.safetensors#2"
        );
    }
}
