//! End-to-end tests of the `sspa-pipe` binary, in one test binary (one link).

mod cli;
mod encode;
mod exp;
mod manifest;
mod remote;
mod retrain;
mod slurm;
