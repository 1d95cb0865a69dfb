use crate::cli::ConfigArgs;
use crate::exit;
use sspa_dag::WorkspaceLock;

pub fn clean(config: &ConfigArgs, keep_last: usize) -> anyhow::Result<u8> {
    let (_, project) = crate::project::load(config)?;
    let _lock = WorkspaceLock::acquire(&project.workspace.root, "clean")?;
    let s = sspa_dag::gc::clean(&project.workspace, &project.spec.names(), keep_last)?;
    println!(
        "removed {} run record(s), {} cached result(s) ({:.1} MiB), {} partial director{}; kept {} run(s)",
        s.runs_removed,
        s.results_removed,
        s.bytes_freed as f64 / (1024.0 * 1024.0),
        s.partial_removed,
        if s.partial_removed == 1 { "y" } else { "ies" },
        s.runs_kept
    );
    Ok(exit::OK)
}
