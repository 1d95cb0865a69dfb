use crate::cli::ConfigArgs;
use crate::exit;
use std::collections::HashMap;

pub fn graph(config: &ConfigArgs) -> anyhow::Result<u8> {
    let (_, project) = crate::project::load(config)?;
    print!("{}", sspa_dag::graph::to_dot(&project.spec, &HashMap::new()));
    Ok(exit::OK)
}
