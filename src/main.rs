fn main() -> std::process::ExitCode {
    sspa_pipe::cli::main()
}
