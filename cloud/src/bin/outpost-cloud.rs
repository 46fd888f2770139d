//! The `outpost-cloud` server; see `cloud/CLI.md`.

fn main() -> std::process::ExitCode {
    outpost_cloud::server::main()
}
