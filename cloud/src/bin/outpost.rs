//! The `outpost` command line; see `cloud/CLI.md`.

fn main() -> std::process::ExitCode {
    outpost_cloud::cli::main()
}
