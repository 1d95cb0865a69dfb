use super::{print_json, run_options};
use crate::cli::{ConfigArgs, SelectArgs};
use crate::exit;
use sspa_dag::Decision;

pub fn plan(config: &ConfigArgs, select: &SelectArgs, json: bool) -> anyhow::Result<u8> {
    let (loaded, project) = crate::project::load(config)?;
    let registry = sspa_stages::registry();
    let options = run_options(select, 1, false, crate::project::remote(&loaded, &project.spec)?);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let plan = runtime.block_on(sspa_dag::plan_with_remote(&project, &registry, &options))?;
    if json {
        print_json(&plan)?;
    } else {
        for stage in &plan.stages {
            let decision = match stage.decision {
                Decision::Run => "run",
                Decision::Skip => "skip",
                Decision::Pull => "skip (remote)",
            };
            println!("{:<10} {:<13} {}  {}", stage.name, decision, &stage.key[..12], stage.reasons.join("; "));
        }
    }
    Ok(exit::OK)
}
