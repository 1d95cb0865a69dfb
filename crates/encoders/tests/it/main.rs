//! The integration tests of sspa-encoders, in one test binary (one link).

mod bad_weights;
mod cap_gradients;
mod common;
mod efficientnet;
mod libtorch;
mod minilm;
