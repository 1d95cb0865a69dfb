//! The integration tests of sspa-clip, in one test binary (one link).

mod bad_weights;
mod cap_gradients;
mod common;
mod openai_resnet;
mod preprocess;
mod resnet;
mod tiny_model;
mod tokenizer;
