//! Exit codes: 0 ok, 1 a stage failed, 2 bad usage or config, 3 workspace locked, 4 a retrained
//! model refused by the promotion gate, 130 interrupted.

use sspa_config::ConfigErrors;
use sspa_dag::DagError;

pub const OK: u8 = 0;
pub const STAGE_FAILED: u8 = 1;
pub const USAGE: u8 = 2;
pub const LOCKED: u8 = 3;
/// `retrain`: the candidate was trained and the gate refused it (the current model keeps serving).
pub const GATE_REFUSED: u8 = 4;
pub const INTERRUPTED: u8 = 130;

/// The exit code an error deserves.
pub fn code_for(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if cause.downcast_ref::<ConfigErrors>().is_some() {
            return USAGE;
        }
        if let Some(exp) = cause.downcast_ref::<sspa_exp::ExpError>() {
            match exp {
                sspa_exp::ExpError::Dag(dag) => return dag_code(dag),
                sspa_exp::ExpError::Record { .. }
                | sspa_exp::ExpError::Name(_)
                | sspa_exp::ExpError::UnknownBaseline { .. }
                | sspa_exp::ExpError::UnknownSortColumn { .. } => return USAGE,
                _ => {}
            }
        }
        if let Some(dag) = cause.downcast_ref::<DagError>() {
            return dag_code(dag);
        }
        if cause.downcast_ref::<sspa_metrics::MetricsError>().is_some()
            || cause.downcast_ref::<sspa_config::ReferenceError>().is_some()
            || cause.downcast_ref::<sspa_describe::LabelError>().is_some()
        {
            return USAGE;
        }
        if let Some(registry) = cause.downcast_ref::<sspa_registry::RegistryError>() {
            return match registry {
                sspa_registry::RegistryError::NoVersion { .. }
                | sspa_registry::RegistryError::NoAlias { .. }
                | sspa_registry::RegistryError::NothingToRollBack { .. }
                | sspa_registry::RegistryError::Reference(_) => USAGE,
                _ => STAGE_FAILED,
            };
        }
        if cause.downcast_ref::<UsageError>().is_some() {
            return USAGE;
        }
    }
    STAGE_FAILED
}

/// The exit code of a runner error.
fn dag_code(dag: &DagError) -> u8 {
    match dag {
        DagError::Locked { .. } => LOCKED,
        DagError::Io { .. } | DagError::Json { .. } => STAGE_FAILED,
        DagError::Pipeline { .. }
        | DagError::Cycle { .. }
        | DagError::UnknownStage { .. }
        | DagError::UnknownKind { .. }
        | DagError::Input { .. }
        | DagError::Inputs(..)
        | DagError::Params { .. }
        | DagError::MissingUpstream { .. } => USAGE,
    }
}

/// A mistake in what the user asked for (bad flag combination, missing file argument).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
