fn main() -> std::process::ExitCode {
    pbackend::cli::main()
}
