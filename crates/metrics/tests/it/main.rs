//! The integration tests of sspa-metrics, in one test binary (one link).

mod fixtures;
mod io;
