use clap::Parser;

fn main() -> std::process::ExitCode {
    grandlivre::cli::run(grandlivre::cli::Cli::parse())
}
