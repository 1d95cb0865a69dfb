//! `sspa-pipe graph`: the stage graph as Graphviz DOT, or as an Argo Workflows manifest.

use crate::cli::{ConfigArgs, GraphFormat};
use crate::exit;
use std::collections::HashMap;

mod argo;
mod yaml;

/// `graph` options besides the config.
#[derive(Debug, clap::Args)]
pub struct GraphArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// `dot` (Graphviz) or `argo` (an Argo Workflows `Workflow`: one template per stage, results
    /// passed between pods through `[cache] remote`).
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
    /// Argo: the container image holding `sspa-pipe` and the project (default
    /// `sspa-pipe:<version>`; a workflow parameter, so `argo submit -p image=…` changes it too).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Argo: the Kubernetes Secret whose keys become the pods' environment (the remote cache's
    /// credentials, e.g. `AWS_ACCESS_KEY_ID`).
    #[arg(long, value_name = "NAME", default_value = "sspa-remote-credentials")]
    pub secret: String,
    /// Argo: the project's directory inside the image.
    #[arg(long, value_name = "DIR", default_value = "/project")]
    pub workdir: String,
}

pub fn graph(args: &GraphArgs) -> anyhow::Result<u8> {
    let (loaded, project) = crate::project::load(&args.config)?;
    match args.format {
        GraphFormat::Dot => print!("{}", sspa_dag::graph::to_dot(&project.spec, &HashMap::new())),
        GraphFormat::Argo => print!("{}", argo::workflow(&loaded, &project.spec, args)?),
    }
    Ok(exit::OK)
}
