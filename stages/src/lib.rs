//! stages: the stage kinds this build provides, each binding a library crate to the DAG runner.
//!
//! The runner knows stages only through [`sspa_dag::Stage`]; adding a kind means one file here and
//! one line in [`registry`].

use sspa_dag::Registry;

/// Every stage kind this build can run.
pub fn registry() -> Registry {
    Registry::new()
}
