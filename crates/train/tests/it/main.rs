//! The integration tests of sspa-train, in one test binary (one link).

mod fine_tune;
mod libtorch;
mod peers;
mod precision;
mod training;
mod warm_start;
