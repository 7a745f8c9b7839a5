//! The `ghostcard` command: the one binary that runs the issuer processor and its tools.
//!
//! This module only parses the command line and reports errors; each command lives in its own module.

mod demo;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// ghostcard — an open-source issuer processor for single-use virtual cards with pay-later plans.
///
/// A cardholder asks for a card for an exact amount, gets a number, expiry and CVV at once, uses it for one
/// purchase within 24 hours, and pays now from a linked card or in installments.
#[derive(Debug, Parser)]
#[command(name = "ghostcard", version, about, long_about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Tell one card's story end to end, in memory, with ghostcard's own rules
    ///
    /// The story: purchase power, a one-time card, a purchase, a declined second purchase at another merchant, a
    /// capture below the authorization, a pay-in-4 plan, a merchant refund, the unused amount refunded, and a
    /// ledger check. Nothing is written anywhere; run it as often as you like. The same --seed and --now give the
    /// same story.
    #[command(
        after_long_help = "Examples:\n  ghostcard demo\n  ghostcard demo --seed 7 --now 2026-11-26T12:00:00Z --json"
    )]
    Demo(demo::Arguments),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(arguments) => demo::run(&arguments),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
