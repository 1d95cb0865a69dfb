use super::{print_json, run_options};
use crate::cli::{ConfigArgs, SelectArgs};
use crate::exit;
use sspa_dag::Decision;

pub fn plan(config: &ConfigArgs, select: &SelectArgs, json: bool) -> anyhow::Result<u8> {
    let (_, project) = crate::project::load(config)?;
    let registry = sspa_stages::registry();
    let plan = sspa_dag::plan(&project, &registry, &run_options(select, 1, false))?;
    if json {
        print_json(&plan)?;
    } else {
        for stage in &plan.stages {
            let decision = match stage.decision {
                Decision::Run => "run",
                Decision::Skip => "skip",
            };
            println!("{:<10} {:<4} {}  {}", stage.name, decision, &stage.key[..12], stage.reasons.join("; "));
        }
    }
    Ok(exit::OK)
}
